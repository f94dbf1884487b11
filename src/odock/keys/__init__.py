"""API keys: secrets, hashing, the hot-path key directory and key lifecycle operations."""
