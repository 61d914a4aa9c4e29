"""The charter version depends on what the charter says, not on how the file is written."""

from __future__ import annotations

from charter.document.loader import load_charter_text
from tests.document.test_check import VALID


def version_of(text: str) -> str:
    return load_charter_text(text).version


def test_same_content_same_version_whatever_the_layout() -> None:
    reordered = VALID.replace(
        "    owner: platform-lead\n    risk: medium\n",
        "    risk: medium\n    owner: platform-lead\n",
    )
    commented = "# a comment\n" + VALID.replace("format: 1", "format: 1   # trailing")
    flow = VALID.replace(
        "        price: {input_per_mtok: 1, output_per_mtok: 2}",
        "        price:\n          output_per_mtok: 2\n          input_per_mtok: 1",
    )
    quoted = VALID.replace("organization: Acme", 'organization: "Acme"')
    base = version_of(VALID)
    assert {version_of(t) for t in (reordered, commented, flow, quoted)} == {base}


def test_explicit_default_is_the_same_content() -> None:
    explicit = VALID.replace("    kind: route\n", "    kind: route\n    mode: enforce\n")
    assert version_of(explicit) == version_of(VALID)


def test_different_content_different_version() -> None:
    assert version_of(VALID.replace("risk: medium", "risk: high")) != version_of(VALID)
    assert version_of(
        VALID.replace("    kind: route\n", "    kind: route\n    mode: shadow\n")
    ) != (version_of(VALID))


def test_version_is_a_sha256() -> None:
    version = version_of(VALID)
    assert version.startswith("sha256:") and len(version) == len("sha256:") + 64
