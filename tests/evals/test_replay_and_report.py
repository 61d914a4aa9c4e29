"""Replay of recorded demo traffic against a stricter and a laxer charter; the HTML report in a
real headless Chromium."""

from __future__ import annotations

import datetime as dt
import struct
import subprocess
import zlib
from pathlib import Path

import httpx
import pytest

from charter.document.loader import load_charter
from charter.evals.replay import replay
from charter.evals.report import html_report
from charter.evals.runner import run_policy
from charter.evals.suite import load_suite
from tests.evals.conftest import EXAMPLE, SUITE, charter_copy
from tests.gateway.conftest import SUPPORT_KEY, make_services

pytestmark = pytest.mark.anyio

SUPPORT_MODELS = "        - principals: [support]\n          models: [sim-small, sim-large]"
DEMO_TRAFFIC = [  # the demo's support-bot requests, as `charter demo` sends them
    ("sim-small", "Hi! Where is my parcel for order 4821?"),
    ("sim-small", "I'm jane.doe@example.com, +1 415 555 0132. Can you update my address?"),
    ("sim-small", "Here is my key sk-proj-Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6kM9n, check it?"),
    ("sim-large", "Do you ship to Norway?"),
]


async def test_replay_reports_what_a_stricter_candidate_would_change(tmp_path: Path) -> None:
    services = make_services(tmp_path)
    from charter.gateway.app import build_app

    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    try:
        transport = httpx.ASGITransport(app=build_app(services.gateway))
        async with httpx.AsyncClient(transport=transport, base_url="http://c") as http:
            for model, text in DEMO_TRAFFIC:
                body = {"model": model, "messages": [{"role": "user", "content": text}]}
                response = await http.post(
                    "/v1/chat/completions",
                    json=body,
                    headers={"authorization": f"Bearer {SUPPORT_KEY}"},
                )
                assert response.status_code == 200, response.text
        end = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
        current = load_charter(EXAMPLE).require()
        stricter = load_charter(
            charter_copy(tmp_path, (SUPPORT_MODELS, SUPPORT_MODELS.replace(", sim-large]", "]")))
        ).require()
        report = replay(services.store, current, stricter, start, end)
        assert report.considered == 4
        assert report.no_content == 1  # the key was refused before the provider: nothing stored
        assert report.replayed == 3
        changes = report.by_decision["approved-models"]
        assert (changes.newly_blocked, changes.newly_allowed) == (1, 0)
        (example,) = changes.examples
        assert example.text == "Do you ship to Norway?" and example.control == "model-allowlist"
        # The other way round, the same traffic shows what a laxer charter would let through.
        back = replay(services.store, stricter, current, start, end)
        assert back.by_decision["approved-models"].newly_allowed == 1
        # The stored text is the redacted one: the replayed PII request shows no address.
        assert all("jane.doe" not in c.text for c in report.changes + back.changes)
        assert replay(services.store, current, current, start, end).changes == ()
    finally:
        await services.aclose()


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG into rows (enough for a screenshot)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6)
    bpp = 3 if colour == 2 else 4
    raw, rows, prev = zlib.decompress(idat), [], bytearray(width * bpp)
    stride = width * bpp
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                line[i] = (line[i] + pred) & 255
        rows.append(bytes(line))
        prev = line
    return width, bpp, rows


def _count(rows: list[bytes], bpp: int, rgb: tuple[int, int, int]) -> int:
    target = bytes(rgb)
    return sum(row[i : i + 3] == target for row in rows for i in range(0, len(row), bpp))


async def test_the_html_report_renders_its_charts_in_headless_chromium(tmp_path: Path) -> None:
    charter = load_charter(EXAMPLE).require()
    run = await run_policy(charter, load_suite(SUITE))
    page = tmp_path / "report.html"
    page.write_text(html_report(run, None, run))
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            "/usr/bin/chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1000,1400",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    _, bpp, rows = _png_pixels(shot.read_bytes())
    # The charts' bars are drawn in these colours and nothing else on the page is.
    assert _count(rows, bpp, (0x2E, 0x7D, 0x32)) > 2000  # attacks stopped (green)
    assert _count(rows, bpp, (0x15, 0x65, 0xC0)) > 2000  # pass rate per category (blue)
