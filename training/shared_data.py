"""Where the shared data sets live (prompts/, indirect/, outputs/, pii/ and their README).

``$CHARTER_SHARED_DATA`` if set, else ``../shared/data`` beside the repository. Training scripts,
benchmarks and the tests that measure detectors on held-out data all ask here, so a checkout that
does not sit beside ``shared/`` needs one variable, not an edit per script. (Not
``CHARTER_DATA_DIR``: that is the gateway's own state directory, docs/settings.md.)
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """The shared data directory (not checked: see :func:`data_file`)."""
    return Path(os.environ.get("CHARTER_SHARED_DATA", ROOT.parent / "shared" / "data"))


def data_file(relative: str) -> Path:
    """``relative`` inside the shared data directory; ``FileNotFoundError`` saying what to set
    when it is not there."""
    path = data_dir() / relative
    if not path.exists():
        raise FileNotFoundError(
            f"shared data not found: {path}; set CHARTER_SHARED_DATA to the folder holding "
            "prompts/, indirect/, outputs/ and pii/"
        )
    return path
