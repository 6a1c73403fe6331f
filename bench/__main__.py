"""``python -m bench [SECTION [ARGS...]]``: the whole suite, or one section of the registry.

Without a section (or with the suite's own options, ``--quick``, ``--only``...), the suite
runs as ``bench/run.py`` describes. With a section's name, that section runs alone: a suite
section as ``--only SECTION``, a standalone one with its own options.
"""

import sys

from bench.run import main
from bench.sections import SECTIONS


def _run(argv: list[str]) -> int:
    if argv and argv[0] in SECTIONS:
        section = SECTIONS[argv[0]]
        if section.suite:
            return main(["--only", section.name, *argv[1:]])
        code: int | None = section.load().main(argv[1:])
        return code or 0
    if argv and argv[0] in ("-l", "--list"):
        for section in SECTIONS.values():
            kind = "suite" if section.suite else "standalone"
            print(f"{section.name:16} {kind:10} {section.summary}")
        return 0
    return main(argv)


sys.exit(_run(sys.argv[1:]))
