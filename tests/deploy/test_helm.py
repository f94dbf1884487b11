"""The Helm chart deploy/helm/odock: linted and rendered by Helm, every manifest valid for Kubernetes.

Helm itself does the linting and rendering: the helm-python-sdk package (a test extra) binds
Helm's own Go SDK (`helm lint`, `helm template`), so no `helm` binary is needed. Each rendered
manifest is validated with kubernetes-validate against the oldest Kubernetes the chart supports
and the newest the validator ships; the ServiceMonitor (a prometheus-operator CRD the validator
has no schema for) is checked against a schema of the fields the chart uses.
"""

from __future__ import annotations

import base64
import copy
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml

from odock.providers.crypto import KeyPair
from tests.conftest import Gateway
from tests.deploy.conftest import REPO, SettingsFromEnv
from tests.deploy.dockerfile import runtime_env
from tests.support.tools import REQUIRE_TOOLS

CHART = REPO / "deploy" / "helm" / "odock"
KUBERNETES_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
RELEASE = "odock"
NAMESPACE = "odock"

Manifest = dict[str, Any]


def helm_sdk() -> ModuleType:
    """helm_python (Helm's Go SDK), or a skip with a notice (a failure when tools are required)."""
    try:
        import helm_python
    except ImportError:
        message = "helm-python-sdk not installed (pip install -c constraints.txt -e '.[test]')"
        if REQUIRE_TOOLS:
            pytest.fail(f"{message}: required (ODOCK_TEST_REQUIRE_TOOLS=1)")
        pytest.skip(f"{message}: this test was SKIPPED")
    return helm_python


def production_example() -> dict[str, Any]:
    """values-production.yaml."""
    values: dict[str, Any] = yaml.safe_load((CHART / "values-production.yaml").read_text())
    return values


def inline_secrets(pair: KeyPair) -> dict[str, Any]:
    """The production example with the chart creating the Secret from values."""
    values = production_example()
    values["secrets"] = {
        "existingSecret": "",
        "databaseUrl": "postgresql+asyncpg://odock:pw@postgres.example:5432/odock",
        "redisUrl": "redis://:pw@redis.example:6379/0",
        "providerKeyEncryption": {"keyId": pair.key_id, "privateKey": pair.private_pem},
        "bootstrapAdmin": {"email": "admin@example.com", "password": "a long first password"},
        "cacheInvalidationSecret": "",
        "extra": {"ODOCK_OIDC_CLIENT_SECRET": "oidc-secret"},
    }
    return values


@pytest.fixture(scope="module")
def scenarios(encryption_pair: KeyPair) -> dict[str, dict[str, Any]]:
    """Values files rendered by the tests: the defaults, the production example, and variants."""
    return {
        "default": {},
        "embedded-persistent": {"persistence": {"enabled": True}},
        "production-example": production_example(),
        "production-inline-secrets": inline_secrets(encryption_pair),
    }


def render_templates(values: dict[str, Any]) -> dict[str, list[Manifest]]:
    """`helm template` of the chart with ``values``: each template file's manifests, hooks included."""
    helm = helm_sdk()
    with helm.Chart.load(str(CHART)) as chart:
        rendered = chart.render(copy.deepcopy(values), name=RELEASE, namespace=NAMESPACE, is_install=True)
    return {
        Path(path).name: [doc for doc in yaml.safe_load_all(text) if doc]
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt")
    }


def render(values: dict[str, Any]) -> list[Manifest]:
    """Every manifest of the chart rendered with ``values``."""
    return [m for _, manifests in sorted(render_templates(values).items()) for m in manifests]


@pytest.fixture(scope="module")
def rendered_templates(scenarios: dict[str, dict[str, Any]]) -> dict[str, dict[str, list[Manifest]]]:
    """Each scenario's manifests by template file."""
    return {name: render_templates(values) for name, values in scenarios.items()}


@pytest.fixture(scope="module")
def rendered(rendered_templates: dict[str, dict[str, list[Manifest]]]) -> dict[str, list[Manifest]]:
    """Each scenario's manifests."""
    return {
        name: [m for _, manifests in sorted(templates.items()) for m in manifests]
        for name, templates in rendered_templates.items()
    }


def one(manifests: list[Manifest], kind: str, component: str | None = None) -> Manifest:
    """The single manifest of ``kind`` (optionally: with that component label)."""
    found = [
        m
        for m in manifests
        if m["kind"] == kind
        and (component is None or m["metadata"]["labels"].get("app.kubernetes.io/component") == component)
    ]
    assert len(found) == 1, f"{len(found)} {kind} manifests"
    return found[0]


def kinds(manifests: list[Manifest]) -> list[str]:
    """The kinds, sorted."""
    return sorted(m["kind"] for m in manifests)


def every_scenario() -> Iterator[str]:
    """The scenario names, for parametrisation."""
    yield from ("default", "embedded-persistent", "production-example", "production-inline-secrets")


@pytest.mark.parametrize("scenario", list(every_scenario()))
def test_helm_lint_finds_nothing_to_warn_about(scenarios: dict[str, dict[str, Any]], scenario: str) -> None:
    """`helm lint --strict` reports no warning or error (informational notes only)."""
    helm = helm_sdk()
    report = helm.lint(str(CHART), copy.deepcopy(scenarios[scenario]), strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert serious == []


@pytest.mark.parametrize("scenario", list(every_scenario()))
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_kubernetes(
    rendered: dict[str, list[Manifest]], scenario: str, version: str
) -> None:
    """kubernetes-validate (strict: no unknown field) accepts every manifest of the built-in kinds."""
    checked = 0
    for manifest in rendered[scenario]:
        if manifest["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        kubernetes_validate.validate(manifest, version, strict=True)
        checked += 1
    assert checked >= 5


SERVICE_MONITOR_DURATION = "^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "properties": {
                        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": SERVICE_MONITOR_DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": SERVICE_MONITOR_DURATION},
                            "authorization": {
                                "type": "object",
                                "properties": {
                                    "type": {"type": "string"},
                                    "credentials": {
                                        "type": "object",
                                        "required": ["key"],
                                        "properties": {"name": {"type": "string"}, "key": {"type": "string"}},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_service_monitor_scrapes_the_gateways_metrics(rendered: dict[str, list[Manifest]]) -> None:
    """The ServiceMonitor fits the CRD's fields and selects the Service's http port at /metrics, job odock."""
    manifests = rendered["production-example"]
    monitor = one(manifests, "ServiceMonitor")
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    service = one(manifests, "Service")
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert labels[monitor["spec"]["jobLabel"]] == "odock"
    ports = {port["name"] for port in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in ports
        assert endpoint["path"] == "/metrics"
    assert "ServiceMonitor" not in kinds(rendered["default"])


def pod_spec(manifest: Manifest) -> dict[str, Any]:
    """The pod template's spec of a Deployment or Job."""
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


def test_probes_ask_the_routes_the_gateway_means_for_them(
    rendered: dict[str, list[Manifest]], gateway: Gateway
) -> None:
    """Readiness asks /v1/healthz (which checks the database), liveness and startup /v1/health."""
    container = pod_spec(one(rendered["production-example"], "Deployment"))["containers"][0]
    readiness = container["readinessProbe"]["httpGet"]["path"]
    liveness = container["livenessProbe"]["httpGet"]["path"]
    assert container["startupProbe"]["httpGet"]["path"] == liveness
    with httpx.Client(base_url=gateway.base_url) as client:
        ready = client.get(readiness)
        alive = client.get(liveness)
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == "ok"
    assert alive.status_code == 200
    assert "checks" not in alive.json()


@pytest.mark.parametrize("scenario", list(every_scenario()))
def test_pods_run_locked_down(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    """Non-root, read-only root filesystem, no capabilities, a writable /tmp and data dir, no API token."""
    data_dir = runtime_env()["ODOCK_DATA_DIR"]
    workloads = [m for m in rendered[scenario] if m["kind"] in ("Deployment", "Job")]
    assert workloads
    for workload in workloads:
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] > 0
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert "/tmp" in mounts
            if workload["kind"] == "Deployment":
                assert data_dir in mounts


def test_the_deployment_reads_the_configmap_and_the_secret(rendered: dict[str, list[Manifest]]) -> None:
    """envFrom names the rendered ConfigMap and Secret (or the existing one); a change rolls the pods."""
    for scenario, secret_name in (
        ("production-inline-secrets", RELEASE),
        ("production-example", "odock-secrets"),
    ):
        manifests = rendered[scenario]
        deployment = one(manifests, "Deployment")
        sources = pod_spec(deployment)["containers"][0]["envFrom"]
        assert sources[0]["configMapRef"]["name"] == one(manifests, "ConfigMap")["metadata"]["name"]
        assert sources[1]["secretRef"]["name"] == secret_name
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert {"checksum/config", "checksum/secret"} <= annotations.keys()
    assert "Secret" not in kinds(rendered["production-example"])
    assert "Secret" not in kinds(rendered["default"])


def settings_environment(manifests: list[Manifest]) -> dict[str, str]:
    """What the gateway container's environment holds from the ConfigMap and the chart's Secret."""
    environment = dict(one(manifests, "ConfigMap")["data"])
    for secret in (
        m
        for m in manifests
        if m["kind"] == "Secret" and "helm.sh/hook" not in m["metadata"].get("annotations", {})
    ):
        environment.update({k: base64.b64decode(v).decode() for k, v in secret["data"].items()})
    return environment


def test_production_settings_parse_and_keep_secrets_out_of_the_configmap(
    rendered: dict[str, list[Manifest]], settings_from_env: SettingsFromEnv, encryption_pair: KeyPair
) -> None:
    """ConfigMap + Secret are valid Odock settings in production mode; no secret is in the ConfigMap."""
    manifests = rendered["production-inline-secrets"]
    settings = settings_from_env(settings_environment(manifests))
    assert not settings.is_embedded
    assert not settings.is_sqlite
    assert settings.provider_key_encryption_key_id == encryption_pair.key_id
    assert settings.trusted_proxy_cidrs == ["10.0.0.0/8"]
    assert settings.session_cookie_secure is True
    assert str(settings.data_dir) == runtime_env()["ODOCK_DATA_DIR"]
    config = one(manifests, "ConfigMap")["data"]
    secret_names = {name for m in manifests if m["kind"] == "Secret" for name in m["data"]}
    assert "ODOCK_OIDC_CLIENT_SECRET" in secret_names
    assert not secret_names & config.keys()


def test_default_values_run_one_embedded_pod(
    rendered: dict[str, list[Manifest]], settings_from_env: SettingsFromEnv
) -> None:
    """The defaults: one pod replaced (not rolled) on SQLite, no migration hook, no autoscaler."""
    manifests = rendered["default"]
    settings = settings_from_env(settings_environment(manifests))
    assert settings.is_embedded
    assert settings.is_sqlite
    deployment = one(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert not {"Job", "HorizontalPodAutoscaler", "Ingress"} & set(kinds(manifests))
    persistent = rendered["embedded-persistent"]
    claim = one(persistent, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in pod_spec(one(persistent, "Deployment"))["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


@pytest.mark.parametrize("scenario", ["production-example", "production-inline-secrets"])
def test_migrations_run_as_a_hook_before_pods_roll(
    rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    """A pre-install/pre-upgrade Job runs `odock migrate upgrade`, reading a Secret that exists by then."""
    manifests = rendered[scenario]
    job = one(manifests, "Job")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    container = pod_spec(job)["containers"][0]
    assert container["args"] == ["migrate", "upgrade"]
    reference = next(e for e in container["env"] if e["name"] == "ODOCK_DATABASE_URL")["valueFrom"][
        "secretKeyRef"
    ]
    hook_secrets = [
        m
        for m in manifests
        if m["kind"] == "Secret" and "helm.sh/hook" in m["metadata"].get("annotations", {})
    ]
    if scenario == "production-example":
        assert reference["name"] == "odock-secrets"
        assert hook_secrets == []
    else:
        (secret,) = hook_secrets
        assert secret["metadata"]["name"] == reference["name"]
        assert reference["key"] in secret["data"]
        assert secret["metadata"]["annotations"]["helm.sh/hook"] == annotations["helm.sh/hook"]
        assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
            annotations["helm.sh/hook-weight"]
        )
    # The Job's pod is not one of the gateway's: the Service, the Deployment and the PDB leave it out.
    selector = one(manifests, "Service")["spec"]["selector"]
    assert not selector.items() <= job["spec"]["template"]["metadata"]["labels"].items()


def test_production_scales_and_survives_disruption(rendered: dict[str, list[Manifest]]) -> None:
    """The autoscaler targets the Deployment, the PDB and Service select its pods, shutdown has grace."""
    manifests = rendered["production-example"]
    deployment = one(manifests, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    hpa = one(manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert (
        one(manifests, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    )
    assert one(manifests, "Service")["spec"]["selector"].items() <= pod_labels.items()
    grace = float(one(manifests, "ConfigMap")["data"]["ODOCK_SHUTDOWN_GRACE_SECONDS"])
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] > grace
    ingress = one(manifests, "Ingress")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": 2}, "mode embedded runs exactly one pod"),
        ({"autoscaling": {"enabled": True}}, "mode embedded runs exactly one pod"),
        ({"mode": "production"}, "mode production needs secrets.databaseUrl"),
        ({"mode": "cluster"}, "mode must be embedded or production"),
        ({"config": {"LOG_LEVEL": "debug"}}, "settings are named ODOCK_<NAME>"),
        ({"config": {"ODOCK_PORT": "9000"}}, "is set by the chart"),
    ],
)
def test_values_that_cannot_work_are_refused(values: dict[str, Any], message: str) -> None:
    """Rendering stops with a message saying what to change."""
    helm = helm_sdk()
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        render(values)


def test_every_template_is_rendered_by_some_scenario(
    rendered_templates: dict[str, dict[str, list[Manifest]]],
) -> None:
    """Each template file yields manifests in at least one scenario, so all of them are validated above."""
    templates = {p.name for p in (CHART / "templates").iterdir() if p.suffix == ".yaml"}
    used = {name for by_file in rendered_templates.values() for name, found in by_file.items() if found}
    assert templates - used == set()
