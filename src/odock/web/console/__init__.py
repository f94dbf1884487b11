"""The web console: server-rendered pages over the control-plane services, same origin as the API.

Pages are Jinja2 templates rendered by thin views (``routes/``): each view declares the same
``Permit(resource, action)`` dependency as the API route it mirrors, asks the same service for
what it shows, and renders. Every change a page makes goes through the REST API from the
browser (``static/console.js`` posts the form as JSON with the session's CSRF token and shows the
API's field errors next to their fields), so no rule is implemented twice and no permission
exists only in a template. See ``docs/console.md``.
"""
