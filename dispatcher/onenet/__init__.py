"""The wire contract with OneNET, in one package.

- ``platforms``: the consoles (legacy, studio), their path prefixes and every path called;
- ``render``: URLs and query strings as the platform's examples write them (used by the
  real send and by ``run --dry-run`` alike);
- ``auth`` and ``access``: the ``api-key`` header and signed tokens, and which the config
  asks for; ``access.connect`` is the one factory for an authenticated client;
- ``errnos``: the errno table and HTTP statuses as outcomes (transient, final, in doubt),
  and which answers are the platform's trouble rather than a device's;
- ``transport``: the ``Transport`` and ``PlatformQueries`` protocols, the only part of this
  package the engine and the lifecycle commands see;
- ``client``: the aiohttp client that implements both.

Importing the package loads no aiohttp: only ``client`` does.
"""
