"""Links from a usage record to its trace in the operator's trace viewer (``ODOCK_TRACE_URL_TEMPLATE``).

No OpenTelemetry here: the console links records whatever this process's own tracing is.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True, slots=True)
class TraceLinks:
    """Builds trace viewer URLs from the template (None: no links)."""

    template: str | None

    def url(self, trace_id: str | None) -> str | None:
        """The URL of the trace ``trace_id``; None without a template or a trace id."""
        if self.template is None or not trace_id:
            return None
        return self.template.replace("{trace_id}", quote(trace_id, safe=""))
