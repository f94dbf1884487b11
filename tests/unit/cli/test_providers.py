"""The ``odock providers`` commands on an embedded database, run in-process."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner, Result

from odock.cli import main


def _odock(data_dir: Path, *args: str) -> Result:
    env: dict[str, str | None] = {"ODOCK_DATA_DIR": str(data_dir), "ODOCK_DEMO": "false"}
    for inherited in ("ODOCK_CONFIG", "ODOCK_DATABASE_URL", "ODOCK_REDIS_URL"):
        env[inherited] = None
    return CliRunner().invoke(main, list(args), env=env)


def test_two_providers_of_one_type_are_created_by_name(tmp_path: Path) -> None:
    """Two Azure regions of one organisation are made, switched and listed by name; a reused name exits 1."""
    data = tmp_path / "data"
    assert _odock(data, "orgs", "create", "acme").exit_code == 0
    for region in ("east", "west"):
        created = _odock(
            data, "providers", "create", "--org", "acme", "--type", "AZURE_OPENAI",
            "--base-url", f"https://{region}.openai.azure.com", f"azure-{region}",
        )  # fmt: skip
        assert created.exit_code == 0, created.stderr
    again = _odock(data, "providers", "create", "--org", "acme", "--type", "OPENAI", "azure-east")
    assert again.exit_code == 1
    assert "a provider named 'azure-east' already exists" in again.stderr
    assert _odock(data, "providers", "disable", "--org", "acme", "azure-west").exit_code == 0
    listed = orjson.loads(_odock(data, "providers", "list", "--org", "acme", "--json").stdout)
    assert {(p["name"], p["type"], p["enabled"]) for p in listed} == {
        ("azure-east", "AZURE_OPENAI", True),
        ("azure-west", "AZURE_OPENAI", False),
    }
