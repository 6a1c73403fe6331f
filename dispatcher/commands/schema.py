"""`schema`: print the job file's JSON Schema."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from dispatcher.exits import (
    EXIT_OK,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "schema",
        help="print the job file's JSON Schema (for editors' YAML language servers)",
        description="Print the JSON Schema of the job file, generated from the models that check it.\n"
        "Point your editor's YAML language server at it for completion and inline errors: put\n"
        "  # yaml-language-server: $schema=job.schema.json\n"
        "as the first line of a job file (see docs/job-file.md).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  onenet-dispatch schema > job.schema.json",
    )
    p.set_defaults(handler=handle, logs=False)


def handle(args: argparse.Namespace, out: Console, err: Console) -> int:
    from dispatcher.jobfile import job_schema

    sys.stdout.write(job_schema() + "\n")
    return EXIT_OK
