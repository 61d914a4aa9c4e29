"""The charter format as JSON Schema, derived from the pydantic models (`charter schema`)."""

from __future__ import annotations

from typing import Any

from charter import __version__
from charter.document.model import Charter

SCHEMA_ID = "https://charter.dev/schema/charter-1.json"


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a charter file, for editors and other tools."""
    schema = Charter.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Charter file",
        "description": (
            f"A charter: decisions and the controls that enforce them (charter {__version__})."
        ),
        **schema,
    }
