"""Inline SVG charts for the console (no script, no external library): spend over time."""

from __future__ import annotations

import html
from collections.abc import Sequence

# Distinguishable on a white background and for the common colour-vision deficiencies (Okabe-Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


def usd(micro: int) -> str:
    return f"${micro / 1e6:,.2f}" if micro >= 10_000 else f"${micro / 1e6:,.6f}"


def stacked_bars(
    title: str, days: Sequence[str], series: Sequence[tuple[str, Sequence[int]]]
) -> str:
    """Spend per day, stacked by principal: ``series`` is (principal, micro-dollars per day)."""
    width, height, left, bottom, top = 720, 260, 80, 40, 30
    plot_w, plot_h = width - left - 150, height - top - bottom
    totals = [sum(values[i] for _, values in series) for i in range(len(days))]
    peak = max(totals, default=0) or 1
    bar_w = plot_w / max(len(days), 1)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}">',
        f'<text x="0" y="16" font-size="14" font-weight="bold">{html.escape(title)}</text>',
    ]
    for tick in (0, 0.5, 1):
        y = top + plot_h - tick * plot_h
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
            f"{html.escape(usd(round(peak * tick)))}</text>"
        )
    for i, day in enumerate(days):
        x = left + i * bar_w
        y = top + plot_h
        for j, (name, values) in enumerate(series):
            value = values[i]
            if not value:
                continue
            h = value / peak * plot_h
            y -= h
            out.append(
                f'<rect x="{x + 2:.1f}" y="{y:.1f}" width="{max(bar_w - 4, 1):.1f}" '
                f'height="{h:.1f}" fill="{PALETTE[j % len(PALETTE)]}">'
                f"<title>{html.escape(name)} {html.escape(day)}: {usd(value)}</title></rect>"
            )
        if i % max(1, len(days) // 7) == 0:
            out.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 16}" font-size="10" '
                f'text-anchor="middle">{html.escape(day[5:])}</text>'
            )
    for j, (name, _) in enumerate(series):
        y = top + 14 * j
        out.append(
            f'<rect x="{left + plot_w + 16}" y="{y}" width="10" height="10" '
            f'fill="{PALETTE[j % len(PALETTE)]}"/>'
            f'<text x="{left + plot_w + 32}" y="{y + 9}" font-size="11">{html.escape(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)
