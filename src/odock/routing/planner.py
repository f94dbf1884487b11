"""Which targets a request may go to, and in what order (spec §9.3, §9.5; docs/routing.md).

A *target* is a model and one of its deployments. The planner orders the candidate models by the
policy's strategy, then picks, model by model, a deployment whose circuit is not open: by weight
(``weighted``, the default) or the fewest calls in flight in this process (``least_busy``).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from odock.errors import OdockError
from odock.keys.model_access import callable_model
from odock.keys.principal import KeyPrincipal
from odock.keys.routing import ModelTypeRouting, RoutingCandidate, parse_routing
from odock.llm.codec import Dialect
from odock.llm.upstream import Endpoint
from odock.providers.catalog import Deployment, ModelCatalog, ResolvedModel
from odock.routing.breakers import Breakers
from odock.routing.route import SKIPPED, Route
from odock.surfaces.surface import Surface

T = TypeVar("T")

# The nativeFallback family of each provider type (spec §9.5).
FAMILY = {
    "OPENAI": "openai",
    "AZURE_OPENAI": "openai",
    "CUSTOM": "openai",
    "HUGGINGFACE": "openai",
    "MOCK": "openai",
    "ANTHROPIC": "anthropic",
    "GOOGLE": "gemini",
    "VLLM": "vllm",
    "MISTRAL": "mistral",
}
MEMO_ENTRIES = 10_000  # each memo of the planner starts over past this many entries
# A key pool used without a routing policy moves to its next deployment on these failures.
POOL_TRIGGERS = frozenset({"5xx", "timeout", "rate_limit"})


@dataclass(slots=True)
class _Candidates:
    """A policy's candidates resolved for one principal and requested model (see _candidates)."""

    principal: KeyPrincipal
    requested: ResolvedModel
    policy: ModelTypeRouting
    entries: list[tuple[ResolvedModel, RoutingCandidate]]  # the key may call each; priority-sorted
    fallbacks: list[ResolvedModel]  # nativeFallback of the requested model's family (native endpoints)
    triggers: frozenset[str]


class InFlight:
    """Calls waiting on each deployment in this process (the ``least_busy`` measure)."""

    def __init__(self) -> None:
        self._calls: Counter[str] = Counter()

    def enter(self, deployment: str) -> None:
        """A call to ``deployment`` starts."""
        self._calls[deployment] += 1

    def leave(self, deployment: str) -> None:
        """A call to ``deployment`` ended."""
        left = self._calls[deployment] - 1
        if left > 0:
            self._calls[deployment] = left
        else:
            del self._calls[deployment]

    def __getitem__(self, deployment: str) -> int:
        return self._calls.get(deployment, 0)


class RoutePlanner:
    """Builds a request's :class:`Route` and picks each next target."""

    def __init__(self, catalog: ModelCatalog, breakers: Breakers, in_flight: InFlight) -> None:
        self._catalog = catalog
        self._breakers = breakers
        self._in_flight = in_flight
        self._policies: dict[str, tuple[object, dict[str, ModelTypeRouting]]] = {}
        self._resolved: dict[tuple[str, str, Endpoint, bool], _Candidates] = {}
        self._deployments: dict[str, tuple[ResolvedModel, tuple[Deployment, ...]]] = {}

    def policy(self, principal: KeyPrincipal, model_type: str) -> ModelTypeRouting | None:
        """The key's routing policy for ``model_type`` when the organisation's switch is on."""
        switch = principal.organisation_policies.get("routing")
        if not isinstance(switch, dict) or switch.get("enabled") is not True:
            return None
        raw = principal.policies.get("routing")
        if not raw:
            return None
        known = self._policies.get(principal.key_id)
        if known is None or known[0] is not raw:  # parsed once per cached principal
            if len(self._policies) > MEMO_ENTRIES:
                self._policies.clear()
            known = self._policies[principal.key_id] = (raw, parse_routing(raw))
        return known[1].get(model_type)

    async def route(
        self,
        principal: KeyPrincipal,
        requested: ResolvedModel,
        policy: ModelTypeRouting | None,
        surface: Surface,
        endpoint: Endpoint,
        route_name: str,
    ) -> Route:
        """The route of a request for ``requested`` under ``policy`` (None: its key pool only)."""
        if policy is None:
            pool = len(self.deployments(requested))
            return Route(requested, None, [requested], POOL_TRIGGERS, pool, 0.0)
        native = surface.dialect is not Dialect.UNIFIED
        known = await self._candidates(principal, requested, policy, endpoint, route_name, native)
        ordered = await self._ordered(principal, requested, policy, known.entries)
        ordered.extend(model for model in known.fallbacks if all(model.id != o.id for o in ordered))
        return Route(
            requested,
            policy.strategy,
            ordered,
            known.triggers,
            1 + policy.max_retries,
            policy.retry_delay_ms / 1000,
        )

    def deployments(self, model: ResolvedModel) -> tuple[Deployment, ...]:
        """``model.deployments()``, built once per cached model."""
        known = self._deployments.get(model.id)
        if known is None or known[0] is not model:
            if len(self._deployments) > MEMO_ENTRIES:
                self._deployments.clear()
            known = self._deployments[model.id] = (model, model.deployments())
        return known[1]

    async def _candidates(
        self,
        principal: KeyPrincipal,
        requested: ResolvedModel,
        policy: ModelTypeRouting,
        endpoint: Endpoint,
        route_name: str,
        native: bool,
    ) -> _Candidates:
        """The policy's candidates the key may call here, and the native fallbacks; resolved once
        per cached principal and model (a change to either replaces the cached object)."""
        memo = (principal.key_id, requested.id, endpoint, native)
        known = self._resolved.get(memo)
        if (
            known is not None
            and known.principal is principal
            and known.requested is requested
            and known.policy is policy
        ):
            return known
        entries: list[tuple[ResolvedModel, RoutingCandidate]] = []
        for candidate in policy.candidates:
            model = await self._candidate(principal, requested, candidate.model_name, endpoint, route_name)
            if model is not None and all(model.id != seen.id for seen, _ in entries):
                entries.append((model, candidate))
        if policy.strategy == "priority":
            entries.sort(key=lambda entry: entry[1].priority)
        fallbacks = []
        if native and requested.provider is not None:
            family = FAMILY.get(requested.provider.type)
            names = next((names for kind, names in policy.native_fallback.items() if kind == family), [])
            for name in names:
                model = await self._candidate(principal, requested, name, endpoint, route_name)
                if model is not None:
                    fallbacks.append(model)
        known = _Candidates(principal, requested, policy, entries, fallbacks, frozenset(policy.failover_on))
        if len(self._resolved) > MEMO_ENTRIES:
            self._resolved.clear()
        self._resolved[memo] = known
        return known

    async def _ordered(
        self,
        principal: KeyPrincipal,
        requested: ResolvedModel,
        policy: ModelTypeRouting,
        entries: list[tuple[ResolvedModel, RoutingCandidate]],
    ) -> list[ResolvedModel]:
        """The candidates in this request's strategy order; the requested model first when the
        policy does not name it."""
        strategy = policy.strategy
        if strategy == "round_robin" and entries:
            turn = await self._breakers.next_turn(f"rr:{principal.key_id}:{requested.type}")
            shift = turn % len(entries)
            entries = entries[shift:] + entries[:shift]
        elif strategy == "weighted":
            entries = _weighted_order(entries, [entry[1].weight for entry in entries])
        models = [model for model, _ in entries]
        if all(model.id != requested.id for model in models):
            models.insert(0, requested)
        return models

    async def _candidate(
        self,
        principal: KeyPrincipal,
        requested: ResolvedModel,
        name: str,
        endpoint: Endpoint,
        route_name: str,
    ) -> ResolvedModel | None:
        """The candidate ``name`` when the key may call it here and it is of the requested type."""
        if name == requested.name:
            return requested
        try:
            model = await callable_model(self._catalog, principal, name, endpoint, route_name)
        except OdockError:
            return None  # routing never bypasses access: a model the key may not call is left out
        return model if model.type == requested.type else None

    async def next_target(self, route: Route) -> tuple[ResolvedModel, Deployment] | None:
        """The next model and deployment to try, passing over open circuits (noted as skipped)."""
        while route.position < len(route.candidates):
            model = route.candidates[route.position]
            untried = [d for d in self.deployments(model) if d.id not in route.tried]
            if untried:
                chosen = await self._choose(route, model, untried)
                if chosen is not None:
                    return model, chosen
            route.position += 1
        return None

    async def _choose(
        self, route: Route, model: ResolvedModel, deployments: Sequence[Deployment]
    ) -> Deployment | None:
        states = await self._breakers.usable([d.id for d in deployments])
        usable = []
        for deployment in deployments:
            if states.get(deployment.id, "closed") == "open":
                route.note(model, deployment, SKIPPED, reason="circuit_open")
            else:
                usable.append(deployment)
        if not usable:
            return None
        probe = next((d for d in usable if states.get(d.id) == "probe"), None)
        if probe is not None:
            return probe  # the half-open deployment this request was chosen to try
        if len(usable) == 1:
            return usable[0]
        if model.config.get("load_balancing") == "least_busy":
            fewest = min(self._in_flight[d.id] for d in usable)
            usable = [d for d in usable if self._in_flight[d.id] == fewest]
        return _weighted_order(usable, [d.weight for d in usable])[0]


def _weighted_order(items: Sequence[T], weights: Sequence[int]) -> list[T]:
    """``items`` in a random order drawn by weight (weight 0 last, in their order)."""
    pool = [(item, weight) for item, weight in zip(items, weights, strict=True) if weight > 0]
    order = []
    while pool:
        total = sum(weight for _, weight in pool)
        point = random.uniform(0, total)
        for i, (item, weight) in enumerate(pool):
            point -= weight
            if point <= 0 or i == len(pool) - 1:
                order.append(item)
                del pool[i]
                break
    return order + [item for item, weight in zip(items, weights, strict=True) if weight <= 0]
