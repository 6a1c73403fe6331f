"""Reading profiles for the benchmark report: CPU by layer, the costliest functions.

Two profilers, for two questions:

- py-spy (a sampling profiler outside the process, next to no overhead) with ``--gil``:
  only the thread holding the GIL is sampled, so the samples show who uses the one
  interpreter, which is what bounds a Python client (C code that releases the GIL,
  such as SQLite's fsync or a socket syscall, is not in them). Its raw output is one
  line per distinct stack with a sample count; ``spy_summary`` splits the samples into
  the run's phases (start-up, sending, report), sets aside any that are waits, and
  adds up the rest by layer (the file of the innermost frame), by thread, and by the
  dispatcher's own functions (inclusive).
- cProfile (deterministic, inside the process, main thread only): how many calls a
  request costs. It inflates code that makes many small calls, so its times are read
  as counts, not as shares.
"""

from __future__ import annotations

import pstats
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

_PACKAGES = ("aiohttp", "yarl", "multidict", "aiosignal", "frozenlist", "propcache")

LAYERS: list[tuple[str, Callable[[str, str], bool]]] = [
    # the innermost frame's file (full path) and function name decide its layer
    ("imports (start-up)", lambda f, n: "importlib" in f or "<frozen" in f or "marshal" in n),
    ("aiohttp, yarl, multidict", lambda f, n: any(f"/{p}/" in f for p in _PACKAGES)),
    (
        "anyio (tasks, streams, events, cancel scopes)",
        lambda f, n: "/anyio/" in f or "sniffio" in f,
    ),
    (
        "asyncio event loop, selectors",
        lambda f, n: (
            "/asyncio/" in f or "selectors.py" in f or "select.epoll" in n or "_asyncio" in n
        ),
    ),
    ("sockets (send/recv)", lambda f, n: "_socket.socket" in n),
    (
        "threads (hand-off to the writer thread)",
        lambda f, n: f.endswith(("threading.py", "queue.py")) or "_thread" in n,
    ),
    ("ledger: SQLite (writer thread)", lambda f, n: f.endswith("ledger.py") or "sqlite3" in n),
    (
        "dispatcher: engine, writer, limiter",
        lambda f, n: f.endswith(
            (
                "engine.py",
                "writer.py",
                "limiter.py",
                "breaker.py",
                "rollout.py",
                "clock.py",
                "outcome.py",
                "progress.py",
            )
        ),
    ),
    (
        "dispatcher: client (URL, headers, classify)",
        lambda f, n: f.endswith(("dispatcher/client.py", "errnos.py", "auth.py")),
    ),
    (
        "dispatcher: plan, fleets, check",
        lambda f, n: f.endswith(
            (
                "plan.py",
                "fleets.py",
                "imei.py",
                "seen.py",
                "timewindow.py",
                "check.py",
                "problems.py",
                "jobfile.py",
            )
        ),
    ),
    ("json", lambda f, n: "/json/" in f or "_json" in n),
    ("urllib.parse (quote)", lambda f, n: "urllib/parse" in f),
    ("datetime", lambda f, n: "strftime" in n or "datetime" in n),
    ("csv, re", lambda f, n: "_csv" in n or "re.Pattern" in n or "/re/" in f),
    (
        "logging, report, rich",
        lambda f, n: any(
            p in f for p in ("structlog", "/rich/", "report.py", "show.py", "outputs.py", "logs.py")
        ),
    ),
]
OTHER = "other (builtins, dataclasses, contextvars, ...)"

# Innermost frames of a thread that is waiting, not computing.
_WAITS = (
    ("selectors.py", "select"),
    ("threading.py", "wait"),
    ("threading.py", "join"),
    ("queue.py", "get"),
)


def layer_of(filename: str, name: str) -> str:
    for layer, match in LAYERS:
        if match(filename, name):
            return layer
    return OTHER


def short(filename: str) -> str:
    """A file's name without the machine's folders."""
    for pattern in (
        r".*/site-packages/",
        r".*/(?=dispatcher/)",
        r".*/(?=bench/)",
        r".*/python3\.\d+/",
    ):
        shorter = re.sub(pattern, "", filename)
        if shorter != filename:
            return shorter
    return Path(filename).name


_FRAME = re.compile(r"(?P<name>.*) \((?P<file>.*):(?P<line>\d+)\)$")


def spy_summary(path: Path, *, only_sending: bool = True) -> dict[str, Any]:
    """Where the samples of a ``py-spy record --gil --threads --format raw`` profile go.

    Layers, threads and functions count the samples of the sending phase (of every
    phase with ``only_sending=False``), as shares.
    """
    phases: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        thread, *frames = stack.split(";")
        parsed = [m for m in (_FRAME.match(f) for f in frames) if m]
        if not parsed:
            continue
        names = [f"{short(m['file'])}:{m['name']}" for m in parsed]
        leaf = parsed[-1]
        waiting = any(
            leaf["file"].endswith(f) and leaf["name"].split(".")[-1] == name for f, name in _WAITS
        )
        if any("importlib" in x or ":check_job" in x for x in names):
            phase = "start-up"  # imports, then one full pass over the fleet before sending
        elif any(":_run_outputs" in x or ":print_run_summary" in x for x in names):
            phase = "report"
        elif "worker" in thread or any(":BaseEventLoop.run_forever" in x for x in names):
            phase = "sending"  # the event loop and the ledger's thread: the run proper
        else:
            phase = "start-up"
        phases[f"{phase} (waiting)" if waiting else phase] += n
        if waiting or (only_sending and phase != "sending"):
            continue
        threads[re.sub(r"^thread \(\d+\): ?", "", thread) or "?"] += n
        layers[layer_of(leaf["file"], leaf["name"])] += n
        leaves[names[-1]] += n
        for name in set(names):
            if name.startswith("dispatcher/"):
                inclusive[name] += n
    busy = sum(layers.values()) or 1

    def entry(count: int) -> dict[str, float]:
        return {"share": round(count / busy, 3)}

    return {
        "samples": sum(phases.values()),
        "phases": dict(phases.most_common()),
        "threads": {k: entry(v) for k, v in threads.most_common()},
        "layers": {k: entry(v) for k, v in layers.most_common()},
        "dispatcher_inclusive": {k: entry(v) for k, v in inclusive.most_common(20)},
        "top_leaves": {k: entry(v) for k, v in leaves.most_common(15)},
    }


def cprofile_summary(path: Path, units: int, *, top: int = 20) -> dict[str, Any]:
    """Calls per request (``units``) of the busiest functions, and the dispatcher's own."""
    stats = pstats.Stats(str(path))
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (filename, line, name), (_, calls, own, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{short(filename)}:{line}({name})" if filename != "~" else name
        rows.append((own, cum, calls, where, filename))

    def row(own: float, cum: float, calls: int, where: str) -> dict[str, Any]:
        return {
            "function": where,
            "calls_per_request": round(calls / units, 2),
            "own_us_per_request": round(own / units * 1e6, 1),
            "cumulative_us_per_request": round(cum / units * 1e6, 1),
        }

    by_own = sorted(rows, reverse=True)
    ours = sorted((r for r in rows if "dispatcher/" in r[4]), key=lambda r: -r[1])
    return {
        "profiled_cpu_seconds": round(total, 2),
        "us_per_request": round(total / units * 1e6, 1),
        "top_own": [row(*r[:4]) for r in by_own[:top]],
        "dispatcher_by_cumulative": [row(*r[:4]) for r in ours[:top]],
    }


def cprofile_listing(path: Path, title: str) -> str:
    """pstats' own listing (own time, then the dispatcher's cumulative), machine paths cut."""
    import io

    text = io.StringIO()
    stats = pstats.Stats(str(path), stream=text)
    stats.sort_stats("tottime").print_stats(40)
    stats.sort_stats("cumulative").print_stats("dispatcher", 40)
    listing = text.getvalue().replace(str(path), path.name)
    for pattern in (r"\S*/site-packages/", r"\S*/(?=dispatcher/)", r"\S*/python3\.\d+/"):
        listing = re.sub(pattern, "", listing)
    return f"{title}\n{listing}"
