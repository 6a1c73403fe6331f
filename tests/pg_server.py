"""A throwaway PostgreSQL cluster for the tests and the benchmarks.

    python tests/pg_server.py start DIR    # prints the cluster's URL
    python tests/pg_server.py stop DIR     # stops it and removes DIR

``.ci/run`` starts one before the tests and exports its URL as ``ONENET_TEST_PG_URL``;
``tests/pg.py`` starts one itself when that is unset and ``initdb`` is on PATH. Standard
library only, so it runs before (and without) any driver.

PostgreSQL refuses to run as root, and CI runs as root: there the cluster runs as the
``postgres`` user (``runuser``, else ``su``), and DIR is handed to that user. It listens
on a free loopback port and keeps its Unix socket in DIR, so it needs nothing of the
system's own PostgreSQL setup (``/var/run/postgresql``, ``pg_hba.conf``). Authentication
is ``trust``: the server is reachable from this machine only and lives for one test run.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

DATABASE = "dispatcher_test"
SUPERUSER = "postgres"
MISSING = "no PostgreSQL server: set ONENET_TEST_PG_URL or install PostgreSQL (initdb on PATH)"

# Settings for a test cluster. fsync is off because no test crashes the machine, only
# processes: a client killed with SIGKILL loses nothing a committed transaction holds
# whether or not the server flushed it, and the suite runs on shared 2-core machines.
# synchronous_commit stays on, so a commit still waits for the server as in production.
FAST = ("fsync=off", "full_page_writes=off")
# The benchmarks measure the durable path: every commit flushed to disk.
DURABLE = ("fsync=on", "synchronous_commit=on")


class PgServerError(RuntimeError):
    """The cluster could not be created, started or stopped; the message says which step."""


def bindir() -> Path | None:
    """The directory of the server's programs, found through ``initdb`` on PATH."""
    initdb = shutil.which("initdb")
    return None if initdb is None else Path(initdb).resolve().parent


def available() -> bool:
    return bindir() is not None


def _as_server_user(argv: list[str]) -> list[str]:
    """``argv`` as the user the server may run as: ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return argv
    runuser = shutil.which("runuser")
    if runuser is not None:
        return [runuser, "-u", SUPERUSER, "--", *argv]
    return ["su", SUPERUSER, "-s", "/bin/sh", "-c", shlex.join(argv)]


def _run(argv: list[str], step: str, cwd: Path) -> str:
    done = subprocess.run(
        _as_server_user(argv),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise PgServerError(f"{step} failed (exit {done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Cluster:
    """A running cluster: where it lives and how to reach its database."""

    base: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def data(self) -> Path:
        return self.base / "data"


def start(base: Path, *, durable: bool = False) -> Cluster:
    """Create a cluster in ``base`` (an empty directory), start it and create its database."""
    programs = bindir()
    if programs is None:
        raise PgServerError(MISSING)
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        # The server's user must own its data directory and reach the socket dir.
        account = pwd.getpwnam(SUPERUSER)
        os.chown(base, account.pw_uid, account.pw_gid)
    data = base / "data"
    _run(
        [str(programs / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
         "--encoding=UTF8", "--locale=C", "--no-sync"],
        "initdb",
        base,
    )  # fmt: skip
    settings = [
        "listen_addresses=127.0.0.1",
        f"unix_socket_directories={base}",
        "max_connections=200",  # four shard processes, each with a pool, plus the tests
        *(DURABLE if durable else FAST),
    ]
    # A port free a moment ago may be taken before the server binds it: try a few.
    last = ""
    for _ in range(5):
        port = _free_port()
        options = " ".join(f"-c {s}" for s in [f"port={port}", *settings])
        try:
            _run(
                [str(programs / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"),
                 "-w", "-t", "60", "-o", options, "start"],
                "pg_ctl start",
                base,
            )  # fmt: skip
        except PgServerError as exc:
            last = str(exc)
            continue
        cluster = Cluster(base, port)
        _run(
            [str(programs / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER,
             DATABASE],
            "createdb",
            base,
        )  # fmt: skip
        return cluster
    raise PgServerError(f"{last}\nserver log: {base / 'server.log'}")


def stop(base: Path) -> None:
    """Stop the cluster in ``base`` if it runs, then remove ``base``."""
    programs = bindir()
    data = base / "data"
    try:
        if programs is not None and (data / "postmaster.pid").exists():
            # immediate: the cluster is thrown away, nothing of it needs to be flushed.
            _run([str(programs / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                 "pg_ctl stop", base)  # fmt: skip
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("dir", type=Path, nargs="?", help="the cluster's directory (default: new)")
    parser.add_argument("--durable", action="store_true", help="fsync every commit (benchmarks)")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            base = args.dir or Path(tempfile.mkdtemp(prefix="onenet-pg-"))
            print(start(base, durable=args.durable).url)
        else:
            if args.dir is None:
                parser.error("stop needs the cluster's directory")
            stop(args.dir)
    except PgServerError as exc:
        print(f"pg_server: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
