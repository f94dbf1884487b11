"""Rate limiting: scope policies, stateless gates (IP, payload) and the shared rate limiter.

``policy`` parses envelopes and resolves scopes; ``checks`` holds the storage-free gates;
``plan`` turns scopes into limit checks; ``limiter`` admits them all-or-nothing (in memory or
in Redis via ``lua``); ``decision`` and ``errors`` describe the answers. See docs/rate-limits.md.
"""
