"""Login throttling on the in-process counters with an exact clock (both: tests/contract)."""

from __future__ import annotations

import pytest

from odock.errors import LoginThrottled
from odock.identity.throttle import LoginThrottle, MemoryFailureCounters


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _throttle(clock: Clock, max_failures: int = 3) -> LoginThrottle:
    return LoginThrottle(MemoryFailureCounters(clock), max_failures=max_failures, window_seconds=900)


async def test_refuses_past_the_limit_with_retry_after() -> None:
    """After max_failures reservations in the window the next is refused with Retry-After."""
    clock = Clock()
    throttle = _throttle(clock)
    for _ in range(3):
        await throttle.reserve("a@example.test", "10.0.0.1")
    clock.now += 100
    with pytest.raises(LoginThrottled) as caught:
        await throttle.reserve("a@example.test", "10.0.0.1")
    assert caught.value.headers["Retry-After"] == "800"


async def test_window_closes() -> None:
    """Once the window has passed, attempts are admitted again."""
    clock = Clock()
    throttle = _throttle(clock)
    for _ in range(3):
        await throttle.reserve("a@example.test", None)
    clock.now += 901
    await throttle.reserve("a@example.test", None)


async def test_email_is_case_insensitive() -> None:
    """Failures count against the normalised address."""
    throttle = _throttle(Clock(), max_failures=1)
    await throttle.reserve("A@Example.test", None)
    with pytest.raises(LoginThrottled):
        await throttle.reserve(" a@example.test", None)


async def test_ip_counts_across_emails() -> None:
    """Failures from one IP add up over different e-mail addresses."""
    throttle = _throttle(Clock(), max_failures=2)
    await throttle.reserve("a@example.test", "10.0.0.9")
    await throttle.reserve("b@example.test", "10.0.0.9")
    with pytest.raises(LoginThrottled):
        await throttle.reserve("c@example.test", "10.0.0.9")


async def test_success_clears_email_and_refunds_ip() -> None:
    """A success forgets the e-mail's failures and takes back its own IP reservation."""
    throttle = _throttle(Clock(), max_failures=2)
    await throttle.reserve("a@example.test", "10.0.0.2")
    await throttle.reserve("a@example.test", "10.0.0.2")
    await throttle.succeeded("a@example.test", "10.0.0.2")
    await throttle.reserve("b@example.test", "10.0.0.2")  # the IP holds one failure: one more fits
    with pytest.raises(LoginThrottled):
        await throttle.reserve("c@example.test", "10.0.0.2")
