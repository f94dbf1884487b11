"""The permission table: for each role, how far each action on each resource reaches.

This table is the whole of RBAC (documented in ``docs/rbac.md``; a test generated from it checks
every role x resource x action against the API). A route declares the ``(resource, action)`` it
needs; the actor's role gives a :class:`Reach`; the target row must fall inside that reach::

    ALL   every organisation (super admin only)
    ORG   anything in the actor's own organisation
    TEAM  rows of teams the actor manages (team-member role MANAGER), and the actor's own rows
    SELF  the actor's own rows; for reads also rows of teams the actor belongs to
    NONE  nothing

Reaching into another organisation is never allowed below ALL, and the answer never tells
whether the other organisation or row exists.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from odock.tenancy.tables import Role


class Resource(enum.StrEnum):
    """What a control-plane route acts on."""

    ORGANISATION = "organisation"  # the organisation itself: settings, routing switch, policies
    INVITATION = "invitation"
    USER = "user"
    TEAM = "team"  # teams and their members
    PROVIDER = "provider"
    PROVIDER_KEY = "provider_key"
    MODEL = "model"
    API_KEY = "api_key"  # keys, model grants, rotation history, routing policy
    BUDGET = "budget"  # budgets and quotas, with their windows
    USAGE = "usage"  # usage records, analytics, invoices
    USAGE_DEAD_LETTER = "usage_dead_letter"  # usage records the database refused (operators only)
    AUDIT = "audit"
    ADMIN_TOKEN = "admin_token"  # personal admin API tokens
    MCP_SERVER = "mcp_server"  # MCP servers and which keys may use them (a key's own grants: api_key)
    MCP_STDIO_COMMAND = "mcp_stdio_command"  # the STDIO allowlist: commands the gateway may run
    GATEWAY_HEALTH = "gateway_health"  # the gateway's own health: database, cache, usage queue (operators)


class Action(enum.StrEnum):
    """What a route does to its resource."""

    READ = "read"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class Reach(enum.IntEnum):
    """How far a permission extends (ordered: a larger reach includes the smaller ones)."""

    NONE = 0
    SELF = 1
    TEAM = 2
    ORG = 3
    ALL = 4


_ALL_ACTIONS = tuple(Action)


def _every(reach: Reach) -> dict[Action, Reach]:
    return dict.fromkeys(_ALL_ACTIONS, reach)


def _read(reach: Reach) -> dict[Action, Reach]:
    return {
        Action.READ: reach,
        Action.CREATE: Reach.NONE,
        Action.UPDATE: Reach.NONE,
        Action.DELETE: Reach.NONE,
    }


PERMISSIONS: Mapping[Role, Mapping[Resource, Mapping[Action, Reach]]] = {
    Role.SUPER_ADMIN: {resource: _every(Reach.ALL) for resource in Resource},
    Role.ORG_ADMIN: {
        Resource.ORGANISATION: {**_read(Reach.ORG), Action.UPDATE: Reach.ORG},
        Resource.INVITATION: _every(Reach.ORG),
        Resource.USER: {**_read(Reach.ORG), Action.UPDATE: Reach.ORG},
        Resource.TEAM: _every(Reach.ORG),
        Resource.PROVIDER: _every(Reach.ORG),
        Resource.PROVIDER_KEY: _every(Reach.ORG),
        Resource.MODEL: _every(Reach.ORG),
        Resource.API_KEY: _every(Reach.ORG),
        Resource.BUDGET: _every(Reach.ORG),
        Resource.USAGE: _read(Reach.ORG),
        Resource.USAGE_DEAD_LETTER: _read(Reach.ORG),
        Resource.AUDIT: _read(Reach.ORG),
        Resource.ADMIN_TOKEN: _every(Reach.SELF),
        Resource.MCP_SERVER: _every(Reach.ORG),
        Resource.MCP_STDIO_COMMAND: _read(Reach.NONE),
        Resource.GATEWAY_HEALTH: _read(Reach.NONE),
    },
    Role.MANAGER: {
        Resource.ORGANISATION: _read(Reach.ORG),
        Resource.INVITATION: _read(Reach.NONE),
        Resource.USER: {**_read(Reach.ORG), Action.UPDATE: Reach.SELF},
        Resource.TEAM: {**_read(Reach.ORG), Action.UPDATE: Reach.TEAM},
        Resource.PROVIDER: _read(Reach.ORG),
        Resource.PROVIDER_KEY: _read(Reach.ORG),
        Resource.MODEL: _read(Reach.ORG),
        Resource.API_KEY: _every(Reach.TEAM),
        Resource.BUDGET: _read(Reach.TEAM),
        Resource.USAGE: _read(Reach.TEAM),
        Resource.USAGE_DEAD_LETTER: _read(Reach.NONE),
        Resource.AUDIT: _read(Reach.NONE),
        Resource.ADMIN_TOKEN: _every(Reach.SELF),
        Resource.MCP_SERVER: _read(Reach.ORG),
        Resource.MCP_STDIO_COMMAND: _read(Reach.NONE),
        Resource.GATEWAY_HEALTH: _read(Reach.NONE),
    },
    Role.USER: {
        Resource.ORGANISATION: _read(Reach.ORG),
        Resource.INVITATION: _read(Reach.NONE),
        Resource.USER: {**_read(Reach.SELF), Action.UPDATE: Reach.SELF},
        Resource.TEAM: _read(Reach.SELF),
        Resource.PROVIDER: _read(Reach.NONE),
        Resource.PROVIDER_KEY: _read(Reach.NONE),
        Resource.MODEL: _read(Reach.ORG),
        Resource.API_KEY: _every(Reach.SELF),
        Resource.BUDGET: _read(Reach.SELF),
        Resource.USAGE: _read(Reach.SELF),
        Resource.USAGE_DEAD_LETTER: _read(Reach.NONE),
        Resource.AUDIT: _read(Reach.NONE),
        Resource.ADMIN_TOKEN: _every(Reach.SELF),
        Resource.MCP_SERVER: _read(Reach.ORG),
        Resource.MCP_STDIO_COMMAND: _read(Reach.NONE),
        Resource.GATEWAY_HEALTH: _read(Reach.NONE),
    },
}


def reach_of(role: Role, resource: Resource, action: Action) -> Reach:
    """How far ``role`` may perform ``action`` on ``resource``."""
    return PERMISSIONS[role][resource][action]
