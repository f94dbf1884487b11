"""Actors, targets and grants: applying the permission table to one request.

A route's :class:`~odock.web.api.deps.Permit` dependency turns the actor's role into a
:class:`Grant` for the organisation in the path. Item routes call :meth:`Grant.check` with the
row's :class:`Target` once loaded; list routes narrow their query with :meth:`Grant.scope`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from odock.errors import Forbidden, NotFound
from odock.rbac.permissions import Action, Reach, Resource, reach_of
from odock.tenancy.tables import Role


@dataclass(frozen=True)
class Actor:
    """Who is calling the control plane: a signed-in user, by session cookie or admin token."""

    user_id: str
    email: str
    role: Role
    organisation_id: str | None
    managed_team_ids: frozenset[str] = frozenset()
    member_team_ids: frozenset[str] = frozenset()
    session_id: str | None = None
    token_id: str | None = None

    @property
    def is_super_admin(self) -> bool:
        """Whether the actor reaches every organisation."""
        return self.role is Role.SUPER_ADMIN


@dataclass(frozen=True)
class Target:
    """Where a row sits: its organisation, and the team and user that own it (if any)."""

    organisation_id: str | None
    team_id: str | None = None
    user_id: str | None = None


@dataclass(frozen=True)
class ListScope:
    """The narrowing a list query must apply: ``None`` means no narrowing on that column."""

    organisation_id: str | None
    team_ids: frozenset[str] | None = None
    user_id: str | None = None


@dataclass(frozen=True)
class Grant:
    """What the actor may do with one resource and action, inside one organisation (or all)."""

    actor: Actor
    resource: Resource
    action: Action
    reach: Reach
    organisation_id: str | None = field(default=None)

    @classmethod
    def for_actor(
        cls,
        actor: Actor,
        resource: Resource,
        action: Action,
        organisation_id: str | None,
        *,
        personal: bool = False,
    ) -> Grant:
        """The grant for a route, or :class:`Forbidden` when the actor has none there.

        ``organisation_id`` is the organisation in the route's path; ``None`` on ``/api/admin``
        routes, which need reach ALL. A ``personal`` route (``/api/auth/*``: one's own tokens,
        profile, password) acts inside the actor's own organisation instead.
        """
        reach = reach_of(actor.role, resource, action)
        if reach is Reach.NONE:
            raise Forbidden("you are not allowed to do this")
        if personal:
            return cls(actor, resource, action, reach, actor.organisation_id)
        if organisation_id is None:
            if reach is not Reach.ALL:
                raise Forbidden("you are not allowed to do this")
        elif reach is not Reach.ALL and actor.organisation_id != organisation_id:
            # Same answer whether or not the organisation exists: nothing leaks across tenants.
            raise Forbidden("you are not allowed to do this")
        return cls(actor, resource, action, reach, organisation_id)

    def allows(self, target: Target) -> bool:
        """Whether ``target`` falls inside this grant."""
        if self.organisation_id is not None and target.organisation_id != self.organisation_id:
            return False
        if self.reach >= Reach.ORG:
            return True
        actor = self.actor
        if target.user_id is not None and target.user_id == actor.user_id:
            return True
        if self.reach is Reach.TEAM:
            return target.team_id is not None and target.team_id in actor.managed_team_ids
        # SELF: reading the rows of one's own teams (the team itself, team keys, team usage).
        return (
            self.action is Action.READ
            and target.user_id is None
            and target.team_id is not None
            and target.team_id in actor.member_team_ids
        )

    def check(self, target: Target) -> None:
        """Raise unless ``target`` is inside this grant.

        A row of another organisation is reported as missing (404), like an unknown id; a row of
        the actor's organisation outside the grant is forbidden (403).
        """
        if self.organisation_id is not None and target.organisation_id != self.organisation_id:
            raise NotFound(f"{self.resource.value.replace('_', ' ')} not found")
        if not self.allows(target):
            raise Forbidden("you are not allowed to do this")

    def scope(self) -> ListScope:
        """How a list query must be narrowed for this grant."""
        if self.reach >= Reach.ORG:
            return ListScope(self.organisation_id)
        actor = self.actor
        if self.reach is Reach.TEAM:
            return ListScope(self.organisation_id, team_ids=actor.managed_team_ids, user_id=actor.user_id)
        teams = actor.member_team_ids if self.action is Action.READ else frozenset()
        return ListScope(self.organisation_id, team_ids=teams, user_id=actor.user_id)
