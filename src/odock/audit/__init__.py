"""The audit log: every configuration change, who made it, from where, before and after."""
