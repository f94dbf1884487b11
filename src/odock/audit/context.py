"""Who is acting: set once per control-plane request (or CLI command) and read by the audit log."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class AuditActor:
    """The author of the changes made in this context."""

    kind: str  # "user", "token" (a personal admin token), "cli", "config", "system"
    label: str  # e-mail of the user, or the name of the system actor
    user_id: str | None = None
    ip: str | None = None
    request_id: str | None = None


SYSTEM = AuditActor(kind="system", label="system")

_current: contextvars.ContextVar[AuditActor] = contextvars.ContextVar("odock_audit_actor", default=SYSTEM)


def current_actor() -> AuditActor:
    """The actor changes are attributed to right now (``system`` when nobody set one)."""
    return _current.get()


def set_actor(actor: AuditActor) -> None:
    """Attribute the rest of this context's changes to ``actor`` (a request's dependency)."""
    _current.set(actor)


@contextlib.contextmanager
def acting_as(actor: AuditActor) -> Iterator[None]:
    """Attribute the changes made inside the block to ``actor``."""
    token = _current.set(actor)
    try:
        yield
    finally:
        _current.reset(token)
