"""Hot-path caches: an in-process tier, a shared tier (Redis or in-process) and invalidation."""
