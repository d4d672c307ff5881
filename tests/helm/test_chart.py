"""The Helm chart as the pinned helm renders it.

The chart writes the connector's settings file; these tests load what it writes with
`connector.settings.load`, so that the chart and the settings cannot drift apart. They
also pin the pod's security settings and how credentials reach the pod.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector import settings
from connector.settings import AppSettings, Auth, Environment
from connector.telemetry.metrics import metrics

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "apns-connector"
CI = CHART / "ci"
VALUE_SETS = ["default"] + sorted(
    path.name.removesuffix("-values.yaml") for path in CI.glob("*-values.yaml")
)
CREDENTIALS_DIR = "/var/run/secrets/apns-connector"

# The first test may build helm from source (minutes on two cores); later runs reuse
# the binary in the cache.
pytestmark = pytest.mark.timeout(900)


@functools.cache
def helm() -> str:
    """The pinned helm, built into the cache by helm/check.sh when missing."""
    installed = subprocess.run(
        ["bash", str(ROOT / "helm" / "check.sh"), "install"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stderr
    return installed.stdout.strip()


def _template(
    value_set: str, sets: tuple[str, ...]
) -> subprocess.CompletedProcess[str]:
    command = [helm(), "template", "apns", str(CHART), "--namespace", "push"]
    if value_set != "default":
        command += ["--values", str(CI / f"{value_set}-values.yaml")]
    for assignment in sets:
        command += ["--set", assignment]
    return subprocess.run(command, check=False, capture_output=True, text=True)


@functools.cache
def render(value_set: str = "default", *sets: str) -> list[dict[str, Any]]:
    done = _template(value_set, sets)
    assert done.returncode == 0, done.stderr
    return [document for document in yaml.safe_load_all(done.stdout) if document]


def refusal(value_set: str = "default", *sets: str) -> str:
    done = _template(value_set, sets)
    assert done.returncode != 0, "helm rendered values that it should refuse"
    return done.stderr


def only(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [manifest for manifest in manifests if manifest["kind"] == kind]
    assert len(found) == 1, f"{len(found)} objects of kind {kind}"
    return found[0]


def kinds(manifests: list[dict[str, Any]]) -> list[str]:
    return sorted(manifest["kind"] for manifest in manifests)


def pod(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = only(manifests, "Deployment")["spec"]["template"]["spec"]
    return spec


def connector_container(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = pod(manifests)["containers"]
    assert container["name"] == "connector"
    return container


def load_settings(manifests: list[dict[str, Any]], tmp_path: Path) -> settings.Settings:
    """The connector's settings, loaded from the connector.toml the chart renders."""
    (config,) = [
        manifest["data"]["connector.toml"]
        for manifest in manifests
        if manifest["kind"] == "ConfigMap" and "connector.toml" in manifest["data"]
    ]
    path = tmp_path / "connector.toml"
    path.write_text(config)
    return settings.load(path, environ={})


def credential_paths(app: AppSettings) -> Iterator[str]:
    for field in (
        "key_file",
        "certificate_file",
        "certificate_key_file",
        "certificate_password_file",
        "ca_file",
    ):
        value = getattr(app, field)
        if value is not None:
            yield value


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_pod_runs_unprivileged_with_exact_security_settings(value_set: str) -> None:
    manifests = render(value_set)
    spec = pod(manifests)

    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert connector_container(manifests)["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert spec["automountServiceAccountToken"] is False
    assert only(manifests, "ServiceAccount")["automountServiceAccountToken"] is False


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_only_tmp_is_writable(value_set: str) -> None:
    manifests = render(value_set)
    mounts = connector_container(manifests)["volumeMounts"]
    volumes = {volume["name"]: volume for volume in pod(manifests)["volumes"]}

    writable = [mount for mount in mounts if not mount.get("readOnly")]
    assert writable == [{"name": "tmp", "mountPath": "/tmp"}]
    assert volumes["tmp"] == {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_chart_creates_no_secret_and_sets_only_opentelemetry_variables(
    value_set: str,
) -> None:
    manifests = render(value_set)
    container = connector_container(manifests)

    assert "Secret" not in kinds(manifests)
    # The connector's settings are all in connector.toml; `otel` sets OTEL_* alone.
    names = [variable["name"] for variable in container.get("env", [])]
    assert [name for name in names if not name.startswith("OTEL_")] == []
    assert "envFrom" not in container


def test_otel_values_become_opentelemetrys_variables() -> None:
    assert "env" not in connector_container(render())
    assert connector_container(render("token-two-apps"))["env"] == [
        {
            "name": "OTEL_EXPORTER_OTLP_ENDPOINT",
            "value": "http://otel-collector.observability:4318",
        },
        {"name": "OTEL_SERVICE_NAME", "value": "apns-connector-prod"},
        {"name": "OTEL_TRACES_SAMPLER", "value": "parentbased_traceidratio"},
        {"name": "OTEL_TRACES_SAMPLER_ARG", "value": "0.05"},
        {
            "name": "OTEL_RESOURCE_ATTRIBUTES",
            "value": "deployment.environment=production,service.namespace=push",
        },
        {
            "name": "OTEL_EXPORTER_OTLP_HEADERS",
            "valueFrom": {
                "secretKeyRef": {"name": "otel-collector-auth", "key": "headers"}
            },
        },
    ]


def test_only_otel_variables_pass_through_extra_env() -> None:
    message = refusal(
        "default",
        "otel.extraEnv[0].name=APNS_CONNECTOR_DELIVERY__MAX_IN_FLIGHT",
        "otel.extraEnv[0].value=5",
    )

    assert "at '/otel/extraEnv/0/name'" in message


def test_token_credentials_are_read_only_files_of_the_existing_secret() -> None:
    manifests = render("token-two-apps")
    volumes = [volume for volume in pod(manifests)["volumes"] if "secret" in volume]
    mounts = connector_container(manifests)["volumeMounts"]

    assert volumes == [
        {
            "name": "credentials-0",
            "secret": {
                "secretName": "apns-token-keys",
                "defaultMode": 0o440,
                "items": [
                    {"key": "AuthKey_NEWS123456.p8", "path": "AuthKey_NEWS123456.p8"},
                    {"key": "AuthKey_CHAT123456.p8", "path": "AuthKey_CHAT123456.p8"},
                ],
            },
        }
    ]
    assert [mount for mount in mounts if mount["name"] == "credentials-0"] == [
        {
            "name": "credentials-0",
            "mountPath": f"{CREDENTIALS_DIR}/apns-token-keys",
            "readOnly": True,
        }
    ]


def test_an_app_with_its_own_secret_gets_its_own_mount() -> None:
    manifests = render("certificate")
    volumes = [volume for volume in pod(manifests)["volumes"] if "secret" in volume]
    mounts = connector_container(manifests)["volumeMounts"]

    assert [(v["name"], v["secret"]["secretName"]) for v in volumes] == [
        ("credentials-0", "apns-certificates"),
        ("credentials-1", "apns-staging-certificate"),
    ]
    assert [item["key"] for item in volumes[1]["secret"]["items"]] == [
        "tls.crt",
        "tls.key",
    ]
    assert {
        (mount["mountPath"], mount["readOnly"])
        for mount in mounts
        if mount["name"].startswith("credentials-")
    } == {
        (f"{CREDENTIALS_DIR}/apns-certificates", True),
        (f"{CREDENTIALS_DIR}/apns-staging-certificate", True),
    }


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_rendered_settings_are_accepted_by_the_connector(
    value_set: str, tmp_path: Path
) -> None:
    manifests = render(value_set)
    loaded = load_settings(manifests, tmp_path)
    container = connector_container(manifests)

    # Each credential file is a key projected by a Secret volume mounted at its folder.
    mounted: set[str] = set()
    secret_volumes = {
        volume["name"]: volume["secret"]
        for volume in pod(manifests)["volumes"]
        if "secret" in volume
    }
    for mount in container["volumeMounts"]:
        if mount["name"] in secret_volumes:
            for item in secret_volumes[mount["name"]]["items"]:
                mounted.add(f"{mount['mountPath']}/{item['path']}")
    for app in loaded.apps:
        for path in credential_paths(app):
            assert path in mounted, f"{app.bundle_id}: {path} is not mounted"

    assert container["args"][:3] == [
        "run",
        "--config",
        "/etc/apns-connector/connector.toml",
    ]


def test_token_apps_reach_the_settings(tmp_path: Path) -> None:
    loaded = load_settings(render("token-two-apps"), tmp_path)

    assert loaded.apps == [
        AppSettings(
            bundle_id="com.example.news",
            environment=Environment.PRODUCTION,
            auth=Auth.TOKEN,
            key_file=f"{CREDENTIALS_DIR}/apns-token-keys/AuthKey_NEWS123456.p8",
            key_id="NEWS123456",
            team_id="TEAM123456",
        ),
        AppSettings(
            bundle_id="com.example.chat",
            environment=Environment.SANDBOX,
            auth=Auth.TOKEN,
            key_file=f"{CREDENTIALS_DIR}/apns-token-keys/AuthKey_CHAT123456.p8",
            key_id="CHAT123456",
            team_id="TEAM123456",
        ),
    ]
    assert loaded.kafka.bootstrap == (
        "kafka-0.kafka.streaming.svc:9093,kafka-1.kafka.streaming.svc:9093"
    )
    assert loaded.kafka.group_id == "apns-connector-prod"
    assert loaded.delivery.max_in_flight == 2000
    assert loaded.delivery.drain_timeout_s == 25.5
    assert loaded.telemetry.http_host == "0.0.0.0"


def test_certificate_apps_reach_the_settings(tmp_path: Path) -> None:
    loaded = load_settings(render("certificate"), tmp_path)

    assert loaded.apps == [
        AppSettings(
            bundle_id="com.example.shop",
            auth=Auth.CERTIFICATE,
            certificate_file=f"{CREDENTIALS_DIR}/apns-certificates/shop.p12",
            certificate_password_file=(
                f"{CREDENTIALS_DIR}/apns-certificates/shop.p12.password"
            ),
            proxy_url="http://proxy.corp.example:3128",
        ),
        AppSettings(
            bundle_id="com.example.shop.staging",
            environment=Environment.SANDBOX,
            auth=Auth.CERTIFICATE,
            certificate_file=f"{CREDENTIALS_DIR}/apns-staging-certificate/tls.crt",
            certificate_key_file=f"{CREDENTIALS_DIR}/apns-staging-certificate/tls.key",
        ),
    ]


def test_default_values_are_the_connector_defaults(tmp_path: Path) -> None:
    loaded = load_settings(render(), tmp_path)

    # Only bootstrap differs: the connector's default is a local broker.
    assert loaded == settings.Settings(
        kafka=settings.KafkaSettings(bootstrap="kafka:9092"),
        telemetry=settings.TelemetrySettings(http_host="0.0.0.0"),
    )


def test_large_numbers_are_written_as_integers(tmp_path: Path) -> None:
    manifests = render("default", "delivery.maxInFlight=1000000")

    assert load_settings(manifests, tmp_path).delivery.max_in_flight == 1_000_000


def test_every_delivery_value_reaches_the_settings(tmp_path: Path) -> None:
    manifests = render(
        "default",
        "delivery.maxInFlight=250",
        "delivery.requestTimeoutSeconds=5",
        "delivery.maxAttempts=4",
        "delivery.retryBackoffSeconds=1",
        "delivery.retryBudgetSeconds=45",
        "delivery.maxConnectionsPerApp=8",
        "delivery.pingIntervalSeconds=120",
        "delivery.drainTimeoutSeconds=12",
    )

    assert load_settings(manifests, tmp_path).delivery == settings.DeliverySettings(
        max_in_flight=250,
        request_timeout_s=5.0,
        max_attempts=4,
        retry_backoff_s=1.0,
        retry_budget_s=45.0,
        max_connections_per_app=8,
        ping_interval_s=120.0,
        drain_timeout_s=12.0,
    )


def test_probes_and_service_follow_the_telemetry_port(tmp_path: Path) -> None:
    manifests = render("keda")
    container = connector_container(manifests)

    assert container["ports"] == [
        {"name": "http", "containerPort": 9100, "protocol": "TCP"}
    ]
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert only(manifests, "Service")["spec"]["ports"] == [
        {"name": "http", "port": 9100, "targetPort": "http", "protocol": "TCP"}
    ]
    assert load_settings(manifests, tmp_path).telemetry.http_port == 9100


@pytest.mark.parametrize(
    ("value_set", "grace_s"), [("default", 30), ("token-two-apps", 36), ("keda", 60)]
)
def test_grace_period_outlasts_the_drain(value_set: str, grace_s: int) -> None:
    assert pod(render(value_set))["terminationGracePeriodSeconds"] == grace_s


def test_grace_period_within_the_drain_is_refused() -> None:
    message = refusal("default", "terminationGracePeriodSeconds=20")

    assert (
        "terminationGracePeriodSeconds (20) must be longer than "
        "delivery.drainTimeoutSeconds (20)" in message
    )


def test_config_change_rolls_the_pods() -> None:
    def checksum(*sets: str) -> str:
        template = only(render("default", *sets), "Deployment")["spec"]["template"]
        annotation: str = template["metadata"]["annotations"]["checksum/config"]
        return annotation

    assert len(checksum()) == 64
    assert checksum() == checksum("replicaCount=5")
    assert checksum() != checksum("delivery.maxInFlight=500")


def test_both_autoscalers_are_refused() -> None:
    message = refusal("keda", "autoscaling.enabled=true", "autoscaling.maxReplicas=4")

    assert (
        "autoscaling.enabled and keda.enabled are both true: two autoscalers would "
        "fight over the Deployment's replicas; enable only one" in message
    )


@pytest.mark.parametrize("scaler", ["autoscaling", "keda"])
def test_more_replicas_than_partitions_are_refused(scaler: str) -> None:
    message = refusal(
        "default",
        f"{scaler}.enabled=true",
        "kafka.requestsTopicPartitions=4",
        f"{scaler}.maxReplicas=5",
    )

    assert (
        f"{scaler}.maxReplicas (5) is larger than kafka.requestsTopicPartitions (4)"
        in message
    )


def test_an_autoscaler_needs_the_partition_count() -> None:
    message = refusal("default", "keda.enabled=true")

    assert "keda.enabled is true but kafka.requestsTopicPartitions is 0" in message


def test_autoscaled_deployment_leaves_replicas_to_the_autoscaler() -> None:
    assert only(render("default"), "Deployment")["spec"]["replicas"] == 2
    assert "replicas" not in only(render("keda"), "Deployment")["spec"]
    assert "replicas" not in only(render("certificate"), "Deployment")["spec"]


def test_keda_scales_on_the_lag_of_the_requests_topic() -> None:
    manifests = render("keda")
    scaled = only(manifests, "ScaledObject")["spec"]

    assert "HorizontalPodAutoscaler" not in kinds(manifests)
    assert scaled["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "apns-apns-connector",
    }
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (1, 8)
    assert scaled["triggers"] == [
        {
            "type": "kafka",
            "metadata": {
                "bootstrapServers": "kafka.test.svc:9092",
                "consumerGroup": "apns-connector",
                "topic": "apns.requests",
                "lagThreshold": "500",
                "activationLagThreshold": "10",
                "allowIdleConsumers": "false",
            },
            "authenticationRef": {"name": "kafka-scaler-auth"},
        }
    ]


def test_network_policy_opens_apns_ports_and_each_app_port() -> None:
    policy = only(render("keda"), "NetworkPolicy")["spec"]
    apns_rule = policy["egress"][1]

    assert [port["port"] for port in apns_rule["ports"]] == [443, 2197, 8443]
    assert apns_rule["to"] == [{"ipBlock": {"cidr": "10.0.0.0/8"}}]
    assert policy["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]


@pytest.mark.parametrize(
    ("assignment", "unknown"),
    [
        ("replicaCout=3", "replicaCout"),
        ("kafka.bootstarp=kafka:9092", "bootstarp"),
        ("keda.maxReplica=3", "maxReplica"),
    ],
)
def test_misspelt_keys_are_refused(assignment: str, unknown: str) -> None:
    assert f"additional properties '{unknown}' not allowed" in refusal(
        "default", assignment
    )


def test_an_app_without_a_secret_is_refused() -> None:
    message = refusal(
        "default",
        "apps[0].bundleId=com.example.a",
        "apps[0].keyFile=a.p8",
        "apps[0].keyId=ABCDE12345",
        "apps[0].teamId=TEAM123456",
    )

    assert "apps: com.example.a names no Secret for its files" in message


def test_a_token_app_without_its_key_is_refused() -> None:
    message = refusal(
        "default",
        "credentials.existingSecret=keys",
        "apps[0].bundleId=com.example.a",
        "apps[0].keyId=ABCDE12345",
    )

    assert "at '/apps/0': missing properties 'keyFile', 'teamId'" in message


@pytest.mark.parametrize(
    "url", ["https://proxy:3128", "http://user:secret@proxy:3128", "proxy:3128"]
)
def test_a_proxy_url_the_connector_would_refuse_is_refused(url: str) -> None:
    message = refusal("certificate", f"apps[0].proxyUrl={url}")

    assert "at '/apps/0/proxyUrl'" in message


def test_token_fields_on_a_certificate_app_are_refused() -> None:
    message = refusal("certificate", "apps[0].keyId=ABCDE12345")

    assert "at '/apps/0/keyId': false schema" in message


def _objects(schema: Any, where: str = "$") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            yield where, schema
        for key, value in schema.items():
            yield from _objects(value, f"{where}.{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            yield from _objects(value, f"{where}[{index}]")


def test_schema_closes_every_object() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    passed_through = {
        # Kubernetes' own types (selectors, affinity terms), passed through as they are;
        # the strict validation of the rendered manifests in helm/check.sh checks them.
        "$.$defs.kubernetesObject",
        # What a parent chart shares with its subcharts: not ours to close.
        "$.properties.global",
    }

    for where, found in _objects(schema):
        if where in passed_through:
            continue
        closed = found.get("additionalProperties")
        # A map of labels or annotations: any key, string values.
        is_string_map = closed == {"type": "string"}
        assert closed is False or is_string_map, f"{where} accepts unknown keys"


def _leaves(
    values: dict[str, Any],
    node: dict[str, Any],
    schema: dict[str, Any],
    prefix: str = "",
) -> Iterator[str]:
    """Dotted paths of the values, down to the ones the schema does not open further."""
    for key, value in values.items():
        sub = node["properties"][key]
        while "$ref" in sub:
            sub = schema["$defs"][sub["$ref"].rpartition("/")[2]]
        if isinstance(value, dict) and value and "properties" in sub:
            yield from _leaves(value, sub, schema, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_readme_documents_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    readme = (CHART / "README.md").read_text()

    paths = list(_leaves(values, schema, schema))
    paths += [f"apps[].{field}" for field in schema["$defs"]["app"]["properties"]]
    undocumented = [path for path in paths if f"| `{path}` |" not in readme]
    assert undocumented == []


def test_dashboard_charts_the_connector_metrics() -> None:
    dashboard = json.loads((CHART / "dashboards" / "apns-connector.json").read_text())
    queries = " ".join(
        target["expr"] for panel in dashboard["panels"] for target in panel["targets"]
    )
    charted = set(re.findall(r"\bapns_connector_\w+", queries))

    assert charted == {
        "apns_connector_outcomes_total",
        "apns_connector_apns_request_duration_seconds_bucket",
        "apns_connector_process_duration_seconds_bucket",
        "apns_connector_in_flight",
        "apns_connector_connections_open",
        "apns_connector_token_mints_total",
        "apns_connector_retries_total",
        "apns_connector_consumer_lag",
    }
    # Every metric the connector exposes is charted, by the name it is scraped as.
    exposed = {
        family.name
        for family in metrics.registry.collect()
        if family.name.startswith("apns_connector_")
    }
    assert {re.sub(r"_(total|bucket)$", "", name) for name in charted} == exposed


def test_dashboard_is_shipped_as_it_is_in_the_chart() -> None:
    maps = [m for m in render("token-two-apps") if m["kind"] == "ConfigMap"]
    (dashboard_map,) = [m for m in maps if "apns-connector.json" in m["data"]]

    assert dashboard_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard_map["data"]["apns-connector.json"]) == json.loads(
        (CHART / "dashboards" / "apns-connector.json").read_text()
    )
    assert "grafana_dashboard" not in str(render("default"))
