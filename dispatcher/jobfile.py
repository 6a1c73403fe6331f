"""The job file: its schema (pydantic models) and the checks that need no fleet.

Every rule of the wire contract that can be checked on the job alone is checked
here, and pydantic's errors are translated into ``FILE:LINE: where: what`` lines
whose wording says what to write instead. Checks that need each device (per-device
variables, the 2 KiB body after they are filled in) live in ``plan``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictInt,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from dispatcher.errors import InputError, JobSchemaError, TimeSpecError
from dispatcher.problems import Problem
from dispatcher.rolloutspec import DispatchWindowSpec, RampSpec, RolloutSpec
from dispatcher.schema_errors import translate_errors
from dispatcher.timewindow import DEFAULT_ZONE, load_zone, parse_time_spec
from dispatcher.yamlfile import YamlDoc, display_path, load_yaml

MAX_COMMANDS_PER_DEVICE = 10  # the platform holds at most 10 cached commands per device
MAX_BODY_BYTES = 2048  # the contract's 2 KiB, of the compact UTF-8 JSON body
PLATFORM_PUBLIC_RATE = 300  # calls per second named by the platform's FAQ
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*)\}")
_NAME = re.compile(r"[a-z0-9._-]+", re.ASCII)
HEX_TEXT = re.compile(r"(?:[0-9A-Fa-f]{2})*", re.ASCII)


def _ranged(lo: int, hi: int) -> AfterValidator:
    def check(value: int) -> int:
        if not lo <= value <= hi:
            raise PydanticCustomError(
                "range", "must be {lo}..{hi}, got {value}", {"lo": lo, "hi": hi, "value": value}
            )
        return value

    return AfterValidator(check)


def _non_negative(value: int) -> int:
    if value < 0:
        raise PydanticCustomError("range", "must be 0 or more, got {value}", {"value": value})
    return value


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise PydanticCustomError(
            "name", 'must use only a-z, 0-9, ".", "_" and "-", got "{value}"', {"value": value}
        )
    return value


def _scalar(value: Any) -> str | int | float | bool:
    # One message for the whole union: pydantic would report each member (str, int, ...).
    if value is None:
        raise PydanticCustomError("null", "needs a value: text, a number or a boolean")
    if not isinstance(value, (bool, int, float, str)):
        raise PydanticCustomError(
            "scalar",
            "must be text, a number or a boolean, got a {kind}",
            {"kind": "list" if isinstance(value, list) else "mapping"},
        )
    return value


Id = Annotated[StrictInt, AfterValidator(_non_negative)]
Scalar = Annotated[str | int | float | bool, PlainValidator(_scalar)]
Name = Annotated[str, AfterValidator(_name)]
Retry = Annotated[StrictInt, _ranged(0, 10)]
Timeout = Annotated[StrictInt, _ranged(5, 40)]
TriggerMsg = Annotated[StrictInt, _ranged(1, 7)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PlatformOptions(_Model):
    """Optional per-command platform settings; left out, the platform's defaults apply."""

    retry: Retry | None = Field(
        None,
        description="platform-side retries while waiting for the device, 0..10 (platform default 3)",
    )
    timeout: Timeout | None = Field(
        None, description="seconds the platform waits for the device's answer, 5..40 (default 25)"
    )
    trigger_msg: TriggerMsg | None = Field(
        None,
        description="uplink that triggers delivery: bit mask 1 REGISTER, 2 UPDATE, 4 NOTIFY (default 7)",
    )


class WriteItem(_Model):
    res_id: Id = Field(description="resource id")
    type: Literal[1, 2] | None = Field(
        None, description="1 = Opaque (val is hex), 2 = Time (val is a Unix timestamp)"
    )
    val: Any = Field(
        description="boolean, string, integer or float; strings may hold {variable} placeholders"
    )

    @field_validator("val", mode="before")
    @classmethod
    def _scalar(cls, value: Any) -> Any:
        if value is None:
            raise PydanticCustomError("null", "must not be null")
        if not isinstance(value, (bool, int, float, str)):
            raise PydanticCustomError("scalar", "must be a boolean, string, integer or float")
        if isinstance(value, float) and not math.isfinite(value):
            # json.dumps would write NaN or Infinity, which is not JSON.
            raise PydanticCustomError(
                "finite", "must be a finite number, got {value}", {"value": repr(value)}
            )
        return value

    @model_validator(mode="after")
    def _typed_value(self) -> WriteItem:
        if self.type == 1:
            if not isinstance(self.val, str):
                raise PydanticCustomError("opaque", "val: type 1 (Opaque) needs a hex string")
            if not PLACEHOLDER.search(self.val) and not HEX_TEXT.fullmatch(self.val):
                raise PydanticCustomError(
                    "opaque",
                    'val: type 1 (Opaque) needs an even-length hex string, got "{val}"',
                    {"val": self.val},
                )
        if self.type == 2 and (
            isinstance(self.val, bool) or not isinstance(self.val, (int, float))
        ):
            raise PydanticCustomError(
                "time",
                "val: type 2 (Time) needs a number (Unix seconds), got {val}",
                {"val": repr(self.val)},
            )
        return self


class WriteCommand(PlatformOptions):
    obj_id: Id = Field(description="LwM2M object id")
    obj_inst_id: Id = Field(description="object instance id")
    mode: StrictInt = Field(description="write mode: 1 or 2")
    data: list[WriteItem] = Field(min_length=1, description="resources to write")

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: int) -> int:
        if value not in (1, 2):
            raise PydanticCustomError("mode", "must be 1 or 2, got {value}", {"value": value})
        return value


class ReadCommand(PlatformOptions):
    obj_id: Id = Field(description="LwM2M object id")
    obj_inst_id: Id | None = Field(None, description="object instance id (optional)")
    res_id: Id | None = Field(None, description="resource id (optional)")


class ExecuteCommand(PlatformOptions):
    obj_id: Id = Field(description="LwM2M object id")
    obj_inst_id: Id = Field(description="object instance id")
    res_id: Id = Field(description="the resource to execute")
    args: str | None = Field(
        None,
        description="arguments of the execute, at most 2 KiB; may hold {variable} placeholders",
    )


class Command(_Model):
    """One command sent to every device: exactly one of ``write``, ``read`` or ``execute``."""

    write: WriteCommand | None = None
    read: ReadCommand | None = None
    execute: ExecuteCommand | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Command:
        if sum(kind is not None for kind in (self.write, self.read, self.execute)) != 1:
            raise PydanticCustomError("command", "give exactly one of write, read or execute")
        return self

    @property
    def op(self) -> Literal["write", "read", "execute"]:
        if self.write is not None:
            return "write"
        return "read" if self.read is not None else "execute"


# YAML may give an IMEI as a number; the loader keeps its digits as text (see _keep_number_text),
# and the published schema says both forms are fine.
ImeiText = Annotated[
    str,
    Field(description="15 digits"),
    WithJsonSchema(
        {"anyOf": [{"type": "string"}, {"type": "integer"}], "description": "15 digits"}
    ),
]


class FleetSpec(_Model):
    """A named group of devices: an IMEI list, inline devices, or a CSV file."""

    name: Name
    imeis: list[ImeiText] | None = Field(None, description="IMEIs (numbers or strings)")
    devices: list[dict[str, Scalar]] | None = Field(
        None, description="inline devices: an imei and per-device variables"
    )
    csv: str | None = Field(None, description="CSV file, relative to the job file")
    imei_column: str = Field("imei", description="the CSV column that holds the IMEI")
    variables: dict[str, Scalar] = Field(
        default_factory=dict,
        description="variables every device of the fleet has, unless its own say otherwise",
    )
    delimiter: str = Field(",", min_length=1, max_length=1, description="CSV delimiter")

    @model_validator(mode="after")
    def _one_source(self) -> FleetSpec:
        given = [k for k in ("imeis", "devices", "csv") if getattr(self, k) is not None]
        if len(given) != 1:
            raise PydanticCustomError("fleet", "give exactly one of imeis, devices or csv")
        return self


class WindowSpec(_Model):
    valid_time: str = Field("now", description="now | +30m | +2h | +1d | ISO time (zone optional)")
    expired_time: str = Field(
        description="same forms; relative ones count from the run's first start"
    )
    timezone: str = Field(DEFAULT_ZONE, description="zone for ISO times written without one")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            load_zone(value)
        except TimeSpecError as exc:
            raise PydanticCustomError("zone", str(exc)) from None
        return value

    @model_validator(mode="after")
    def _times(self) -> WindowSpec:
        zone = load_zone(self.timezone)
        for key in ("valid_time", "expired_time"):
            try:
                parse_time_spec(getattr(self, key), zone)
            except TimeSpecError as exc:
                raise PydanticCustomError(
                    "time", "{key}: {msg}", {"key": key, "msg": str(exc)}
                ) from None
        return self


class RateSpec(_Model):
    per_second: float = Field(50, description="requests per second, all commands together")
    concurrency: StrictInt = Field(16, description="requests in flight at most")
    ramp: RampSpec | None = Field(None, description="start slower and grow to per_second")
    shard_rate: Literal["divided", "whole"] = Field(
        "divided",
        description="with run --shard K/N: each shard sends at per_second / N (divided, the"
        " shards share one key's budget) or at per_second each (whole)",
    )

    @field_validator("per_second", mode="before")
    @classmethod
    def _positive_rate(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PydanticCustomError(
                "number", "must be a number, got {value}", {"value": repr(value)}
            )
        if not 0 < value <= 1000:
            raise PydanticCustomError(
                "range", "must be more than 0 and at most 1000, got {value}", {"value": value}
            )
        return float(value)

    @field_validator("concurrency")
    @classmethod
    def _concurrency(cls, value: int) -> int:
        if not 1 <= value <= 256:
            raise PydanticCustomError("range", "must be 1..256, got {value}", {"value": value})
        return value


class Job(_Model):
    """A rollout: which commands go to which fleets, in which window, how fast."""

    version: Literal[1] = Field(description="job file format version: 1")
    name: Name = Field(description="the job's name; the default run id")
    description: str | None = Field(None, description="free text for the operator")
    fleets: list[FleetSpec] = Field(min_length=1)
    window: WindowSpec
    platform: PlatformOptions = PlatformOptions()
    commands: list[Command] = Field(min_length=1)
    rate: RateSpec = RateSpec()
    rollout: RolloutSpec = Field(
        default_factory=RolloutSpec, description="canary waves and abort rules"
    )
    dispatch_window: DispatchWindowSpec | None = Field(
        None, description="only send inside these local times"
    )

    def fingerprint(self) -> str:
        """A hash of what must not change under a run id: commands, platform options, window."""
        parts = {
            "commands": [c.model_dump() for c in self.commands],
            "platform": self.platform.model_dump(),
            "window": self.window.model_dump(),
        }
        blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode()
        return hashlib.sha256(blob).hexdigest()

    @field_validator("commands")
    @classmethod
    def _command_cap(cls, value: list[Command]) -> list[Command]:
        if len(value) > MAX_COMMANDS_PER_DEVICE:
            raise PydanticCustomError(
                "cap",
                "{n} commands per device; the platform holds at most {cap} cached commands per device",
                {"n": len(value), "cap": MAX_COMMANDS_PER_DEVICE},
            )
        return value

    @field_validator("fleets")
    @classmethod
    def _unique_fleets(cls, value: list[FleetSpec]) -> list[FleetSpec]:
        seen: set[str] = set()
        for index, fleet in enumerate(value):
            if fleet.name in seen:
                raise PydanticCustomError(
                    "dup", 'fleet name "{name}" used twice', {"name": fleet.name, "index": index}
                )
            seen.add(fleet.name)
        return value


def job_schema() -> str:
    """The job file's JSON Schema, generated from the models (never written by hand)."""
    schema = Job.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "onenet-dispatcher job file"
    return json.dumps(schema, indent=2, sort_keys=True)


class LoadedJob:
    """A checked job with where it came from (for relative fleet paths and messages)."""

    __slots__ = ("doc", "job", "path")

    def __init__(self, job: Job, path: Path, doc: YamlDoc) -> None:
        self.job = job
        self.path = path
        self.doc = doc

    @property
    def display(self) -> str:
        return self.doc.file

    def fleet_line(self, index: int) -> int:
        return self.doc.line_of(("fleets", index))


def load_job(path: Path) -> LoadedJob:
    """Load and check a job file; InputError lists every problem found."""
    display = display_path(path)
    doc = load_yaml(path, display)
    if not isinstance(doc.data, dict):
        raise InputError(
            [Problem(display, 1, None, "a job file is a mapping (version, name, fleets, ...)")]
        )
    data = _keep_number_text(doc)
    try:
        job = Job.model_validate(data)
    except ValidationError as exc:
        raise JobSchemaError(translate_errors(exc, doc, Job), doc) from None
    return LoadedJob(job, path, doc)


def _keep_number_text(doc: YamlDoc) -> Any:
    """IMEIs and device variables written as YAML numbers keep their digits as text."""
    data = doc.data
    fleets = data.get("fleets")
    if not isinstance(fleets, list):
        return data
    for i, fleet in enumerate(fleets):
        if not isinstance(fleet, dict):
            continue
        imeis = fleet.get("imeis")
        if isinstance(imeis, list):
            for j, value in enumerate(imeis):
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    imeis[j] = doc.raw.get(("fleets", i, "imeis", j), str(value))
        variables = fleet.get("variables")
        if isinstance(variables, dict):
            for key, value in variables.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    variables[key] = doc.raw.get(("fleets", i, "variables", key), str(value))
        devices = fleet.get("devices")
        if isinstance(devices, list):
            for j, device in enumerate(devices):
                if isinstance(device, dict):
                    for key, value in device.items():
                        if isinstance(value, (int, float)) and not isinstance(value, bool):
                            device[key] = doc.raw.get(("fleets", i, "devices", j, key), str(value))
    return data
