"""Role-based access control for the control plane: one permission table, one check."""

from odock.rbac.permissions import PERMISSIONS, Action, Reach, Resource, reach_of

__all__ = ["PERMISSIONS", "Action", "Reach", "Resource", "reach_of"]
