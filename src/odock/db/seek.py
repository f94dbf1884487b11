"""How a query module is handed one page of a keyset-paginated list, without knowing about cursors.

The web layer owns cursors (their encoding, their validation, the page size); a query module
owns the query. A :data:`Seek` joins them: the query module builds its filtered query and hands
it over with its sort and id columns; the seek orders it, starts it after the cursor and limits
it (``functools.partial(keyset, params=page)`` from :mod:`odock.web.api.paging`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute

Rows = Select[*tuple[Any, ...]]
Seek = Callable[[Rows, InstrumentedAttribute[Any], InstrumentedAttribute[Any]], Rows]
"""``seek(query, sort_column, id_column)``: ``query`` narrowed to one page, in page order."""
