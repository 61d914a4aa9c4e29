"""Click options derived from the settings table, so every command spells a setting the same way
(flag, ``CHARTER_*`` variable, type, choices and help all come from ``charter.settings``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from charter.settings import BY_NAME

F = TypeVar("F", bound=Callable[..., Any])


def setting_option(name: str) -> Callable[[F], F]:
    """The click option of setting ``name`` (None when not given, so ``resolve`` can fall back
    to the environment and then the default)."""
    setting = BY_NAME[name]
    return click.option(
        setting.flag,
        name,
        default=None,
        envvar=setting.env,
        show_envvar=True,
        help=f"{setting.help} [default: {setting.default}]",
        type=click.Choice(setting.choices) if setting.choices else setting.type,
    )
