"""The pipelined Redis link against a scripted fake server: ordering, cancellation, timeouts, reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from odock.cache.redis_link import RedisLink

Reply = Callable[[list[bytes]], bytes | None]  # a command → the RESP bytes to answer (None: stay silent)


def _commands(buffer: bytearray) -> list[list[bytes]]:
    """Complete RESP arrays at the head of ``buffer`` (consumed from it)."""
    found = []
    while buffer.startswith(b"*"):
        head, sep, rest = bytes(buffer).partition(b"\r\n")
        if not sep:
            break
        count, parts, ok = int(head[1:]), [], True
        for _ in range(count):
            size_line, sep, rest = rest.partition(b"\r\n")
            size = int(size_line[1:]) if sep else -1
            if not sep or len(rest) < size + 2:
                ok = False
                break
            parts.append(rest[:size])
            rest = rest[size + 2 :]
        if not ok:
            break
        found.append(parts)
        del buffer[: len(buffer) - len(rest)]
    return found


@asynccontextmanager
async def fake_redis(reply: Reply) -> AsyncIterator[tuple[str, list[list[bytes]]]]:
    """A server answering each command with ``reply``; yields its URL and every command received."""
    seen: list[list[bytes]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = bytearray()
        while data := await reader.read(65536):
            buffer += data
            for command in _commands(buffer):
                seen.append(command)
                answer = reply(command)
                if answer == b"CLOSE":
                    writer.close()
                    return
                if answer is not None:
                    writer.write(answer)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0", seen
    finally:
        server.close()


def echo(command: list[bytes]) -> bytes:
    """Answer every command with its last argument as a bulk string."""
    value = command[-1]
    return b"$%d\r\n%b\r\n" % (len(value), value)


async def test_concurrent_callers_get_their_own_replies() -> None:
    """Replies are matched to callers in order, whatever the interleaving of concurrent calls."""
    async with fake_redis(echo) as (url, _):
        link = RedisLink(url, timeout=5, connect_timeout=5)
        replies = await asyncio.gather(*(link.execute("ECHO", f"v{i}") for i in range(200)))
        await link.close()
    assert replies == [f"v{i}".encode() for i in range(200)]


async def test_a_cancelled_callers_reply_is_skipped() -> None:
    """A caller cancelled while waiting does not shift the next caller's reply."""
    held = asyncio.Event()

    def hold_first(command: list[bytes]) -> bytes | None:
        if command[-1] == b"first":
            held.set()
            return None
        return b"$5\r\nfirst\r\n$6\r\nsecond\r\n"  # the late first reply, then the second

    async with fake_redis(hold_first) as (url, _):
        link = RedisLink(url, timeout=5, connect_timeout=5)
        first = asyncio.ensure_future(link.execute("ECHO", "first"))
        await held.wait()
        first.cancel()
        assert await link.execute("ECHO", "second") == b"second"
        await link.close()


async def test_an_overdue_reply_fails_every_waiter_with_a_timeout() -> None:
    """A server that stops answering fails the waiting calls with redis' TimeoutError."""
    async with fake_redis(lambda command: None) as (url, _):
        link = RedisLink(url, timeout=0.2, connect_timeout=5)
        outcomes = await asyncio.gather(link.execute("PING"), link.execute("PING"), return_exceptions=True)
        await link.close()
    assert all(isinstance(outcome, RedisTimeoutError) for outcome in outcomes)


async def test_a_dropped_connection_fails_waiters_and_the_next_call_reconnects() -> None:
    """The server closing the connection fails what waits; the next call opens a new connection."""
    calls = {"n": 0}

    def close_once(command: list[bytes]) -> bytes:
        calls["n"] += 1
        return b"CLOSE" if calls["n"] == 1 else b"+PONG\r\n"

    async with fake_redis(close_once) as (url, _):
        link = RedisLink(url, timeout=5, connect_timeout=5)
        with pytest.raises(RedisConnectionError):
            await link.execute("PING")
        assert await link.execute("PING") == b"PONG"
        await link.close()


async def test_an_error_reply_is_raised_as_response_error() -> None:
    """A Redis error reply raises ResponseError for that caller only."""
    async with fake_redis(lambda command: b"-ERR wrong\r\n" if command[0] == b"BAD" else b"+OK\r\n") as (
        url,
        _,
    ):
        link = RedisLink(url, timeout=5, connect_timeout=5)
        outcomes: list[object] = await asyncio.gather(
            link.execute("BAD"), link.execute("GOOD"), return_exceptions=True
        )
        bad, good = outcomes
        await link.close()
    assert isinstance(bad, ResponseError)
    assert good == b"OK"


async def test_a_script_missing_from_the_cache_is_sent_whole_once() -> None:
    """EVALSHA answered NOSCRIPT is retried as EVAL with the script's source."""

    def no_script_cache(command: list[bytes]) -> bytes:
        if command[0] == b"EVALSHA":
            return b"-NOSCRIPT No matching script\r\n"
        return b":7\r\n"

    async with fake_redis(no_script_cache) as (url, seen):
        link = RedisLink(url, timeout=5, connect_timeout=5)
        script = link.register_script("return 7")
        assert await script(keys=["k"], args=[1]) == 7
        await link.close()
    assert [command[0] for command in seen] == [b"EVALSHA", b"EVAL"]
    assert seen[0][1] == script.sha.encode()
    assert seen[1][1:] == [b"return 7", b"1", b"k", b"1"]


async def test_a_submitted_command_leaves_before_its_reply_is_awaited() -> None:
    """A command and a script call, neither awaited yet, both reach the server: one round trip."""
    both_seen = asyncio.Event()

    def echo_and_count(command: list[bytes]) -> bytes:
        if len(seen) == 3:  # PING, then the two sent without waiting
            both_seen.set()
        return echo(command)

    async with fake_redis(echo_and_count) as (url, seen):
        link = RedisLink(url, timeout=5, connect_timeout=5)
        await link.execute("PING", "connected")
        script = link.register_script("return ARGV[1]")
        command_reply = link.submit("ECHO", "first")
        script_reply = script(keys=["k"], args=["second"])
        await asyncio.wait_for(both_seen.wait(), 5)
        assert await command_reply == b"first"
        assert await script_reply == b"second"
        await link.close()
    assert [command[0] for command in seen] == [b"PING", b"ECHO", b"EVALSHA"]


async def test_a_command_submitted_before_the_link_connects_is_sent_once_it_has() -> None:
    """The first submit connects when awaited, then sends."""
    async with fake_redis(echo) as (url, seen):
        link = RedisLink(url, timeout=5, connect_timeout=5)
        reply = link.submit("ECHO", "late")
        assert seen == []
        assert await reply == b"late"
        await link.close()
    assert seen == [[b"ECHO", b"late"]]


async def test_the_url_password_and_database_are_sent_on_connect() -> None:
    """AUTH and SELECT from the URL precede the first command."""
    async with fake_redis(lambda command: b"+OK\r\n") as (url, seen):
        link = RedisLink(url.replace("//", "//:secret@").replace("/0", "/3"), timeout=5, connect_timeout=5)
        await link.execute("PING")
        await link.close()
    assert seen == [[b"AUTH", b"secret"], [b"SELECT", b"3"], [b"PING"]]


async def test_an_unreachable_server_raises_connection_error() -> None:
    """No server listening: the call raises redis' ConnectionError."""
    async with fake_redis(echo) as (url, _):
        pass  # the server is gone once the block ends
    link = RedisLink(url, timeout=1, connect_timeout=1)
    with pytest.raises(RedisConnectionError):
        await link.execute("PING")
    await link.close()
