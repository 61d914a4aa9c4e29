"""Assemble a running gateway from settings: charter, store, counters, providers, keys."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from charter.approvals.content import escalating_guards
from charter.audit.log import AuditLog, open_keys
from charter.audit.spool import Spool
from charter.budgets.ledger import SpendWriter, StoreLedger
from charter.counters import Counters, MemoryCounters
from charter.document.loader import load_charter
from charter.document.model import Charter, Provider
from charter.errors import ConfigurationError
from charter.gateway.actions import ToolGate, audit_listener
from charter.gateway.keys import KeyRing
from charter.gateway.service import Gateway, Routed, audit_flushes
from charter.observability import Observer
from charter.policy.engine import Engine
from charter.policy.runtime import Runtime
from charter.providers.base import ClientSettings, ProviderClient
from charter.providers.base import Provider as ProviderImpl
from charter.settings import Settings
from charter.standards import Standards
from charter.storage.base import Store

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything a gateway process owns, closed together."""

    gateway: Gateway
    store: Store
    counters: Counters
    spend: SpendWriter
    models: dict[str, Routed]
    audit: AuditLog

    async def aclose(self) -> None:
        seen: set[int] = set()
        for routed in self.models.values():
            if id(routed.client.provider) not in seen:
                seen.add(id(routed.client.provider))
                await routed.client.provider.aclose()
        if self.gateway.approvals is not None:
            await self.gateway.approvals.aclose()
        await self.counters.aclose()
        if self.gateway.observer is not None:
            self.gateway.observer.close()
        self.spend.close()
        self.audit.close()
        self.store.close()


def make_provider(provider: Provider) -> ProviderImpl:
    """The adapter for one provider of the charter."""
    if provider.kind == "simulated":
        from charter.providers.simulated import SimulatedProvider

        return SimulatedProvider(name=provider.id)
    assert provider.base_url is not None  # the format requires it for remote kinds
    if provider.kind == "openai":
        from charter.providers.openai_compat import OpenAICompatProvider

        return OpenAICompatProvider(
            provider.base_url, name=provider.id, api_key_env=provider.api_key_env
        )
    from charter.providers.anthropic import AnthropicProvider

    return AnthropicProvider(provider.base_url, name=provider.id, api_key_env=provider.api_key_env)


def build_models(charter: Charter) -> dict[str, Routed]:
    """One ``ProviderClient`` per model, with the fallbacks the charter names."""
    plain: dict[str, Routed] = {}
    adapters: dict[str, tuple[ProviderImpl, ClientSettings]] = {}
    for provider in charter.providers:
        settings = ClientSettings(
            max_retries=provider.max_retries,
            timeout_s=provider.timeout_s,
            max_concurrency=provider.max_concurrency,
        )
        adapter = make_provider(provider)
        for spec in provider.models:
            adapters[spec.name] = (adapter, settings)
            client = ProviderClient(adapter, settings=settings, model=spec.upstream)
            plain[spec.name] = Routed(spec, client)
    out = {}
    for name, routed in plain.items():
        if not routed.spec.fallbacks:
            out[name] = routed
            continue
        adapter, settings = adapters[name]
        fallbacks = [plain[f].client for f in routed.spec.fallbacks]
        out[name] = Routed(
            routed.spec,
            ProviderClient(
                adapter, settings=settings, model=routed.spec.upstream, fallbacks=fallbacks
            ),
        )
    return out


def open_counters(redis_url: str | None) -> Counters:
    if not redis_url:
        return MemoryCounters()
    from charter.counters.redis import RedisCounters

    return RedisCounters(redis_url)


def build_services(settings: Settings, *, charter_path: str | None = None) -> Services:
    """Load the charter (refusing an invalid one), open state, and wire the gateway."""
    from charter.storage import open_store

    path = charter_path or settings.charter
    if not Path(path).exists():
        raise ConfigurationError(
            f"charter file {path} does not exist",
            hint="pass --charter FILE or set CHARTER_CHARTER; "
            "examples/support-desk/charter.yaml is a start",
        )
    charter = load_charter(path).require()
    _ensure_sqlite_dir(settings.database)
    store = open_store(settings.database)
    store.migrate()
    counters = open_counters(settings.redis)
    engine = Engine(charter, Runtime(counters=counters, ledger=StoreLedger(store)))
    keys = KeyRing(charter, store)
    models = build_models(charter)
    spend = SpendWriter(store)
    spool = Spool(Path(settings.data_dir) / "audit-spool.jsonl")
    audit = AuditLog(store, open_keys(settings.data_dir), spool=spool, flush=audit_flushes(charter))
    tools = service = None
    has_tools = any(c.kind == "tool_policy" and c.mode != "off" for c in charter.controls)
    if has_tools or escalating_guards(charter.controls):  # the approval queue is needed
        from charter.approvals.service import ActionService

        service = ActionService(
            engine, store, counters, on_event=audit_listener(audit, engine.version)
        )
        tools = ToolGate(service) if has_tools else None
    standards = Standards(charter, base_dir=Path(path).parent)
    gateway = Gateway(
        charter, engine, keys, models, spend, audit, tools, standards, approvals=service
    )
    gateway.observer = Observer.for_gateway(gateway)
    if service is not None:
        gateway.observer.set_approvals_pending(
            lambda: float(len(store.list_actions(statuses=["pending"], limit=100_000)))
        )
    return Services(gateway, store, counters, spend, models, audit)


def _ensure_sqlite_dir(url: str) -> None:
    if url.startswith("postgres"):
        return
    path = url.removeprefix("sqlite:///").removeprefix("sqlite://")
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
