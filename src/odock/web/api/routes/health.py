"""Route: the gateway's health — database, shared cache, usage queue, dead letters (super admin).

The answer is this process's view (:mod:`odock.admin.health`): behind a load balancer, each call
may reach another worker or replica. Liveness and readiness for orchestrators stay on the
gateway's unauthenticated ``/v1/health`` and ``/v1/healthz``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from odock.admin.health import GatewayHealth
from odock.rbac.grant import Grant
from odock.rbac.permissions import Action, Resource
from odock.web.api.deps import Permit
from odock.web.api.services import HealthDep

router = APIRouter(tags=["health"])

HealthGrant = Annotated[Grant, Depends(Permit(Resource.GATEWAY_HEALTH, Action.READ))]


@router.get("/admin/health", summary="The gateway's health")
async def gateway_health(health: HealthDep, grant: HealthGrant) -> GatewayHealth:
    """Database, shared cache, usage queue and dead letters, each ok or degraded (super admin)."""
    return await health.check()
