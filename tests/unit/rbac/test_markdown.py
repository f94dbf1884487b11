"""The permission table rendered as Markdown, and docs/rbac.md kept in step with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from odock.rbac.markdown import TABLE_END, TABLE_START, permission_table, with_permission_table
from odock.rbac.permissions import PERMISSIONS, Action, Reach, Resource
from odock.tenancy.tables import Role

RBAC_DOC = Path(__file__).parents[3] / "docs" / "rbac.md"


def test_docs_show_the_permission_table_of_the_code() -> None:
    """docs/rbac.md holds exactly the table generated from PERMISSIONS."""
    text = RBAC_DOC.read_text(encoding="utf-8")
    assert text == with_permission_table(text), (
        "docs/rbac.md is stale: regenerate its table with "
        "odock.rbac.markdown.with_permission_table (see the markers in the file)"
    )


def test_table_has_one_row_per_cell_pair() -> None:
    """The table has a row for every resource and action, and a column for every role."""
    lines = permission_table().splitlines()
    assert lines[0] == "| resource | action | SUPER_ADMIN | ORG_ADMIN | MANAGER | USER |"
    assert len(lines) == 2 + len(Resource) * len(Action)


def test_cells_render_the_reach() -> None:
    """A cell shows its reach: a user reads only their own user row, and writes no model."""
    rows = {
        tuple(c.strip() for c in line.strip("|").split("|")[:2]): line
        for line in permission_table().splitlines()
    }
    user_read = rows[("user", "read")].strip("|").split("|")
    assert [c.strip() for c in user_read[2:]] == ["all", "org", "org", "self"]
    assert PERMISSIONS[Role.USER][Resource.MODEL][Action.CREATE] is Reach.NONE
    assert rows[("model", "create")].rstrip().endswith("| — |")


def test_replacing_needs_the_markers() -> None:
    """A document without the table markers is refused; one with them gets the table between them."""
    with pytest.raises(ValueError, match="markers"):
        with_permission_table("# no table here\n")
    rendered = with_permission_table(f"before\n{TABLE_START}\nold\n{TABLE_END}\nafter\n")
    assert rendered == f"before\n{TABLE_START}\n{permission_table()}{TABLE_END}\nafter\n"
