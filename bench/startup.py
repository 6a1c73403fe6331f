"""Section ``startup``: start-up of --help and validate (7)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    CHILD_ENV,
    measure,
    median,
    write_job,
)
from bench.suite import (  # noqa: E402
    PY,
    Add,
    Suite,
    import_times,
    log,
)


def run(suite: Suite) -> dict[str, Any]:
    folder = suite.tmp / "startup"
    folder.mkdir()
    job = write_job(folder, 10, rate=50, concurrency=4)
    cli = str(Path(PY).with_name("onenet-dispatch"))
    if not Path(cli).exists():
        cli = shutil.which("onenet-dispatch") or cli
    # As installed: with the bytecode cache (an install compiles it; a first run writes it).
    env = {**CHILD_ENV, "PYTHONDONTWRITEBYTECODE": ""}
    out: dict[str, Any] = {}
    for label, args in (("help", [cli, "--help"]), ("validate", [cli, "validate", str(job)])):
        measure(args, env)  # warm: the bytecode cache and the page cache
        walls = []
        for _ in range(suite.scale.startup_runs):
            m = measure(args, env)
            if m.returncode != 0:
                raise RuntimeError(f"{label}: exit {m.returncode}\n{m.stderr[-2000:]}")
            walls.append(m.seconds)
        out[label] = {
            "median_seconds": round(median(walls), 3),
            "runs": [round(w, 3) for w in walls],
        }
        log(f"  {label:<8} {median(walls):.3f} s (median of {len(walls)})")
    m = measure([PY, "-X", "importtime", "-m", "dispatcher", "validate", str(job)], env)
    out["validate_imports"] = import_times(m.stderr)
    log(f"  validate imports {out['validate_imports']['total_ms']:.0f} ms; heaviest:")
    for item in out["validate_imports"]["heaviest"][:6]:
        log(f"    {item['ms']:6.0f} ms  {item['module']}")
    return out


def rows(result: Any, add: Add) -> None:
    """This section's figures and their targets."""
    st = result
    if st:
        add("7. onenet-dispatch --help", f"{st['help']['median_seconds']:.2f} s")
        add("7. onenet-dispatch validate (10 devices)", f"{st['validate']['median_seconds']:.2f} s")
