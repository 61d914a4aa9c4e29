"""Shared pieces of the eval tests: the example charter and suite, and a CLI group to invoke."""

from __future__ import annotations

from pathlib import Path

import click

from charter.cli import CharterGroup
from charter.evals.cli import register

EXAMPLE = Path("examples/support-desk/charter.yaml")
SUITE = Path("examples/support-desk/evals/support.yaml")


@click.group(cls=CharterGroup)
def cli() -> None:
    """The eval commands on a group of their own, as `charter` registers them."""


register(cli)


def charter_copy(tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    """The example charter (with its suite beside it), with text replaced; each must apply."""
    text = EXAMPLE.read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    (tmp_path / "evals").mkdir(exist_ok=True)
    (tmp_path / "evals" / "support.yaml").write_text(SUITE.read_text())
    path = tmp_path / "charter.yaml"
    path.write_text(text)
    return path
