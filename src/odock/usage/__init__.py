"""Usage: token estimates, billing in integer nanos USD, usage records, their durable queue and writer."""
