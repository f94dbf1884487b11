"""Usage intents: what an admitted request is about to spend, journaled before the upstream call.

A process killed while requests are in flight never builds their usage records, although the
provider has already been asked (and will bill) for them. So every admitted request leaves an
*intent* first, and its usage record, under the same id, retires it::

    RecordIntent.before (odock.usage.stage; the last stage before CallUpstream)
        └─► UsageRecorder.intend ─► journal line "?{intent}"    (one os.write, as every line)
    RecordUsage.after ─► the usage record, same id ─► stored; the intent is acknowledged with it
    the process dies first ─► the next process replays its journal (odock.usage.journal): an
        intent with no record becomes an ``interrupted`` record billed at the estimate below,
        and its budget reservation is settled at the amounts it held

The estimate is what the budget reservation assumed: the prompt's estimated tokens plus the
request's output allowance (``max_tokens``, else the model's cap, else
``default_max_output_tokens``), priced with the model's pricing at the time. It is an upper
bound of what the provider can have produced, so an interruption never bills less than a
budget allowed for. An intent carries counts only, never the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import orjson

from odock.billing import bill
from odock.llm.upstream import Usage
from odock.usage.record import UsageEvent, UsageEventDecodeError

INTENT_MARK = b"?"  # first byte of an intent line in the journal (a record line starts with "{")
INTERRUPTED = "interrupted"
INTERRUPTED_ERROR = "gateway_interrupted"


@dataclass(slots=True)
class UsageIntent:
    """An admitted request's identity and estimated spend, kept until its usage record is stored."""

    id: str
    request_id: str
    timestamp: datetime
    endpoint: str
    stream: bool
    organisation_id: str
    team_id: str | None
    user_id: str | None
    api_key_id: str
    model_id: str | None
    model: str | None
    provider_id: str | None
    provider: str | None
    prompt_tokens: int
    completion_tokens: int
    embeddings: bool
    pricing: dict[str, Any]
    # The reservation's settlements (odock.budgets.ledger.Settlement dicts) at the held amounts.
    settlements: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    # An MCP exchange's server, method, tool, calls, request bytes and billing at the reserved
    # estimate (odock.mcp.exchange); None for a model call.
    mcp: dict[str, Any] | None = None
    trace_id: str | None = None  # the request's sampled trace, kept on the interrupted record

    def to_line(self) -> bytes:
        """The journal form: the intent mark, then one JSON object (no newline)."""
        return INTENT_MARK + orjson.dumps(self)

    @classmethod
    def from_line(cls, line: bytes) -> UsageIntent:
        """Decode the journal form."""
        try:
            raw = orjson.loads(line.removeprefix(INTENT_MARK))
            if not isinstance(raw, dict):
                raise UsageEventDecodeError("a usage intent is a JSON object")
            if not raw.keys() <= _FIELD_NAMES:  # written by a later version: keep what this one knows
                raw = {k: v for k, v in raw.items() if k in _FIELD_NAMES}
            raw["timestamp"] = datetime.fromisoformat(raw["timestamp"])
            return cls(**raw)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise UsageEventDecodeError(f"not a usage intent: {exc}") from exc

    def interrupted(self) -> UsageEvent:
        """The usage record of a request whose process died before recording it."""
        if self.mcp is not None:
            return self._interrupted_mcp(self.mcp)
        usage = Usage(
            self.prompt_tokens,
            self.completion_tokens,
            self.prompt_tokens + self.completion_tokens,
            estimated=True,
        )
        billing = bill(usage, self.pricing, embeddings=self.embeddings)
        return UsageEvent(
            id=self.id,
            request_id=self.request_id,
            timestamp=self.timestamp,
            endpoint=self.endpoint,
            status=INTERRUPTED,
            http_status=0,  # what the client was told (if anything) died with the process
            stream=self.stream,
            organisation_id=self.organisation_id,
            team_id=self.team_id,
            user_id=self.user_id,
            api_key_id=self.api_key_id,
            model_id=self.model_id,
            model=self.model,
            provider_id=self.provider_id,
            provider=self.provider,
            error_code=INTERRUPTED_ERROR,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            billable_tokens=usage.total_tokens,
            total_cost_nanos_usd=billing.get("total_cost_nanos_usd"),
            tokens={
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
                "cached_tokens": 0,
                "output_details": {"reasoning": 0},
            },
            billing=billing,
            metadata={**self.metadata, "usage_estimated": True, "interrupted": True},
            settlements=self.settlements,
            trace_id=self.trace_id,
        )

    def _interrupted_mcp(self, mcp: dict[str, Any]) -> UsageEvent:
        billing = mcp["billing"]
        return UsageEvent(
            id=self.id,
            request_id=self.request_id,
            timestamp=self.timestamp,
            endpoint=self.endpoint,
            status=INTERRUPTED,
            http_status=0,
            organisation_id=self.organisation_id,
            team_id=self.team_id,
            user_id=self.user_id,
            api_key_id=self.api_key_id,
            provider=self.provider,
            error_code=INTERRUPTED_ERROR,
            total_cost_nanos_usd=billing.get("total_cost_nanos_usd"),
            bytes_in=mcp.get("bytes_in", 0),
            billing=billing,
            metadata={**self.metadata, "usage_estimated": True, "interrupted": True},
            settlements=self.settlements,
            mcp_server_id=mcp["server_id"],
            mcp_server=mcp["server"],
            mcp_transport=mcp["transport"],
            mcp_method=mcp["method"],
            mcp_tool=mcp["tool"],
            mcp_tool_calls=mcp["tool_calls"],
        )


_FIELD_NAMES = frozenset(f.name for f in fields(UsageIntent))
