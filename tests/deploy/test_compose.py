"""docker-compose.yml: valid for docker-compose, with and without the observability profile, and shaped right.

The checks read the configuration as docker-compose itself resolves it (`docker-compose config`,
with deploy/compose/.env.example filled with a real encryption pair): the migration runs once and
gates the replicas, two replicas sit behind the proxy, the observability services exist only
under their profile, every file mounted from the repository exists, and the gateways'
environment is valid Odock settings.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from odock.providers.crypto import KeyPair
from odock.settings import Settings
from tests.deploy.conftest import REPO, SettingsFromEnv
from tests.deploy.dockerfile import runtime_env
from tests.support.tools import require_tool

COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / "deploy" / "compose" / ".env.example"
NGINX_CONF = REPO / "deploy" / "compose" / "nginx.conf"
PROMETHEUS_CONFIG = REPO / "observability" / "prometheus" / "prometheus.yml"
COLLECTOR_CONFIG = REPO / "observability" / "otel-collector" / "config.yaml"
DATASOURCES = REPO / "observability" / "grafana" / "provisioning" / "datasources" / "datasources.yml"
DASHBOARD_PROVIDERS = REPO / "observability" / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"

REPLICAS = ("odock-1", "odock-2")
OBSERVABILITY = {"prometheus", "grafana", "otel-collector", "jaeger"}
INSTALL_HINT = "apt-get install docker-compose (.ci/run installs it)"


def env_file_from_example(directory: Path, pair: KeyPair, *, drop: str | None = None) -> Path:
    """deploy/compose/.env.example with the encryption pair filled in (and ``drop`` left out)."""
    lines = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        name = line.partition("=")[0]
        if name == drop:
            continue
        if name == "ODOCK_PROVIDER_KEY_ENCRYPTION_KEY_ID":
            line = f"{name}={pair.key_id}"
        elif name == "ODOCK_PROVIDER_KEY_ENCRYPTION_PRIVATE_KEY":
            escaped = pair.private_pem.strip().replace("\n", "\\n")
            line = f'{name}="{escaped}"'
        lines.append(line)
    path = directory / ("env" if drop is None else f"env-without-{drop}")
    path.write_text("\n".join(lines) + "\n")
    return path


def compose(env_file: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run docker-compose on the repository's file, in an environment holding none of its variables."""
    tool = require_tool("docker-compose", INSTALL_HINT)
    clean = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    return subprocess.run(
        [tool, "--project-directory", REPO, "-f", COMPOSE_FILE, "--env-file", env_file, *arguments],
        cwd=REPO,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory, encryption_pair: KeyPair) -> Path:
    """The example .env with a real encryption pair."""
    return env_file_from_example(tmp_path_factory.mktemp("compose"), encryption_pair)


@pytest.fixture(scope="module")
def config(env_file: Path) -> dict[str, Any]:
    """The configuration as docker-compose resolves it, profile services included."""
    result = compose(env_file, "--profile", "observability", "config")
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = yaml.safe_load(result.stdout)
    return loaded


@pytest.fixture(scope="module")
def services(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved services."""
    found: dict[str, Any] = config["services"]
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {name: "" if value is None else str(value) for name, value in env.items()}


def mounts(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(kind, source, target) of a service's mounts, from the short or the long syntax.

    docker-compose 1.29 prints `source:target:mode` strings, Compose v2 mappings.
    """
    found = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            kind = "bind" if source.startswith(("/", ".")) else "volume"
            found.append((kind, source, rest.split(":")[0]))
        else:
            found.append((volume.get("type", "volume"), volume.get("source", ""), volume["target"]))
    return found


def binds(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of a service's bind mounts (named volumes left out)."""
    return [(source, target) for kind, source, target in mounts(service) if kind == "bind"]


@pytest.mark.parametrize("with_profile", [False, True], ids=["core", "observability"])
def test_docker_compose_validates_it(env_file: Path, with_profile: bool) -> None:
    """`docker-compose config` accepts the file, without and with `--profile observability`."""
    profile = ["--profile", "observability"] if with_profile else []
    result = compose(env_file, *profile, "config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_a_missing_secret_stops_compose_naming_it(tmp_path: Path, encryption_pair: KeyPair) -> None:
    """Without POSTGRES_PASSWORD in .env, docker-compose refuses to go on and says which variable."""
    incomplete = env_file_from_example(tmp_path, encryption_pair, drop="POSTGRES_PASSWORD")
    result = compose(incomplete, "config", "--quiet")
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


def test_the_env_example_holds_no_real_secret() -> None:
    """Every secret in the example is a placeholder to replace, never a usable value."""
    values = dict(
        line.partition("=")[::2]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )
    passwords = ["POSTGRES_PASSWORD", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD"]
    for name in [*passwords, "ODOCK_BOOTSTRAP_ADMIN_PASSWORD"]:
        assert values[name].startswith("replace"), name
    assert "BEGIN" not in values["ODOCK_PROVIDER_KEY_ENCRYPTION_PRIVATE_KEY"]
    assert ".env" in (REPO / ".gitignore").read_text().split()


def test_migrate_runs_once_and_gates_both_replicas(services: dict[str, Any]) -> None:
    """`migrate` runs `odock migrate upgrade` once PostgreSQL is healthy; replicas start once it succeeded."""
    migrate = services["migrate"]
    assert migrate["command"] == ["migrate", "upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in REPLICAS:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert services[name]["image"] == migrate["image"], name
        assert "command" not in services[name], f"{name} must run the image's default `odock serve`"


def test_two_replicas_with_their_own_data_and_a_liveness_check(services: dict[str, Any]) -> None:
    """Two replicas, each with a volume of its own on the image's data dir, checked on /v1/health."""
    data_dir = runtime_env()["ODOCK_DATA_DIR"]
    assert {name for name in services if name.startswith("odock-")} == set(REPLICAS)
    data_volumes = set()
    for name in REPLICAS:
        volumes = [(source, target) for kind, source, target in mounts(services[name]) if kind == "volume"]
        assert [target for _, target in volumes] == [data_dir], name
        data_volumes.add(volumes[0][0])
        assert "/v1/health'" in " ".join(services[name]["healthcheck"]["test"])
    assert len(data_volumes) == 2


def test_the_proxy_is_the_only_way_in(services: dict[str, Any]) -> None:
    """Only the proxy publishes a port on all interfaces; it starts once both replicas are healthy."""
    proxy = services["proxy"]
    for name in REPLICAS:
        assert proxy["depends_on"][name]["condition"] == "service_healthy"
    published = {name: service.get("ports") or [] for name, service in services.items()}
    assert published["proxy"], "the proxy publishes no port"
    for name, ports in published.items():
        if name == "proxy":
            continue
        for port in ports:
            host_ip = port.get("host_ip") if isinstance(port, dict) else port.split(":")[0]
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond this host"
    assert (str(NGINX_CONF), "/etc/nginx/conf.d/default.conf") in binds(proxy)


def nginx_directives(text: str) -> list[str]:
    """nginx.conf's directives, comments dropped, one per entry."""
    without_comments = re.sub(r"#[^\n]*", "", text)
    return [" ".join(d.split()) for d in re.split(r"[;{}]", without_comments) if d.strip()]


def test_nginx_balances_the_replicas_and_streams(services: dict[str, Any]) -> None:
    """nginx spreads over exactly the replicas, forwards the client address and never buffers a stream."""
    directives = nginx_directives(NGINX_CONF.read_text())
    upstream_servers = [d.split()[1] for d in directives if d.startswith("server ") and ":" in d.split()[1]]
    assert upstream_servers == [f"{name}:8080" for name in REPLICAS]
    for expected in (
        "proxy_buffering off",
        "proxy_request_buffering off",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for",
        "proxy_http_version 1.1",
    ):
        assert expected in directives, expected
    read_timeout = next(d for d in directives if d.startswith("proxy_read_timeout"))
    seconds = int(read_timeout.split()[1].removesuffix("s"))
    assert seconds > Settings.model_fields["upstream_default_timeout_seconds"].default
    body = next(d for d in directives if d.startswith("client_max_body_size")).split()[1]
    assert int(body.removesuffix("m")) * 1024 * 1024 > Settings.model_fields["max_request_bytes"].default


def test_replicas_believe_forwarded_addresses_from_the_proxy_only(
    services: dict[str, Any], settings_from_env: SettingsFromEnv
) -> None:
    """ODOCK_TRUSTED_PROXY_CIDRS holds the proxy's fixed address and nothing wider."""
    proxy_address = ipaddress.ip_address(services["proxy"]["networks"]["odock"]["ipv4_address"])
    settings = settings_from_env(environment(services["odock-1"]))
    networks = [ipaddress.ip_network(cidr) for cidr in settings.trusted_proxy_cidrs]
    assert networks == [ipaddress.ip_network(f"{proxy_address}/32")]


def test_replica_environment_is_valid_production_settings(
    services: dict[str, Any], settings_from_env: SettingsFromEnv, encryption_pair: KeyPair
) -> None:
    """The replicas' environment parses as Odock settings: PostgreSQL, Redis, the pair, a bootstrap admin."""
    for name in (*REPLICAS, "migrate"):
        settings = settings_from_env(environment(services[name]))
        assert not settings.is_sqlite, name
        assert not settings.is_embedded, name
        assert urlsplit(settings.resolved_database_url).hostname == "postgres"
        assert urlsplit(settings.redis_url or "").hostname == "redis"
        assert settings.provider_key_encryption_key_id == encryption_pair.key_id
        secret = settings.provider_key_encryption_private_key
        assert secret is not None
        assert secret.get_secret_value().strip() == encryption_pair.private_pem.strip()
        assert settings.bootstrap_admin_email


def test_observability_services_exist_only_under_their_profile(services: dict[str, Any]) -> None:
    """Prometheus, Grafana, the collector and Jaeger carry the profile; nothing else does or needs them."""
    profiled = {name for name, service in services.items() if service.get("profiles")}
    assert profiled == OBSERVABILITY
    for name in OBSERVABILITY:
        assert services[name]["profiles"] == ["observability"]
    for name, service in services.items():
        if name not in OBSERVABILITY:
            assert not set(service.get("depends_on") or {}) & OBSERVABILITY, name


def test_every_file_mounted_from_the_repository_exists(services: dict[str, Any]) -> None:
    """Each bind mount's source is a file or directory of this repository."""
    mounted = [(name, source) for name, service in services.items() for source, _ in binds(service)]
    assert len(mounted) >= 6
    for name, source in mounted:
        path = Path(source)
        assert path.is_relative_to(REPO), f"{name} mounts {source} from outside the repository"
        assert path.exists(), f"{name} mounts {source}, which does not exist"


def test_images_are_pinned(services: dict[str, Any]) -> None:
    """Every third-party image names a version tag (no `latest`, no bare name)."""
    for name, service in services.items():
        if "build" in service:
            continue
        image = service["image"]
        tag = image.rpartition(":")[2] if ":" in image.split("/")[-1] else ""
        assert re.match(r"v?\d+\.\d+", tag), f"{name}: {image} is not pinned to a version"


def test_prometheus_scrapes_each_replica_directly(services: dict[str, Any]) -> None:
    """promtool accepts prometheus.yml; the `odock` job scrapes every replica itself, not the proxy."""
    promtool = require_tool("promtool", "apt-get install prometheus (.ci/run installs it)")
    result = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_CONFIG)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "odock")
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    assert targets == [f"{name}:8080" for name in REPLICAS]
    mounts = dict((target, source) for source, target in binds(services["prometheus"]))
    assert mounts["/etc/prometheus/prometheus.yml"] == str(PROMETHEUS_CONFIG)
    assert mounts["/etc/prometheus/rules"] == str(PROMETHEUS_CONFIG.parent / "rules")
    assert config["rule_files"] == ["rules/*.yml"]


def test_grafana_is_provisioned_with_prometheus_jaeger_and_the_dashboards(services: dict[str, Any]) -> None:
    """Datasources point at the compose services; the dashboard provider reads the mounted dashboards."""
    sources = {s["uid"]: s for s in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    assert urlsplit(sources["prometheus"]["url"]).hostname == "prometheus"
    assert sources["prometheus"]["isDefault"] is True
    assert urlsplit(sources["jaeger"]["url"]).hostname == "jaeger"
    mounts = dict((target, source) for source, target in binds(services["grafana"]))
    provider = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"][0]
    dashboards_dir = mounts[provider["options"]["path"]]
    assert dashboards_dir == str(REPO / "observability" / "grafana" / "dashboards")
    assert environment(services["grafana"])["GF_SECURITY_ADMIN_PASSWORD"].startswith("replace")


def test_collector_receives_what_the_gateways_send_and_exports_to_jaeger(services: dict[str, Any]) -> None:
    """The traces pipeline uses defined parts, listens where ODOCK_OTEL_ENDPOINT points, exports to Jaeger."""
    config = yaml.safe_load(COLLECTOR_CONFIG.read_text())
    pipeline = config["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        assert pipeline[kind], kind
        assert set(pipeline[kind]) <= set(config[kind]), kind
    assert set(config["service"]["extensions"]) <= set(config["extensions"])
    http_port = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].rsplit(":", 1)[1]
    endpoint = urlsplit(environment(services["odock-1"])["ODOCK_OTEL_ENDPOINT"])
    assert (endpoint.hostname, str(endpoint.port)) == ("otel-collector", http_port)
    exporter = next(config["exporters"][name] for name in pipeline["exporters"])
    assert exporter["endpoint"].split(":")[0] == "jaeger"
    assert (str(COLLECTOR_CONFIG), "/etc/otelcol-contrib/config.yaml") in binds(services["otel-collector"])
