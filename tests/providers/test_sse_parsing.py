"""``sse_data``: server-sent events split into lines by Charter, whatever the reads deliver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from charter.errors import UpstreamError
from charter.providers.http import READ_BUFFER, sse_data


class _Content:
    def __init__(self, blocks: list[bytes]) -> None:
        self.blocks = blocks

    async def iter_any(self) -> AsyncIterator[bytes]:
        for block in self.blocks:
            yield block


class _Response:
    """What ``sse_data`` reads of an aiohttp response: its content, one read per block."""

    def __init__(self, blocks: list[bytes]) -> None:
        self.content = _Content(blocks)


def events(blocks: list[bytes]) -> list[str]:
    async def collect() -> list[str]:
        response: Any = _Response(blocks)
        return [event async for event in sse_data(response, "p")]

    return asyncio.run(collect())


STREAM = (
    b'data: {"a": 1}\n\n'
    b": a comment line\n"
    b"event: message\r\n"
    b'data: {"b": "caf\xc3\xa9"}\r\n\r\n'
    b"data: first line\ndata: second line\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = ['{"a": 1}', '{"b": "café"}', "first line\nsecond line", "[DONE]"]


def test_events_in_one_read() -> None:
    assert events([STREAM]) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16])
def test_events_split_across_reads_anywhere(size: int) -> None:
    """Reads of any size, including one that ends inside ``\\r\\n`` or inside the two bytes of
    an accented letter, give the same events."""
    blocks = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert events(blocks) == EXPECTED


def test_a_last_event_without_its_blank_line_is_still_delivered() -> None:
    assert events([b"data: one\n\ndata: two"]) == ["one", "two"]


def test_an_endless_line_is_an_upstream_error_not_unbounded_memory() -> None:
    blocks = [b"data: " + b"x" * (READ_BUFFER // 4)] * 5  # no newline, over the limit
    with pytest.raises(UpstreamError, match="larger than"):
        events(blocks)
