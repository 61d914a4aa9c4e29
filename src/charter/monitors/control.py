"""The `monitor` control kind: drift statistics and alert thresholds (see ``monitors.drift``).

A monitor judges no single request, so its handler runs at no stage; the observer builds the
sliding windows from the charter. Registering the kind here is what lets the engine and
`charter check` accept monitors, and refuse ones that cannot work.
"""

from __future__ import annotations

from typing import Any

from charter.document.model import Charter, GuardControl, MonitorControl
from charter.document.source import Path
from charter.errors import ConfigurationError
from charter.monitors.drift import NEEDS_CONTROL, SCORE_STATISTICS
from charter.policy.registry import register
from charter.policy.runtime import Runtime
from charter.policy.verdict import Stage


class MonitorHandler:
    """Checks the monitor against the charter at start; evaluates nothing per request."""

    stages: frozenset[Stage] = frozenset()

    def __init__(self, control: MonitorControl, charter: Charter, runtime: Runtime) -> None:
        self.control = control
        settings = control.settings
        if settings.control is not None and settings.statistic in SCORE_STATISTICS:
            watched = next((c for c in charter.controls if c.id == settings.control), None)
            if watched is not None and not isinstance(watched, GuardControl):
                raise ConfigurationError(
                    f"monitor {control.id} watches the scores of {watched.id}, a "
                    f"{watched.kind} control, which gives no scores",
                    hint="score_psi and score_ks watch a guard control",
                )

    def evaluate(self, ctx: Any) -> None:
        return None


def gaps(settings: Any) -> list[tuple[Path, str]]:
    """Statistics about one control's verdicts need to be told which control."""
    if settings.statistic in NEEDS_CONTROL and settings.control is None:
        return [
            (
                ("settings", "control"),
                f"statistic `{settings.statistic}` watches one control: set `control` to its id",
            )
        ]
    return []


register("monitor", MonitorHandler, gaps=gaps)
