"""The SQLite ledger's tables, its file marks and the migrations from older schemas."""

from __future__ import annotations

APPLICATION_ID = 0x4F4E4454  # "ONDT": marks the file as ours, so a foreign SQLite file is refused
SCHEMA_VERSION = 3
# What each older schema needs to become the current one: columns added, never removed,
# so a ledger written by an older version keeps every row it holds.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE items ADD COLUMN first_sent_at REAL",
        "ALTER TABLE items ADD COLUMN request_hash TEXT",
        "UPDATE items SET first_sent_at = sent_at",
    ),
    # the shard count of the run's first invocation: a rerun with another split is refused
    2: ("ALTER TABLE runs ADD COLUMN shards INTEGER NOT NULL DEFAULT 1",),
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    job_name TEXT NOT NULL,
    job_path TEXT NOT NULL,
    job_hash TEXT NOT NULL,
    target TEXT NOT NULL,
    valid_time TEXT,
    expired_time TEXT NOT NULL,
    first_started_at REAL NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    state TEXT NOT NULL,
    reason TEXT,
    devices INTEGER NOT NULL DEFAULT 0,
    waves INTEGER NOT NULL DEFAULT 1,
    wave INTEGER NOT NULL DEFAULT 0,
    confirmed_wave INTEGER NOT NULL DEFAULT 0,
    rollout TEXT,
    inputs_hash TEXT,
    shards INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS items (
    run_id TEXT NOT NULL,
    imei TEXT NOT NULL,
    command INTEGER NOT NULL,
    fleet TEXT NOT NULL,
    op TEXT NOT NULL,
    status TEXT NOT NULL,
    uuid TEXT,
    errno INTEGER,
    error TEXT,
    http_status INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    sent_at REAL,
    answered_at REAL,
    send_status TEXT,
    confirm_status TEXT,
    cmd_result TEXT,
    send_time TEXT,
    confirm_time TEXT,
    tracked_at REAL,
    first_sent_at REAL,
    request_hash TEXT,
    UNIQUE (run_id, imei, command)
);
CREATE INDEX IF NOT EXISTS items_by_status ON items (run_id, status);
CREATE INDEX IF NOT EXISTS items_by_uuid ON items (uuid) WHERE uuid IS NOT NULL;
"""


FOREIGN_TABLE = """
CREATE TABLE IF NOT EXISTS foreign_commands (
    run_id TEXT NOT NULL,
    imei TEXT NOT NULL,
    uuid TEXT NOT NULL,
    type TEXT,
    create_time TEXT,
    seen_at REAL NOT NULL,
    PRIMARY KEY (run_id, uuid)
)
"""
