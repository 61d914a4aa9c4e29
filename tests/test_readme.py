"""The README's two commands stay true: CI runs the test command exactly as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path("README.md").read_text()
CI = Path(".ci/run").read_text()


def fenced_commands() -> list[str]:
    return re.findall(r"```sh\n(python3 -m venv .+?)\n```", README)


def test_readme_opens_with_what_charter_is_for() -> None:
    assert README.startswith("# Charter\n")
    assert README.index("## Try it") < 2000


def test_readme_has_the_demo_and_test_commands() -> None:
    demo, tests = fenced_commands()[:2]
    assert demo.endswith("charter demo")
    assert tests.endswith("pytest")


def test_ci_runs_the_readme_test_command() -> None:
    tests = fenced_commands()[1]
    assert tests in CI.splitlines(), "CI must run the README's test command as written"


def test_every_dependency_is_explained() -> None:
    pyproject = Path("pyproject.toml").read_text()
    block = pyproject[
        pyproject.index("dependencies = [") : pyproject.index(
            "]", pyproject.index("dependencies = [")
        )
    ]
    for name in re.findall(r'"([A-Za-z0-9_-]+)', block):
        assert name.lower() in README.lower(), f"README does not say what {name} is for"
