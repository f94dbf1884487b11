"""Which paths the console serves (no imports: the ASGI dispatcher reads this in every role)."""

# Everything else belongs to the REST API (/api/...) or the gateway (/v1/..., /v1beta/...).
PAGE_PREFIXES = ("/o/", "/admin", "/sign-in", "/password", "/profile", "/welcome/", "/static/")


def is_page(path: str) -> bool:
    """Whether ``path`` is a console page (rendered as HTML, errors included)."""
    return path == "/" or path.startswith(PAGE_PREFIXES)
