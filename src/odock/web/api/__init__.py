"""The control plane's REST API (FastAPI): ``/api/admin/*``, ``/api/organisations/{id}/*``, ``/api/auth/*``.

Handlers are thin: parse (pydantic), authorise (:class:`~odock.web.api.deps.Permit`), call a
service, render. The gateway's hot path does not go through this app.
"""
