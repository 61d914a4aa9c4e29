"""`charter scan`: run a charter's guards over a JSON Lines file of texts, as the gateway would.

Registered on the main command by ``main.add_command(scan)`` (``charter.cli._register_groups``).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from charter.document.loader import load_charter
from charter.errors import CharterError, InvalidRequest
from charter.guards.api import SCAN_STAGES, ScanRow, ScanService, parse_stage, row_of
from charter.policy.engine import Engine

err = Console(stderr=True, highlight=False)


def read_rows(path: Path) -> list[tuple[str, str]]:
    """The ``(id, text)`` rows of a JSON Lines file; a bad line is an error naming its number."""
    rows: list[tuple[str, str]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidRequest(
            f"cannot read {path}: {exc.strerror}", hint="pass a JSON Lines file"
        ) from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except ValueError as exc:
            raise InvalidRequest(
                f"{path}:{number}: not valid JSON ({exc})",
                hint='each line is {"id": "1", "text": "..."}',
            ) from None
        try:
            rows.append(row_of(raw, number - 1))
        except InvalidRequest as exc:
            raise InvalidRequest(f"{path}:{number}: {exc.message}", hint=exc.hint) from None
    return rows


def scan_rows(
    service: ScanService, rows: list[tuple[str, str]], stage_name: str, progress: bool
) -> Iterator[ScanRow]:
    """Scan every row, with a progress bar on the terminal when ``progress`` is set."""
    stage = parse_stage(stage_name)
    if not progress:
        for row_id, text in rows:
            yield service.scan(row_id, text, stage)
        return
    columns = (
        TextColumn("scanning"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("scan", total=len(rows))
        for row_id, text in rows:
            yield service.scan(row_id, text, stage)
            bar.advance(task)


def summary(results: list[ScanRow]) -> Table:
    """Verdict counts and latency, for the terminal."""
    table = Table(title="charter scan")
    table.add_column("verdict")
    table.add_column("rows", justify="right")
    for verdict, count in sorted(Counter(r.verdict.value for r in results).items()):
        table.add_row(verdict, str(count))
    if results:
        latencies = sorted(r.latency_ms for r in results)
        table.caption = (
            f"p50 {statistics.median(latencies):.3f} ms, "
            f"max {latencies[-1]:.3f} ms over {len(results)} rows"
        )
    return table


@click.command()
@click.option(
    "--charter",
    "charter_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="The charter whose guards to run.",
)
@click.option(
    "--stage",
    type=click.Choice([s.value for s in SCAN_STAGES]),
    default="input",
    show_default=True,
    help="What the texts are: input (the user's), untrusted (documents, tool results) or output "
    "(the model's answers).",
)
@click.option(
    "--input",
    "input_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help='JSON Lines, one {"id": ..., "text": ...} per line.',
)
@click.option(
    "--output",
    "output_file",
    default="-",
    type=click.File("w", encoding="utf-8"),
    help="Where to write one verdict per line (JSON Lines); - for stdout.",
)
def scan(charter_file: str, stage: str, input_file: Path, output_file: IO[str]) -> None:
    """Run a charter's guards over texts and write one verdict per row.

    Each output row has id, verdict (allow, block, redact or escalate), the controls and decisions
    that fired (shadow controls too, marked enforced: false), scores per control, the redacted
    text where a redaction applied, and latency. Exits 0 whatever the verdicts are.

    \b
    Example:
      charter scan --charter examples/support-desk/charter.yaml --stage input \\
        --input rows.jsonl --output verdicts.jsonl
    """
    try:
        charter = load_charter(charter_file).require()
        service = ScanService(Engine(charter))
        rows = read_rows(input_file)
        to_file = output_file.name != "<stdout>"
        results: list[ScanRow] = []
        for result in scan_rows(service, rows, stage, progress=to_file):
            output_file.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
            results.append(result)
    except CharterError as exc:
        raise click.ClickException(str(exc)) from None
    if to_file:
        err.print(summary(results))
