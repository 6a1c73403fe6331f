"""The rollout's stop and pace rules, applied by the engine as answers come in:
the abort rule and the rate ramp."""

from __future__ import annotations

from dispatcher.rolloutspec import AbortSpec, RampSpec


class AbortRule:
    """Evaluates a job's abort rule against the answers so far."""

    __slots__ = ("_spec", "answered", "failed")

    def __init__(self, spec: AbortSpec | None, answered: int = 0, failed: int = 0) -> None:
        self._spec = spec
        self.answered = answered
        self.failed = failed

    def record(self, ok: bool, errno: int | None) -> str | None:
        """Count one answered row; a reason when the rollout must stop."""
        self.answered += 1
        if not ok:
            self.failed += 1
        spec = self._spec
        if spec is None:
            return None
        if not ok and errno is not None and errno in spec.errnos:
            return f"errno {errno} is an abort errno"
        share = spec.failure_share
        if (
            share is not None
            and self.answered >= spec.min_answered
            and self.failed >= share * self.answered
        ):
            return (
                f"failure rate {self.failed}/{self.answered} ({self.failed / self.answered:.1%})"
                f" reached the abort rule's {spec.failure_rate}"
            )
        return None


def ramp_rate(ramp: RampSpec | None, per_second: float, elapsed: float) -> float:
    """The rate ``elapsed`` seconds after sending started."""
    if ramp is None:
        return per_second
    steps = int(elapsed // ramp.period.total_seconds())
    return min(per_second, ramp.start * ramp.factor**steps)
