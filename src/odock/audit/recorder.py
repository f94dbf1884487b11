"""Recording configuration changes: one audit event per changed row, in the same transaction.

Every session the process opens is an :class:`AuditedSession` (:func:`audited_session_factory`),
so nothing that changes configuration escapes the log::

    flush ─► after_flush: for each inserted / updated / deleted row of a configuration table
             ─► AuditEvent(actor = odock.audit.context.current_actor(), before, after) ─► same transaction
    session.execute(update(...) / delete(...) / insert(...)) on a configuration table
             ─► do_orm_execute: the rows are read before (and after) the statement ─► the same events

Values are stored as JSON: datetimes in ISO 8601, secrets (hashes, encrypted provider keys)
replaced by ``"***"``, and so are the header values in a provider's config. An update records
only the columns that changed (plus the id); a change of only bookkeeping columns
(``updated_at``, ``last_seen_at``, ``last_login_at``) is not an event.
Sign-ins are events too: a new ``auth_sessions`` row is a ``login``, its revocation a ``logout``.

Textual SQL and statements run on a bare connection are not seen: configuration code changes
rows through the ORM or ``session.execute``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Table, and_, event, insert, inspect, or_, select
from sqlalchemy.engine import Connection, Result
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstanceState, ORMExecuteState, Session, UOWTransaction
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.sql.dml import Delete, Insert, Update

from odock.audit.context import AuditActor, current_actor
from odock.audit.tables import AuditEvent
from odock.db.base import utcnow
from odock.db.engine import session_factory
from odock.ids import new_id
from odock.mcp.secrets import shown_auth, shown_values
from odock.providers.config import shown_config

CONFIGURATION_TABLES = frozenset(
    {
        "organisations",
        "teams",
        "team_members",
        "users",
        "providers",
        "provider_api_keys",
        "models",
        "api_keys",
        "api_key_model_access",
        "budgets",
        "quotas",
        "invitations",
        "admin_tokens",
        "external_identities",
        "auth_sessions",
        "mcp_servers",
        "api_key_mcp_access",
        "api_key_mcp_tool_grants",
        "mcp_stdio_commands",
    }
)
"""Tables whose every change is an audit event (usage, meters and the audit log itself are not)."""

MASK = "***"
_SECRET_COLUMNS = frozenset(
    {"key_hash", "token_hash", "csrf_token_hash", "password_hash", "secret", "ciphertext", "envelope"}
)
_TABLE_SECRETS: Mapping[str, frozenset[str]] = {"provider_api_keys": frozenset({"key"})}
# Columns holding a secret in part: the log stores the view the API shows of them.
_PARTLY_SECRET: Mapping[tuple[str, str], Callable[[Any], Any]] = {
    ("providers", "config"): shown_config,
    ("mcp_servers", "auth_config"): shown_auth,
    ("mcp_servers", "headers"): shown_values,
    ("mcp_servers", "stdio_env"): shown_values,
}
_BOOKKEEPING = frozenset({"updated_at", "last_seen_at", "last_login_at"})

# Rows that carry no organisation_id find it through their parent: (column, parent table).
_PARENTS: Mapping[str, tuple[str, str]] = {
    "team_members": ("team_id", "teams"),
    "api_key_model_access": ("api_key_id", "api_keys"),
    "api_key_mcp_access": ("api_key_id", "api_keys"),
    "api_key_mcp_tool_grants": ("api_key_id", "api_keys"),
    "auth_sessions": ("user_id", "users"),
    "admin_tokens": ("user_id", "users"),
    "external_identities": ("user_id", "users"),
}

Values = dict[str, Any]


@dataclass(frozen=True)
class Change:
    """One row's change, before it becomes an :class:`AuditEvent` row."""

    table: str
    action: str  # create | update | delete | login | logout
    resource_id: str | None
    before: Values | None
    after: Values | None
    organisation_id: str | None = None
    parent_id: str | None = None  # for rows that find their organisation through a parent


class AuditedSession(Session):
    """A session that records its configuration changes in the audit log."""


def audited_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """The process's sessions: every configuration change they flush is audited."""
    return session_factory(engine, AuditedSession)


def is_secret(table: str, column: str) -> bool:
    """Whether ``column`` of ``table`` holds a secret that the log must never show."""
    return column in _SECRET_COLUMNS or column in _TABLE_SECRETS.get(table, frozenset())


def json_value(table: str, column: str, value: Any) -> Any:
    """``value`` as the log stores it: masked when secret, ISO 8601 for times, JSON as is."""
    if value is None:
        return None
    if is_secret(table, column):
        return MASK
    shown = _PARTLY_SECRET.get((table, column))
    if shown is not None:
        value = shown(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str | int | float | bool | dict | list):
        return value
    return str(value)


def row_values(table: str, values: Mapping[str, Any]) -> Values:
    """Every column of a row, masked and JSON-ready."""
    return {column: json_value(table, column, value) for column, value in values.items()}


def change_action(table: str, action: str, before: Values | None, after: Values | None) -> str | None:
    """The event's action, or ``None`` when the change is not worth an event.

    Updates that changed nothing but bookkeeping columns are dropped; sign-in sessions become ``login`` on
    insert and ``logout`` when revoked, and their other updates and deletions are not events.
    """
    if action == "update" and not set(after or {}) - _BOOKKEEPING - {"id"}:
        return None
    if table != "auth_sessions":
        return action
    if action == "create":
        return "login"
    if action == "update" and (after or {}).get("revoked_at") is not None:
        return "logout"
    return None


# --- the unit of work ------------------------------------------------------------------------


def _columns(state: InstanceState[Any]) -> Iterable[tuple[str, str]]:
    """``(attribute key, column name)`` of each mapped column of the row."""
    for attr in state.mapper.column_attrs:
        yield attr.key, attr.columns[0].name


def _table_of(state: InstanceState[Any]) -> str:
    return str(state.mapper.local_table.name)  # type: ignore[attr-defined]


def _loaded(state: InstanceState[Any]) -> dict[str, Any]:
    """The loaded column values of an ORM row, by column name (nothing is read from the database)."""
    return {column: state.dict[key] for key, column in _columns(state) if key in state.dict}


def _updated(state: InstanceState[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(before, after)`` raw values of the columns an update changed."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for key, column in _columns(state):
        history = state.attrs[key].history
        if not history.has_changes():
            continue
        old = history.deleted[0] if history.deleted else None
        before[column] = None if old is NO_VALUE else old
        after[column] = history.added[0] if history.added else None
    return before, after


def _flush_changes(session: Session) -> list[Change]:
    changes: list[Change] = []
    for action, objects in (("create", session.new), ("update", session.dirty), ("delete", session.deleted)):
        for obj in objects:
            state: InstanceState[Any] = inspect(obj)
            table = _table_of(state)
            if table not in CONFIGURATION_TABLES:
                continue
            row = _loaded(state)
            key = tuple(row.get(column.name) for column in state.mapper.primary_key)
            if action == "create":
                change = describe(table, action, key, None, row, row)
            elif action == "delete":
                change = describe(table, action, key, row, None, row)
            else:
                before, after = _updated(state)
                if not after:
                    continue
                change = describe(table, action, key, before, after, row)
            if change is not None:
                changes.append(change)
    return changes


@event.listens_for(AuditedSession, "after_flush")
def _record_flush(session: Session, _flush: UOWTransaction) -> None:
    changes = _flush_changes(session)
    if changes:
        write_events(session.connection(), changes, current_actor())


def describe(
    table: str,
    action: str,
    identity: Sequence[Any],
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    row: Mapping[str, Any],
) -> Change | None:
    """The :class:`Change` for one row (``row``: its current values), or ``None`` when not an event.

    ``before``/``after`` hold raw column values: for an update only the changed columns, to
    which the row's id is added here.
    """
    resource_id = "/".join(str(part) for part in identity) or None
    if action == "update":
        before = {c: v for c, v in (before or {}).items() if c not in _BOOKKEEPING}
        after = {c: v for c, v in (after or {}).items() if c not in _BOOKKEEPING}
    old = None if before is None else row_values(table, before)
    new = None if after is None else row_values(table, after)
    if action == "update" and resource_id is not None and "id" in row:
        for values in (old, new):
            assert values is not None
            values.setdefault("id", resource_id)
    kept = change_action(table, action, old, new)
    if kept is None:
        return None
    parent = _PARENTS.get(table)
    return Change(
        table,
        kept,
        resource_id,
        old,
        new,
        organisation_id=resource_id if table == "organisations" else row.get("organisation_id"),
        parent_id=None if parent is None else row.get(parent[0]),
    )


# --- bulk statements ------------------------------------------------------------------------


@event.listens_for(AuditedSession, "do_orm_execute")
def _record_bulk(state: ORMExecuteState) -> Result[Any] | None:
    statement = state.statement
    if not isinstance(statement, Insert | Update | Delete):
        return None
    table = statement.table
    if not isinstance(table, Table) or table.name not in CONFIGURATION_TABLES:
        return None
    connection = state.session.connection()
    changes: list[Change | None]
    if isinstance(statement, Insert):
        result = state.invoke_statement()
        changes = [
            describe(table.name, "create", _key(table, row), None, row, row)
            for row in _inserted(state, statement)
        ]
    else:
        matched = select(table)
        if statement.whereclause is not None:
            matched = matched.where(statement.whereclause)
        before = {_key(table, row): dict(row) for row in connection.execute(matched).mappings()}
        result = state.invoke_statement()
        if isinstance(statement, Delete):
            changes = [describe(table.name, "delete", key, row, None, row) for key, row in before.items()]
        else:
            changes = _bulk_updates(connection, table, before)
    kept = [change for change in changes if change is not None]
    if kept:
        write_events(connection, kept, current_actor())
    return result


def _key(table: Table, row: Mapping[Any, Any]) -> tuple[Any, ...]:
    return tuple(row.get(column.name) for column in table.primary_key.columns)


def _inserted(state: ORMExecuteState, statement: Insert) -> list[dict[str, Any]]:
    """The rows a bulk insert was given (with ON CONFLICT DO NOTHING, some may have been skipped)."""
    params = state.parameters
    if isinstance(params, Sequence) and not isinstance(params, str | bytes) and params:
        return [dict(p) for p in params]
    if isinstance(params, Mapping) and params:
        return [dict(params)]
    return [dict(statement.compile().params)]


def _bulk_updates(
    connection: Connection, table: Table, before: Mapping[tuple[Any, ...], dict[str, Any]]
) -> list[Change | None]:
    if not before:
        return []
    columns = list(table.primary_key.columns)
    matched = or_(*(and_(*(c == v for c, v in zip(columns, key, strict=True))) for key in before))
    changes: list[Change | None] = []
    for row in connection.execute(select(table).where(matched)).mappings():
        key = _key(table, row)
        old = before[key]
        changed = [column for column in row if row[column] != old.get(column)]
        changes.append(
            describe(
                table.name,
                "update",
                key,
                {c: old.get(c) for c in changed},
                {c: row[c] for c in changed},
                dict(row),
            )
        )
    return changes


# --- writing ------------------------------------------------------------------------------


def write_events(connection: Connection, changes: Sequence[Change], actor: AuditActor) -> None:
    """Insert one audit event per change, on ``connection`` (so in the change's own transaction)."""
    parents = _parents(connection, changes)
    now = utcnow()
    rows = []
    for change in changes:
        parent = (
            None if change.parent_id is None else parents.get((_PARENTS[change.table][1], change.parent_id))
        )
        author = _signing_in(change, parent) if actor.kind == "system" else None
        author = author or actor
        rows.append(
            {
                "id": new_id(),
                "at": now,
                "actor_user_id": author.user_id,
                "actor": author.label,
                "actor_kind": author.kind,
                "ip": author.ip,
                "request_id": author.request_id,
                "organisation_id": change.organisation_id if parent is None else parent.organisation_id,
                "action": change.action,
                "resource_type": change.table,
                "resource_id": change.resource_id,
                "before": change.before,
                "after": change.after,
            }
        )
    connection.execute(insert(AuditEvent), rows)


@dataclass(frozen=True)
class _Parent:
    organisation_id: str | None
    email: str | None = None


def _signing_in(change: Change, user: _Parent | None) -> AuditActor | None:
    """A sign-in happens before anyone is signed in: it is the signing-in user's own act."""
    if change.action != "login" or user is None or user.email is None or change.after is None:
        return None
    return AuditActor(kind="user", label=user.email, user_id=change.parent_id, ip=change.after.get("ip"))


def _parents(connection: Connection, changes: Sequence[Change]) -> dict[tuple[str, str], _Parent]:
    """The parent rows named by the changes (a parent deleted in the same flush is absent)."""
    wanted: dict[str, set[str]] = {}
    for change in changes:
        if change.parent_id is not None:
            wanted.setdefault(_PARENTS[change.table][1], set()).add(change.parent_id)
    found: dict[tuple[str, str], _Parent] = {}
    for name, ids in wanted.items():
        table = AuditEvent.metadata.tables[name]
        email = table.c.email if "email" in table.c else None
        columns = [table.c.id, table.c.organisation_id, *([email] if email is not None else [])]
        for row in connection.execute(select(*columns).where(table.c.id.in_(ids))):
            found[(name, row.id)] = _Parent(row.organisation_id, row.email if email is not None else None)
    return found
