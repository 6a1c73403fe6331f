"""The PostgreSQL ledger's tables: the SQLite ledger's, in PostgreSQL's types.

The same tables and columns as ``schema`` (the current schema version, ``foreign_commands``
included), so ``status``, ``report`` and ``export`` read both alike. Differences, each
for a reason:

- times are ``double precision`` (PostgreSQL's ``real`` is 4 bytes: it would round a
  Unix time to minutes);
- ``items`` has an ``id`` identity column, PostgreSQL's stand-in for SQLite's rowid:
  the order devices were planned in, which `export`, `reconcile` and `track` keep;
- SQLite's file marks (``application_id``, ``user_version``) are a one-row
  ``ledger_schema`` table, so a database that holds another program's ``runs`` table is
  refused rather than written into;
- ``foreign_commands`` is created with the rest: a new database has no older version of
  the tool that must keep reading it.
"""

from __future__ import annotations

from dispatcher.ledger.schema import APPLICATION_ID, SCHEMA_VERSION

# pg_advisory_xact_lock key held while the tables are checked or created, so shards
# starting together do not race to create them ("ONDT" + "SCHM").
SCHEMA_LOCK = 0x4F4E4454_5343484D

# What an older schema needs to become the current one (as ``schema.MIGRATIONS``).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    # the shard count of the run's first invocation: a rerun with another split is refused
    2: ("ALTER TABLE runs ADD COLUMN shards integer NOT NULL DEFAULT 1",),
}

SCHEMA: tuple[str, ...] = (
    "CREATE TABLE ledger_schema (application_id bigint NOT NULL, version integer NOT NULL)",
    f"INSERT INTO ledger_schema VALUES ({APPLICATION_ID}, {SCHEMA_VERSION})",
    """CREATE TABLE runs (
    run_id text PRIMARY KEY,
    job_name text NOT NULL,
    job_path text NOT NULL,
    job_hash text NOT NULL,
    target text NOT NULL,
    valid_time text,
    expired_time text NOT NULL,
    first_started_at double precision NOT NULL,
    started_at double precision NOT NULL,
    ended_at double precision,
    state text NOT NULL,
    reason text,
    devices integer NOT NULL DEFAULT 0,
    waves integer NOT NULL DEFAULT 1,
    wave integer NOT NULL DEFAULT 0,
    confirmed_wave integer NOT NULL DEFAULT 0,
    rollout text,
    inputs_hash text,
    shards integer NOT NULL DEFAULT 1
)""",
    """CREATE TABLE items (
    run_id text NOT NULL,
    imei text NOT NULL,
    command integer NOT NULL,
    fleet text NOT NULL,
    op text NOT NULL,
    status text NOT NULL,
    uuid text,
    errno integer,
    error text,
    http_status integer,
    attempts integer NOT NULL DEFAULT 0,
    sent_at double precision,
    answered_at double precision,
    send_status text,
    confirm_status text,
    cmd_result text,
    send_time text,
    confirm_time text,
    tracked_at double precision,
    first_sent_at double precision,
    request_hash text,
    id bigint GENERATED ALWAYS AS IDENTITY,
    UNIQUE (run_id, imei, command)
)""",
    "CREATE INDEX items_by_status ON items (run_id, status)",
    "CREATE INDEX items_by_uuid ON items (uuid) WHERE uuid IS NOT NULL",
    "CREATE INDEX items_in_order ON items (run_id, id)",
    """CREATE TABLE foreign_commands (
    run_id text NOT NULL,
    imei text NOT NULL,
    uuid text NOT NULL,
    type text,
    create_time text,
    seen_at double precision NOT NULL,
    PRIMARY KEY (run_id, uuid)
)""",
)
