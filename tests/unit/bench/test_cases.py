"""The Anthropic pass-through and translated cases: their labels, selection with --case, and requests."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from bench.cases import (
    FULL,
    QUICK,
    SMOKE,
    Api,
    ChatCase,
    Endpoints,
    Plan,
    StreamCase,
    gateway_route,
)
from bench.options import parse_args
from bench.processes import CoreLayout
from bench.run import Context
from bench.tenant import ANTHROPIC_MODEL, ANTHROPIC_SLUG, CHAT_MODEL, BenchTenant

NEW_CHAT = ("anthropic c=1", "anthropic c=16", "translated c=1", "translated c=16")
NEW_STREAMS = ("anthropic stream c=16", "translated stream c=16")
ENDPOINTS = Endpoints("http://mock", "http://gw", BenchTenant("org", "prov", "key", "sk-odock-secret"))


def _labels(plan: Plan) -> tuple[set[str], set[str]]:
    return {c.label for c in plan.chat}, {c.label for c in plan.streams}


@pytest.mark.parametrize("plan", [QUICK, FULL], ids=lambda p: p.name)
def test_quick_and_full_runs_include_the_new_cases(plan: Plan) -> None:
    """Both plans measure the four unary and two streaming cases next to the OpenAI ones."""
    chat, streams = _labels(plan)
    assert set(NEW_CHAT) | {"chat c=1", "chat c=16"} <= chat
    assert set(NEW_STREAMS) | {"stream c=64"} <= streams


def test_labels_name_the_api() -> None:
    """Each api has its own label, so --case can pick it; OpenAI's labels are today's."""
    assert ChatCase(16).label == "chat c=16"
    assert ChatCase(16, api="translated").label == "translated c=16"
    assert StreamCase(512, 1, 1, 0.0, spread_seconds=1.0).label == "stream c=512 held"
    assert StreamCase(16, 1, 1, 0.0, api="anthropic").label == "anthropic stream c=16"
    for plan in (SMOKE, QUICK, FULL):
        labels = [c.label for c in (*plan.chat, *plan.streams)]
        assert len(labels) == len(set(labels)), plan.name


def test_case_selects_exactly_the_named_cases(tmp_path: Path) -> None:
    """--case picks the named cases of the plan, unary and streaming, and nothing else."""
    wanted = [
        "anthropic c=1",
        "translated c=1",
        "chat c=1",
        "anthropic stream c=16",
        "translated stream c=16",
    ]
    args = parse_args(["--quick", *(arg for label in wanted for arg in ("--case", label))])
    ctx = Context(args, QUICK, CoreLayout.detect(), tmp_path, "http://mock", False, tmp_path / "x.md")
    chat, streams = ctx.selected(QUICK.chat), ctx.selected(QUICK.streams)
    assert [c.label for c in chat] == ["chat c=1", "anthropic c=1", "translated c=1"]
    assert [c.label for c in streams] == ["anthropic stream c=16", "translated stream c=16"]
    assert [c.api for c in (*chat, *streams)] == [
        "openai",
        "anthropic",
        "translated",
        "anthropic",
        "translated",
    ]


def test_anthropic_case_passes_an_anthropic_body_through() -> None:
    """Both paths send an Anthropic body to /v1/messages with the SDK's headers; only the model differs."""
    stream = StreamCase(16, 32, 8, 5.0, api="anthropic")
    direct = ENDPOINTS.chat("direct", stream=stream, api="anthropic")
    gateway = ENDPOINTS.chat("gateway", stream=stream, api="anthropic")
    assert (direct.url, gateway.url) == ("http://mock/v1/messages", "http://gw/v1/messages")
    assert direct.stream_format == gateway.stream_format == "anthropic"
    assert gateway.headers["x-api-key"] == "sk-odock-secret"
    assert "anthropic-version" in gateway.headers
    sent = orjson.loads(gateway.body)
    assert orjson.loads(direct.body) == {**sent, "model": ANTHROPIC_SLUG}
    assert sent["model"] == ANTHROPIC_MODEL
    assert sent["stream"] is True
    assert sent["metadata"] == {"user_id": "bench_chunks=8;bench_pacing_ms=5.0"}


def test_translated_case_is_an_openai_body_measured_against_the_direct_anthropic_call() -> None:
    """Gateway path: an OpenAI chat body on the Anthropic model, the stream shape in ``user``
    (which the gateway carries to metadata.user_id); direct path: the Anthropic call itself."""
    stream = StreamCase(16, 32, 8, 5.0, api="translated")
    gateway = ENDPOINTS.chat("gateway", stream=stream, api="translated")
    direct = ENDPOINTS.chat("direct", stream=stream, api="translated")
    assert gateway.url == "http://gw/v1/chat/completions"
    assert gateway.stream_format == "openai"
    sent = orjson.loads(gateway.body)
    assert sent["model"] == ANTHROPIC_MODEL
    assert sent["user"] == "bench_chunks=8;bench_pacing_ms=5.0"
    assert sent["stream_options"] == {"include_usage": True}
    assert direct == ENDPOINTS.chat("direct", stream=stream, api="anthropic")
    assert orjson.loads(ENDPOINTS.chat("gateway").body)["model"] == CHAT_MODEL  # the OpenAI case's


@pytest.mark.parametrize(
    ("api", "route"),
    [
        ("openai", "/v1/chat/completions"),
        ("anthropic", "/v1/messages"),
        ("translated", "/v1/chat/completions"),
    ],
)
def test_usage_records_are_looked_up_on_the_route_the_client_called(api: Api, route: str) -> None:
    """The gateway's own latency of a case is read from the records of its client's route."""
    assert gateway_route(api) == route
