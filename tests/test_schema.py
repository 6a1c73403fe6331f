"""The published JSON Schema: generated from the models, current, and true to the examples."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from dispatcher.cli import main
from dispatcher.jobfile import job_schema

ROOT = Path(__file__).resolve().parent.parent


def test_published_schema_is_the_generated_one() -> None:
    """docs/job.schema.json is what `onenet-dispatch schema` prints (regenerate it when models change)."""
    assert job_schema() == (ROOT / "docs" / "job.schema.json").read_text("utf-8").rstrip("\n")


def test_schema_command_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    """`onenet-dispatch schema` prints valid JSON with the job's top-level keys."""
    assert 0 == main(["schema"])
    schema = json.loads(capsys.readouterr().out)
    assert {"version", "name", "fleets", "window", "commands", "rate", "rollout"} <= set(
        schema["properties"]
    )


@pytest.mark.parametrize("job", sorted((ROOT / "jobs").glob("*.yaml")), ids=lambda p: p.name)
def test_example_jobs_satisfy_the_schema(job: Path) -> None:
    """Every example job is valid for an editor using the schema, as it is for `validate`."""
    jsonschema.validate(yaml.safe_load(job.read_text("utf-8")), json.loads(job_schema()))


def test_schema_rejects_what_validate_rejects() -> None:
    """An unknown key and a wrong mode fail the schema too."""
    schema = json.loads(job_schema())
    bad = yaml.safe_load((ROOT / "jobs" / "example.yaml").read_text("utf-8"))
    bad["commands"][0]["write"]["mdoe"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
