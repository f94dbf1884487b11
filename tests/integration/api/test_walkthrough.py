"""docs/control-plane.md's walkthrough, run as written: from an empty install to a governed key."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import GatewayFactory, SettingsFactory

DOC = Path(__file__).resolve().parents[3] / "docs" / "control-plane.md"
SECTION = "## From an empty install to a governed key"
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "change me at once"


def walkthrough_script() -> str:
    """The ```bash blocks of the walkthrough section, in order, as one script."""
    text = DOC.read_text()
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) >= 6, "the walkthrough lost its steps"
    return "\n".join(blocks)


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="NOTICE: needs curl and jq")
def test_walkthrough_runs_as_documented(
    gateway_factory: GatewayFactory,
    make_settings: SettingsFactory,
    empty_database: dict[str, str],
    tmp_path: Path,
) -> None:
    """Every curl line of the walkthrough succeeds and ends with a priced usage record and an audit trail."""
    settings = make_settings(
        bootstrap_admin_email=ADMIN_EMAIL,
        bootstrap_admin_password=ADMIN_PASSWORD,
        demo=False,
        **empty_database,  # an empty install: no super admin yet, no organisation named "acme"
    )
    gateway = gateway_factory(settings)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", walkthrough_script()],
        cwd=tmp_path,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "ODOCK_URL": gateway.base_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"walkthrough failed:\n{result.stdout}\n{result.stderr}"

    reply = json.loads((tmp_path / "reply.json").read_text())
    assert reply["choices"][0]["message"]["content"]
    model = json.loads((tmp_path / "model.json").read_text())
    assert model["name"] == "gpt-4.1-mini"

    record = json.loads((tmp_path / "records.json").read_text())["items"][0]
    assert record["model"] == "gpt-4.1-mini"
    assert record["http_status"] == 200
    assert record["total_cost_nanos_usd"] > 0  # priced: the per-1M rates reached the bill

    events = json.loads((tmp_path / "audit.json").read_text())["items"]
    changed = {(e["action"], e["resource_type"]) for e in events}
    for expected in [
        ("create", "providers"),
        ("create", "models"),
        ("create", "api_keys"),
        ("create", "budgets"),
    ]:
        assert expected in changed, f"no audit event for {expected}: {sorted(changed)}"
    key_events = [e for e in events if e["resource_type"] == "api_keys"]
    assert all(e["actor"]["label"] == ADMIN_EMAIL and e["actor"]["kind"] == "token" for e in key_events)
    assert all(e["after"]["key_hash"] == "***" for e in key_events)  # secrets masked in the trail
