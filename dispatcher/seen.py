"""A set of IMEIs that stays small in memory however large the fleets are.

Duplicates must be found across every fleet of a job, and a million-device job
would need tens of MB in a Python set. A private temporary SQLite database (the
empty file name) keeps the set on disk with a small page cache and deletes itself
when closed; it is a scratch structure of the plan, not results storage, which is
why it does not live in the ledger.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

DEDUP_BATCH = 1024  # devices checked for duplicates per lookup
MAX_KNOWN_DUPLICATES = 100_000  # more than this, and later passes de-duplicate again (memory)


@dataclass(frozen=True, slots=True)
class Known:
    """What the check pass learned that later passes need not learn again."""

    duplicates: frozenset[tuple[int, int]]  # (fleet index, row position) of each duplicate
    stamps: tuple[tuple[int, int], ...] | None  # the fleet files it read: (size, mtime)


def file_stamps(paths: Iterable[Path]) -> tuple[tuple[int, int], ...] | None:
    """Size and mtime of each file; None when one cannot be read."""
    out: list[tuple[int, int]] = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            return None
        out.append((st.st_size, st.st_mtime_ns))
    return tuple(out)


_CHUNK = 500  # IMEIs per query (SQLite takes at most 999 parameters in older builds)


class SeenImeis:
    """Remembers each IMEI with the place it was first seen."""

    __slots__ = ("_batches", "_db")

    def __init__(self) -> None:
        self._db = sqlite3.connect("", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")  # scratch data: nothing to recover
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("BEGIN")
        # A place is the caller's number for where the IMEI was seen (the plan's: fleet and
        # line), not its text: a million rows are inserted on every check pass.
        # ``batch``: the add_many call that inserted the row. Places do not tell a batch's
        # own first sightings from earlier ones: rows may share one (a flow list's line).
        self._db.execute(
            "CREATE TABLE seen (imei INTEGER PRIMARY KEY, place INTEGER NOT NULL, batch INTEGER)"
        )
        self._batches = 0

    def add(self, imei: str, place: int) -> int | None:
        """Record ``imei``; None if new, else the place where it was first seen."""
        cur = self._db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?, NULL)", (int(imei), place))
        if cur.rowcount == 1:
            return None
        row = self._db.execute("SELECT place FROM seen WHERE imei = ?", (int(imei),)).fetchone()
        return int(row[0])

    def add_many(self, rows: list[tuple[str, int]]) -> list[int | None]:
        """``add`` for a batch of ``(imei, place)``, in order; each place is its row's own.

        The batch's first sightings are inserted at once, ignoring IMEIs already there;
        only when fewer rows went in than were offered (a duplicate of an earlier batch,
        rare) are the places looked up: one statement per batch in the usual case.
        """
        out: list[int | None] = [None] * len(rows)
        firsts: dict[int, int] = {}  # key: place of its first row in this batch
        for i, (imei, place) in enumerate(rows):
            key = int(imei)
            first = firsts.get(key)
            if first is None:
                firsts[key] = place
            else:
                out[i] = first  # a duplicate within this same batch
        self._batches += 1
        batch = self._batches
        cur = self._db.executemany(
            "INSERT OR IGNORE INTO seen VALUES (?, ?, ?)",
            [(key, place, batch) for key, place in firsts.items()],
        )
        if cur.rowcount == len(firsts):
            return out
        keys = list(firsts)
        earlier: dict[int, int] = {}  # key: its place, for the keys seen before this batch
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            earlier.update(
                self._db.execute(
                    f"SELECT imei, place FROM seen WHERE imei IN ({marks}) AND batch IS NOT ?",
                    (*chunk, batch),
                )
            )
        for i, (imei, _) in enumerate(rows):
            first = earlier.get(int(imei))
            if first is not None:
                out[i] = first  # every row of it in this batch is a duplicate of that one
        return out

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SeenImeis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
