"""Usage: token estimates, billing in integer nanos USD, usage records and their writer."""
