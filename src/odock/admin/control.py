"""The control plane: the per-feature services, composed once for the API, the CLI and apply.

Each feature owns its rules, its queries and the invalidation it publishes: providers
(:class:`~odock.providers.service.ProviderService`), provider keys
(:class:`~odock.providers.key_service.ProviderKeyService`), models
(:class:`~odock.providers.model_service.ModelService`), API keys
(:class:`~odock.keys.service.KeyService`), governance envelopes
(:class:`~odock.limits.service.PolicyEnvelopes`), budgets and quotas
(:class:`~odock.budgets.control.BudgetControl`), organisations, teams and members
(:class:`~odock.tenancy.service.TenancyService`) and users
(:class:`~odock.tenancy.user_service.UserService`), MCP servers and the STDIO allowlist
(:class:`~odock.mcp.service.McpServerService`) and keys' MCP grants
(:class:`~odock.mcp.grant_service.McpGrants`). Every policy envelope written anywhere is
checked with :func:`odock.limits.policy.parse_policy` and stored in its bare, parsed form, so a
bad policy is refused with 422 ``invalid_policy`` at write time, not at the next request.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.budgets.control import BudgetControl
from odock.budgets.meters import MeterStore
from odock.cache.bus import InvalidationBus
from odock.keys.service import IssuedKey, KeyService
from odock.limits.service import PolicyEnvelopes
from odock.mcp.grant_service import McpGrants
from odock.mcp.service import McpServerService
from odock.providers.crypto import EnvelopeDecrypter
from odock.providers.key_service import ProviderKeyService
from odock.providers.model_service import ModelService
from odock.providers.service import ProviderService
from odock.tenancy.service import TenancyService
from odock.tenancy.user_service import UserService

__all__ = ["ControlPlane", "IssuedKey"]


class ControlPlane:
    """The configuration services of one process, built once: callers use the service they need.

    ``tenancy`` holds organisations, teams and members, ``users`` users, ``budgets`` budgets and
    quotas; ``meters`` are the hot path's counters (the gateway's own, or Redis beside production
    gateways): a budget change reads live use from them.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        bus: InvalidationBus,
        decrypter: EnvelopeDecrypter | None,
        meters: MeterStore | None = None,
        stdio_allowed: Sequence[str] = (),
    ) -> None:
        self.budgets = BudgetControl(sessions, bus, meters)
        self.tenancy = TenancyService(sessions, bus)
        self.users = UserService(sessions)
        self.providers = ProviderService(sessions, bus, decrypter)
        self.provider_keys = ProviderKeyService(sessions, bus, decrypter)
        self.models = ModelService(sessions, bus)
        self.keys = KeyService(sessions, bus)
        self.policies = PolicyEnvelopes(sessions, bus)
        self.mcp_servers = McpServerService(sessions, bus, decrypter, stdio_allowed)
        self.mcp_grants = McpGrants(sessions, bus)
