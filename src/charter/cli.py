"""The `charter` command: a thin layer over the library, one function per command.

Every command has an example in its help. Errors from the library (``CharterError``) are printed as
one clear line with the hint, never as a traceback, and the exit code says what kind of failure it
was.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from charter import __version__
from charter.approvals.cli import approvals as approvals_group
from charter.document.coverage import Coverage, CoverageMap, coverage
from charter.document.findings import Finding
from charter.document.loader import LoadedCharter, load_charter
from charter.document.model import Charter
from charter.document.version import charter_version, short_version
from charter.errors import CharterError
from charter.options import setting_option
from charter.settings import SETTINGS, resolve, settings_markdown

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)

EXIT_FINDINGS = 1
EXIT_USAGE = 2


class CharterGroup(click.Group):
    """Prints library errors as one line with the hint instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CharterError as exc:
            err.print(f"[bold red]error:[/] {exc.message}")
            if exc.hint:
                err.print(f"[dim]hint:[/] {exc.hint}")
            sys.exit(EXIT_FINDINGS if exc.status < 500 else 3)


@click.group(cls=CharterGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="charter")
def main() -> None:
    """Charter: the decisions your organization made about its AI, and the controls that enforce
    them.

    \b
    Start here:
      charter check examples/support-desk/charter.yaml
      charter explain examples/support-desk/charter.yaml
    """


# --- check ---------------------------------------------------------------------------------------


def _print_findings(findings: list[Finding]) -> None:
    for finding in findings:
        style = "red" if finding.severity == "error" else "yellow"
        text = f"{finding.file}:{finding.line}:{finding.column}: [{style}]{finding.severity}[/]"
        text += f"[dim]\\[{finding.code}][/]: {escape(finding.message)}"
        console.print(text, soft_wrap=True)
        if finding.hint:
            console.print(f"    [dim]fix:[/] {escape(finding.hint)}", soft_wrap=True)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    help="text for people, json for tools.",
)
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
def check(file: str, fmt: str, strict: bool) -> None:
    """Check a charter file and list every problem with file:line:column.

    Exits 0 when the charter is valid, 1 when it has errors (or warnings with --strict).

    \b
    Example:
      charter check examples/support-desk/charter.yaml
      charter check charter.yaml --format json | jq '.findings[].message'
    """
    loaded = load_charter(file)
    failed = bool(loaded.errors) or (strict and bool(loaded.warnings)) or loaded.charter is None
    if fmt == "json":
        out = {
            "file": file,
            "valid": not failed,
            "version": loaded.version if loaded.ok else None,
            "errors": len(loaded.errors),
            "warnings": len(loaded.warnings),
            "findings": [f.to_dict() for f in loaded.findings],
        }
        click.echo(json.dumps(out, indent=2))
    else:
        _print_findings(loaded.findings)
        if not failed:
            assert loaded.charter is not None
            charter = loaded.charter
            console.print(
                f"[green]ok[/] {file}: {len(charter.decisions)} decisions, "
                f"{len(charter.controls)} controls, {len(loaded.warnings)} warnings; "
                f"version {short_version(loaded.version)}"
            )
        else:
            console.print(
                f"[red]{len(loaded.errors)} errors[/], {len(loaded.warnings)} warnings in {file}"
            )
    sys.exit(EXIT_FINDINGS if failed else 0)


# --- explain -------------------------------------------------------------------------------------


def _load_for_reading(file: str) -> tuple[LoadedCharter, Charter]:
    loaded = load_charter(file)
    if loaded.charter is None:
        _print_findings(loaded.findings)
        err.print(f"[red]cannot read {file}[/]: fix the errors above (see `charter check {file}`)")
        sys.exit(EXIT_FINDINGS)
    return loaded, loaded.charter


_STATUS_STYLE = {
    Coverage.ENFORCED: "green",
    Coverage.SHADOW: "cyan",
    Coverage.OFF: "yellow",
    Coverage.UNCOVERED: "bold red",
}


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "markdown", "mermaid"]),
    default="table",
    help="table for the terminal; markdown or mermaid for docs.",
)
@click.option(
    "--principal",
    default=None,
    help="Show the exact instructions this principal's requests carry (with --model).",
)
@click.option("--model", default=None, help="The model, with --principal.")
@click.option(
    "--system", "caller_system", default="", help="A caller's own system prompt to preview with."
)
def explain(
    file: str, fmt: str, principal: str | None, model: str | None, caller_system: str
) -> None:
    """Show the decision -> control map: owners, risks, controls, and what is left bare.

    \b
    Example:
      charter explain examples/support-desk/charter.yaml
      charter explain examples/support-desk/charter.yaml --format mermaid > docs/map.mmd
      charter explain examples/support-desk/charter.yaml --principal support-bot --model sim-small
    """
    loaded, charter = _load_for_reading(file)
    if principal or model:
        if not (principal and model):
            raise click.UsageError("--principal and --model go together")
        from pathlib import Path

        from charter.standards.explain import explain_standards

        explain_standards(
            charter,
            principal,
            model,
            base_dir=Path(file).parent,
            caller_system=caller_system,
            echo=click.echo,
        )
        return
    cmap = coverage(charter)
    if fmt == "markdown":
        click.echo(_coverage_markdown(charter, cmap, loaded))
    elif fmt == "mermaid":
        click.echo(_coverage_mermaid(charter, cmap))
    else:
        _coverage_table(charter, cmap, loaded)


def _control_label(control: Any) -> str:
    fail = "fail-open" if control.on_error == "fail_open" else "fail-closed"
    return f"{control.id} ({control.kind}, {control.mode}, {fail})"


def _coverage_table(charter: Charter, cmap: CoverageMap, loaded: LoadedCharter) -> None:
    table = Table(
        title=f"{charter.organization}: decisions and the controls that enforce them",
        show_lines=True,
        expand=False,
    )
    for column in ("decision", "owner", "risk", "review by", "controls", "status"):
        table.add_column(column, overflow="fold")
    for row in cmap.decisions:
        d = row.decision
        controls = "\n".join(_control_label(c) for c in row.controls) or "[bold red]none[/]"
        if row.unknown:
            controls += "\n" + "\n".join(f"[red]{u} (unknown)[/]" for u in row.unknown)
        style = _STATUS_STYLE[row.status]
        table.add_row(
            f"[bold]{d.id}[/]\n{d.statement}",
            d.owner,
            str(d.risk),
            str(d.review_by),
            controls,
            f"[{style}]{row.status}[/]",
        )
    console.print(table)
    uncovered = cmap.by_status(Coverage.UNCOVERED)
    if uncovered:
        console.print(
            "[bold red]Decisions with no control (a slide, not a decision):[/] "
            + ", ".join(r.decision.id for r in uncovered)
        )
    if cmap.orphans:
        console.print(
            "[bold red]Controls with no decision behind them (an accident):[/] "
            + ", ".join(c.id for c in cmap.orphans)
        )
    off = cmap.by_status(Coverage.OFF)
    if off:
        console.print(
            "[yellow]Decisions whose controls are all off (not enforced):[/] "
            + ", ".join(r.decision.id for r in off)
        )
    version = short_version(charter_version(charter))
    state = "valid" if loaded.ok else f"[red]{len(loaded.errors)} errors[/] (run charter check)"
    console.print(f"charter version {version}; {state}")


def _coverage_markdown(charter: Charter, cmap: CoverageMap, loaded: LoadedCharter) -> str:
    lines = [
        f"# {charter.organization}: decisions and their controls",
        "",
        "| decision | statement | owner | risk | review by | controls | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in cmap.decisions:
        d = row.decision
        controls = "<br>".join(_control_label(c) for c in row.controls) or "**none**"
        statement = " ".join(d.statement.split()).replace("|", "\\|")
        lines.append(
            f"| `{d.id}` | {statement} | {d.owner} | {d.risk} | {d.review_by} | "
            f"{controls} | {row.status} |"
        )
    uncovered = [r.decision.id for r in cmap.by_status(Coverage.UNCOVERED)]
    lines += [
        "",
        f"**Uncovered decisions:** {', '.join(uncovered) or 'none'}",
        f"**Orphan controls:** {', '.join(c.id for c in cmap.orphans) or 'none'}",
        "",
        f"Charter version `{charter_version(charter)}`.",
    ]
    return "\n".join(lines)


def _mermaid_id(prefix: str, ident: str) -> str:
    return prefix + "_" + "".join(ch if ch.isalnum() else "_" for ch in ident)


def _coverage_mermaid(charter: Charter, cmap: CoverageMap) -> str:
    lines = ["flowchart LR"]
    for row in cmap.decisions:
        node = _mermaid_id("d", row.decision.id)
        lines.append(f'  {node}["{row.decision.id}<br/>owner: {row.decision.owner}"]')
        if row.status is Coverage.UNCOVERED:
            lines.append(f"  class {node} uncovered")
        for control in row.controls:
            lines.append(f"  {node} --> {_mermaid_id('c', control.id)}")
    for control in charter.controls:
        node = _mermaid_id("c", control.id)
        lines.append(f'  {node}(["{control.id}<br/>{control.kind} · {control.mode}"])')
        if control in cmap.orphans:
            lines.append(f"  class {node} orphan")
    lines += [
        "  classDef uncovered fill:#fdd,stroke:#c00",
        "  classDef orphan fill:#fdd,stroke:#c00",
    ]
    return "\n".join(lines)


# --- version, schema, settings, keys -------------------------------------------------------------


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--short", is_flag=True, help="Print the first 12 hex digits only.")
def version(file: str, short: bool) -> None:
    """Print the charter version: a hash of what the charter says, not how it is written.

    The same content gives the same version whatever the key order, comments or whitespace.

    \b
    Example:
      charter version examples/support-desk/charter.yaml
    """
    loaded = load_charter(file)
    charter = loaded.require()
    digest = charter_version(charter)
    click.echo(short_version(digest) if short else digest)


@main.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file.")
def schema(output: str | None) -> None:
    """Print the charter format as JSON Schema, for editors to complete and check.

    \b
    Example:
      charter schema -o charter.schema.json
      # then, first line of charter.yaml for the YAML language server:
      # yaml-language-server: $schema=./charter.schema.json
    """
    from charter.document.schema import json_schema

    text = json.dumps(json_schema(), indent=2)
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        console.print(f"wrote {output}")
    else:
        click.echo(text)


@main.command("settings")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown"]), default="table")
def settings_cmd(fmt: str) -> None:
    """List every setting with its flag, environment variable, default and current value.

    \b
    Example:
      CHARTER_LOG_LEVEL=debug charter settings
    """
    if fmt == "markdown":
        click.echo(settings_markdown(), nl=False)
        return
    current = resolve()
    table = Table(title="Charter settings (flag > environment > default)")
    for column in ("setting", "flag", "environment", "default", "current", "help"):
        table.add_column(column, overflow="fold")
    for s in SETTINGS:
        value = getattr(current, s.name)
        shown = "****" if s.secret and value else str(value)
        table.add_row(s.name, s.flag, s.env, str(s.default), shown, s.help)
    console.print(table)


@main.command()
@setting_option("charter")
@setting_option("database")
@setting_option("redis")
@setting_option("host")
@setting_option("port")
@setting_option("admin_key")
@setting_option("log_level")
def serve(**flags: Any) -> None:
    """Start the gateway: an OpenAI-compatible API that enforces the charter.

    Point any OpenAI client at http://HOST:PORT/v1 with a virtual key as its API key.

    \b
    Example:
      charter serve --charter examples/support-desk/charter.yaml --port 8787
      # scale-out: every replica shares PostgreSQL and Redis
      charter serve --database postgresql://127.0.0.1/charter --redis redis://127.0.0.1:6379/0
    """
    from charter.gateway.server import serve as run_server

    run_server(resolve(flags))


@main.command()
@click.option(
    "--charter",
    "charter_path",
    default=None,
    help="Another charter to demo (default: examples/support-desk).",
)
@click.option(
    "--report",
    "report_path",
    default="charter-demo-evidence.md",
    show_default=True,
    help="Where to write the evidence report of the demo traffic (.md, .html or .json).",
)
def demo(charter_path: str | None, report_path: str) -> None:
    """Run the support-desk charter on live traffic and narrate every verdict.

    Starts the gateway on a loopback port with the built-in simulated model (no network, no
    keys needed) and drives it with the official openai client.

    \b
    Example:
      charter demo
    """
    from charter.demo import run_demo

    sys.exit(run_demo(console, charter_path=charter_path, report_path=report_path))


@main.group()
def keys() -> None:
    """Virtual keys: create, list and revoke keys; hash a key for the charter file."""


def _store_and_charter(flags: dict[str, Any]) -> tuple[Any, Charter]:
    from charter.gateway.factory import _ensure_sqlite_dir
    from charter.storage import open_store

    settings = resolve(flags)
    charter = load_charter(settings.charter).require()
    _ensure_sqlite_dir(settings.database)
    store = open_store(settings.database)
    store.migrate()
    return store, charter


@keys.command("create")
@click.argument("principal")
@click.option("--description", default="", help="What the key is for (shown in listings).")
@setting_option("charter")
@setting_option("database")
def keys_create(principal: str, description: str, **flags: Any) -> None:
    """Create a virtual key for PRINCIPAL; the key is printed once and only its hash is kept.

    \b
    Example:
      charter keys create support-bot --description "production support widget" \\
        --charter examples/support-desk/charter.yaml
    """
    from charter.gateway.admin import create_key

    store, charter = _store_and_charter(flags)
    try:
        key, row = create_key(store, charter, principal, description)
    finally:
        store.close()
    console.print(f"created {row.id} for {principal}; the key (shown once):")
    click.echo(key)


@keys.command("list")
@click.option("--principal", default=None, help="Only this principal's keys.")
@setting_option("charter")
@setting_option("database")
def keys_list(principal: str | None, **flags: Any) -> None:
    """List virtual keys (their prefixes, never the keys).

    \b
    Example:
      charter keys list --principal support-bot
    """
    from charter.storage import open_store

    settings = resolve(flags)
    store = open_store(settings.database)
    try:
        rows = store.list_keys(principal)
    finally:
        store.close()
    table = Table(title="virtual keys")
    for column in ("id", "principal", "prefix", "created", "revoked", "description"):
        table.add_column(column)
    for row in rows:
        revoked = row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else ""
        table.add_row(
            row.id,
            row.principal_id,
            row.prefix + "…",
            row.created_at.isoformat(timespec="seconds"),
            revoked,
            row.description,
        )
    console.print(table)


@keys.command("revoke")
@click.argument("key_id")
@setting_option("database")
def keys_revoke(key_id: str, **flags: Any) -> None:
    """Revoke a key; every gateway stops accepting it within 30 seconds.

    \b
    Example:
      charter keys revoke key_3f2a9c1b0d4e
    """
    import datetime as dt

    from charter.errors import NotFound
    from charter.storage import open_store

    store = open_store(resolve(flags).database)
    try:
        if not store.revoke_key(key_id, dt.datetime.now(dt.UTC)):
            raise NotFound(f"no active key '{key_id}'", hint="see `charter keys list`")
    finally:
        store.close()
    console.print(f"revoked {key_id}")


@keys.command("hash")
@click.option("--key", "key_text", help="The key; read from standard input when omitted.")
def keys_hash(key_text: str | None) -> None:
    """Print the SHA-256 of a key, to write as `sha256:` in the charter instead of the key.

    \b
    Example:
      printf %s "$SUPPORT_BOT_KEY" | charter keys hash
    """
    text = key_text if key_text is not None else sys.stdin.read().strip()
    if not text:
        raise click.UsageError("no key given: pass --key or pipe the key on standard input")
    click.echo(hashlib.sha256(text.encode()).hexdigest())


def _register_groups() -> None:
    from charter.approvals.actions_cli import actions as actions_group
    from charter.approvals.actions_cli import breakers as breakers_group
    from charter.audit.cli import audit
    from charter.console.cli import users
    from charter.evals.cli import register as register_evals
    from charter.guards.cli import scan
    from charter.monitors.cli import status
    from charter.reports.cli import report

    main.add_command(audit)
    main.add_command(approvals_group)
    main.add_command(actions_group)
    main.add_command(breakers_group)
    register_evals(main)
    main.add_command(status)
    main.add_command(scan)
    main.add_command(users)
    main.add_command(report)


_register_groups()


if __name__ == "__main__":  # pragma: no cover
    main()
