"""How standards recognise text: banned phrasings, required elements and their conditions.

One module, so `charter check` (which refuses a required element that a banned phrasing would
match) and the request path judge text exactly the same way.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from charter.document.model import Fragment
from charter.errors import ConfigurationError

_SPACE = re.compile(r"\s+")


def phrase_pattern(phrases: Sequence[str]) -> re.Pattern[str] | None:
    """One case-insensitive pattern matching any of ``phrases`` as whole words, any spacing."""
    parts = [
        _SPACE.sub(r"\\s+", re.escape(p.strip()).replace(r"\ ", " ")) for p in phrases if p.strip()
    ]
    if not parts:
        return None
    # Longest first, so "we guarantee" wins over "we" when both are listed.
    parts.sort(key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)", re.IGNORECASE)


def user_pattern(pattern: str | None) -> re.Pattern[str] | None:
    """A pattern from the charter, matched in any case (validated when the charter loaded)."""
    return re.compile(pattern, re.IGNORECASE) if pattern is not None else None


def normalize(text: str) -> str:
    """Case- and spacing-insensitive form, for finding a required element in an answer."""
    return _SPACE.sub(" ", text).strip().casefold()


def find_all(patterns: Iterable[re.Pattern[str] | None], text: str) -> list[tuple[int, int]]:
    """The ``[start, end)`` ranges where any pattern matches, in order, without empty matches."""
    found = {
        (m.start(), m.end())
        for pattern in patterns
        if pattern is not None
        for m in pattern.finditer(text)
        if m.end() > m.start()
    }
    return sorted(found)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fragment_problem(base_dir: Path, fragment: Fragment) -> str | None:
    """What is wrong with a file fragment (missing, not UTF-8, empty, not the pinned content)."""
    if fragment.file is None:
        return None
    try:
        read_fragment(base_dir, fragment)
    except ConfigurationError as exc:
        return exc.message
    return None


def read_fragment(base_dir: Path | None, fragment: Fragment) -> str:
    """The text of a fragment; files are read relative to the charter's directory."""
    if fragment.text is not None:
        return fragment.text
    assert fragment.file is not None  # the model requires one of the two
    if base_dir is None:
        raise ConfigurationError(
            f"instructions file {fragment.file} needs the charter's directory to be found",
            hint="pass base_dir (the folder of the charter file) to Standards",
        )
    path = base_dir / fragment.file
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read instructions file {fragment.file} ({exc.strerror})",
            hint=f"the path is relative to the charter file's folder, {base_dir}",
        ) from None
    if fragment.sha256 is not None and sha256_hex(raw) != fragment.sha256:
        raise ConfigurationError(
            f"instructions file {fragment.file} is not the pinned content "
            f"(its sha256 is {sha256_hex(raw)})",
            hint="if the change is intended, put that digest in `sha256`",
        )
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"instructions file {fragment.file} is not UTF-8 (byte {exc.start})",
            hint="save it as UTF-8",
        ) from None
    if not text:
        raise ConfigurationError(
            f"instructions file {fragment.file} is empty", hint="write the instructions in it"
        )
    return text
