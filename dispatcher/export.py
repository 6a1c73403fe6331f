"""``export``: one record per ledger row, as JSON lines or CSV, for other tools to read."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import IO, Any

from dispatcher.formatting import iso_utc
from dispatcher.ledger import LedgerStore

FIELDS = (
    "run_id",
    "fleet",
    "imei",
    "command",
    "op",
    "status",
    "uuid",
    "errno",
    "error",
    "http_status",
    "attempts",
    "sent_at",
    "answered_at",
    # delivery, once `track` or `cancel` asked the platform
    "send_status",
    "confirm_status",
    "cmd_result",
    "send_time",
    "confirm_time",
)


def records(ledger: LedgerStore, run_id: str | None) -> Iterator[dict[str, Any]]:
    """The export records of a run (or of every run), in the order devices were planned."""
    for row in ledger.items(run_id):
        record = {name: row[name] for name in FIELDS}
        record["imei"] = str(record["imei"])
        record["sent_at"] = iso_utc(record["sent_at"], timespec="milliseconds")
        record["answered_at"] = iso_utc(record["answered_at"], timespec="milliseconds")
        yield record


def write(ledger: LedgerStore, run_id: str | None, fmt: str, out: IO[str]) -> int:
    """Write every record to ``out``; returns how many."""
    n = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for record in records(ledger, run_id):
            writer.writerow({k: "" if v is None else v for k, v in record.items()})
            n += 1
    else:
        for record in records(ledger, run_id):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n
