"""One request's route: the candidates in the order they will be tried, and what each attempt met.

Set by :class:`odock.routing.stage.PlanRoute` when the request has a choice (a routing policy
applies, or its model has several deployments); ``None`` on the exchange otherwise, and the call
goes straight to the model's own provider as before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from odock.errors import OdockError
from odock.providers.catalog import Deployment, ResolvedModel

SUCCESS = "success"
FAILED = "failed"
REFUSED = "refused"  # the candidate's own limits or budget refused it, or it cannot be called
SKIPPED = "skipped"  # its circuit is open


@dataclass(slots=True)
class Route:
    """The plan of one request and its evidence (the usage record's ``routing``)."""

    requested: ResolvedModel
    strategy: str | None  # the policy's strategy; None for a key pool used without a policy
    candidates: list[ResolvedModel]  # models in the order they are tried
    triggers: frozenset[str]
    max_attempts: int  # upstream calls allowed: 1 + maxRetries
    delay_seconds: float  # wait before each further attempt
    attempts: list[dict[str, Any]] = field(default_factory=list)
    tried: set[str] = field(default_factory=set)  # deployment ids called or passed over
    position: int = 0  # index in ``candidates`` of the model being tried
    held: dict[str, int] = field(default_factory=dict)  # budget held per counter, with top-ups
    top_ups: list[str] = field(default_factory=list)  # top-up reservation ids, released at the end
    started: float = 0.0  # perf_counter of the current attempt
    refusal: OdockError | None = None  # why the last candidate passed over was refused
    in_flight: str | None = None  # the deployment whose call this request holds (least_busy)

    def calls_left(self) -> bool:
        """Whether another upstream call is allowed."""
        calls = sum(1 for attempt in self.attempts if attempt["outcome"] in (SUCCESS, FAILED))
        return calls < self.max_attempts

    def begin(self) -> None:
        """The current attempt starts now."""
        self.started = time.perf_counter()

    def note(
        self,
        model: ResolvedModel,
        deployment: Deployment,
        outcome: str,
        error: OdockError | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        """Record one attempt, or a target passed over (refused, or skipped for ``reason``)."""
        self.tried.add(deployment.id)
        provider = deployment.provider
        self.attempts.append(
            {
                "model": model.name,
                "provider": provider.name if provider else None,
                "provider_type": provider.type if provider else None,
                "deployment": deployment.id,
                "outcome": outcome,
                "error": _error(error)
                if reason is None
                else {"code": reason, "status": None, "message": reason},
                "latency_ms": round((time.perf_counter() - self.started) * 1000, 3)
                if outcome in (SUCCESS, FAILED)
                else None,
            }
        )

    def evidence(self) -> dict[str, Any]:
        """The usage record's ``routing`` document."""
        final = next((a for a in reversed(self.attempts) if a["outcome"] == SUCCESS), None)
        first_called = next((a for a in self.attempts if a["outcome"] in (SUCCESS, FAILED)), None)
        return {
            "rerouted": final is not None and first_called is not None and final is not first_called,
            "strategy": self.strategy,
            "requested_model": self.requested.name,
            "attempts": self.attempts,
            "final": {"model": final["model"], "provider": final["provider"]} if final else None,
        }

    def summary(self) -> str:
        """The attempts in one line, for the error a client gets when none succeeded."""
        parts = []
        for attempt in self.attempts:
            error = attempt["error"] or {}
            detail = error.get("code", "")
            if error.get("status"):
                detail += f" {error['status']}"
            parts.append(f"{attempt['model']} via {attempt['provider']}: {attempt['outcome']} ({detail})")
        return "; ".join(parts)


def _error(error: OdockError | None) -> dict[str, Any] | None:
    if error is None:
        return None
    status = getattr(error, "upstream_status", None) or error.http_status
    return {"code": error.code, "status": status, "message": error.message[:500]}
