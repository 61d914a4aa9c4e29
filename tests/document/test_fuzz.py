"""Malformed input always yields findings with positions, never a traceback."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charter.document.loader import load_charter_text

EXAMPLE = Path("examples/support-desk/charter.yaml").read_text()
LINES = EXAMPLE.splitlines(keepends=True)

yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20)
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def assert_well_formed(text: str) -> None:
    loaded = load_charter_text(text, file="fuzz.yaml")
    line_count = max(1, text.count("\n") + 1)
    for finding in loaded.findings:
        assert finding.message
        assert 1 <= finding.line <= line_count + 1, finding
        assert finding.column >= 1
    if loaded.charter is None:
        assert loaded.errors, "a charter that did not load must say why"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_random_text(text: str) -> None:
    assert_well_formed(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(min_value=0, max_value=len(LINES) - 1),
    st.integers(min_value=0, max_value=len(LINES) - 1),
    st.sampled_from(["delete", "duplicate", "swap", "garble", "indent", "dedent"]),
    st.text(max_size=12),
)
def test_mutated_example(i: int, j: int, how: str, junk: str) -> None:
    lines = list(LINES)
    if how == "delete":
        del lines[i]
    elif how == "duplicate":
        lines.insert(j, lines[i])
    elif how == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    elif how == "garble":
        cut = len(lines[i]) // 2
        lines[i] = lines[i][:cut] + junk + lines[i][cut:]
    elif how == "indent":
        lines[i] = "  " + lines[i]
    else:
        lines[i] = lines[i].lstrip()
    assert_well_formed("".join(lines))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(
            ["format", "organization", "decisions", "controls", "principals", "providers", "x"]
        ),
        yaml_values,
        max_size=6,
    )
)
def test_random_structures(data: dict[str, object]) -> None:
    import yaml

    assert_well_formed(yaml.safe_dump(data))
