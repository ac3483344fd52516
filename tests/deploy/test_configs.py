"""Deployment files: docker-compose and the Kubernetes manifests (Dockerfiles: test_dockerfiles.py).

There is no Docker engine or cluster in CI, so each file is checked by the real validator that
exists offline (yamllint, the compose-spec JSON schema, the Kubernetes OpenAPI schemas) and then
for what the validators cannot know: every reference resolves, and the settings the files set
are settings the app reads.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
APP_ENV = {
    "DATABASE_URL", "BROKER_URL", "REDIS_URL", "STORAGE_URL", "S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY", "JWT_SECRET", "MODEL_REPOSITORY", "ONNX_PROVIDERS", "ONNX_INTRA_OP_THREADS",
    "MAX_UPLOAD_BYTES", "LOG_LEVEL",
}
# Read by boto3 and prometheus_client, not by Settings.
LIBRARY_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PROMETHEUS_MULTIPROC_DIR"}
APP_SERVICES = ("migrate", "web", "worker", "worker-gpu", "beat", "backup")
ONE_SHOTS = ("createbuckets", "migrate", "models")


def test_yaml_files_pass_yamllint() -> None:
    """yamllint catches what PyYAML forgives, such as a key given twice (the last one silently wins)."""
    pytest.importorskip("yamllint", reason="pip install yamllint (the test extra)")
    config = ("{extends: default, rules: {line-length: {max: 130}, document-start: disable, "
              "comments: {min-spaces-from-content: 1}}}")
    result = subprocess.run([sys.executable, "-m", "yamllint", "-s", "-d", config, "docker-compose.yml",
                             "deploy"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ---- docker-compose -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_matches_the_compose_spec_schema() -> None:
    pytest.importorskip("check_jsonschema", reason="pip install check-jsonschema (the test extra)")
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(ROOT / "docker-compose.yml")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_has_every_service_with_healthchecks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"postgres", "redis", "minio", "createbuckets", "migrate", "models", "web",
                             "worker", "worker-gpu", "beat", "nginx"}
    for name in ("postgres", "redis", "minio", "web", "worker", "worker-gpu", "nginx"):
        assert services[name]["healthcheck"]["test"], name
    for name in ONE_SHOTS:
        assert services[name]["restart"] == "no", name
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert "minio/mc" in services["createbuckets"]["image"]
    assert services["migrate"]["command"] == ["deepscreen", "db", "upgrade"]
    assert services["models"]["command"][:3] == ["deepscreen", "models", "build"]
    assert services["web"]["command"] == ["deepscreen", "web"]
    assert services["beat"]["command"] == ["deepscreen", "beat"]


def test_compose_app_services_get_every_setting(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert set(env) >= APP_ENV, f"{name} lacks {sorted(APP_ENV - set(env))}"
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["BROKER_URL"].startswith("redis://redis:6379/")
        assert env["STORAGE_URL"] == "s3://deepscreen-media"
        assert env["S3_ENDPOINT_URL"] == "http://minio:9000"
        assert env["JWT_SECRET"].startswith("${JWT_SECRET:?"), "the JWT secret must be required, not defaulted"
    assert services["web"]["environment"]["WEB_BIND"] == "0.0.0.0:8000"


def test_compose_sets_only_settings_the_app_reads(compose: dict[str, Any]) -> None:
    known = {name.upper() for name in Settings.model_fields} | LIBRARY_ENV
    for name in APP_SERVICES:
        unknown = set(compose["services"][name]["environment"]) - known
        assert not unknown, f"{name} sets variables no setting reads: {sorted(unknown)}"


def test_compose_upload_limit_agrees_with_the_app(compose: dict[str, Any]) -> None:
    default = Settings.model_fields["max_upload_bytes"].default
    value = compose["services"]["web"]["environment"]["MAX_UPLOAD_BYTES"]
    assert re.fullmatch(r"\$\{MAX_UPLOAD_BYTES:-(\d+)\}", value).group(1) == str(default)


def test_compose_dependencies_resolve(compose: dict[str, Any]) -> None:
    services = compose["services"]
    graph: dict[str, set[str]] = {}
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: use the long depends_on form with a condition"
        graph[name] = set(deps)
        for target, spec in deps.items():
            assert target in services, f"{name} depends on missing service {target}"
            condition = spec["condition"]
            if target in ONE_SHOTS:
                assert condition == "service_completed_successfully", (name, target)
            else:
                assert condition == "service_healthy", (name, target)
                assert "healthcheck" in services[target], f"{target} has no healthcheck to wait on"

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"dependency cycle: {' -> '.join((*path, node))}"
        for nxt in graph[node]:
            visit(nxt, (*path, node))

    for name in graph:
        visit(name, ())
    assert {"migrate", "createbuckets", "models", "redis"} <= graph["web"]
    assert {"migrate", "createbuckets", "models", "redis"} <= graph["worker"]


def test_compose_volumes_builds_and_mounts_exist(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    for name, svc in compose["services"].items():
        for mount in svc.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"
        build = svc.get("build")
        if build:
            dockerfile = ROOT / build["context"] / build["dockerfile"]
            assert dockerfile.is_file()
            if "target" in build:
                assert re.search(rf"^FROM \S+ AS {build['target']}$", dockerfile.read_text(), re.M), name
    nginx = compose["services"]["nginx"]
    assert "./nginx/deepscreen.conf:/etc/nginx/conf.d/default.conf:ro" in nginx["volumes"]
    assert nginx["ports"] == ["${HTTP_PORT:-8080}:80"]
    assert "models:/models" in compose["services"]["models"]["volumes"]


def test_compose_gpu_profile_reserves_an_nvidia_device(compose: dict[str, Any]) -> None:
    services = compose["services"]
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["build"]["target"] == "cuda"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert gpu["environment"]["ONNX_PROVIDERS"].startswith("CUDAExecutionProvider")
    assert services["worker"]["build"]["target"] == "cpu"
    assert "profiles" not in services["worker"], "the CPU worker runs by default"


# ---- Kubernetes -----------------------------------------------------------------------------------

@functools.cache
def _manifests() -> list[tuple[str, dict[str, Any]]]:
    """(file name, document) for every object; callers must not mutate the cached documents."""
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in _manifests() if doc["kind"] == kind}


def _pod_specs() -> list[tuple[str, dict[str, Any]]]:
    specs = [(doc["metadata"]["name"], doc["spec"]["template"]["spec"])
             for _, doc in _manifests() if doc["kind"] in ("Deployment", "Job")]
    return specs + [(doc["metadata"]["name"], doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
                    for _, doc in _manifests() if doc["kind"] == "CronJob"]


def test_k8s_every_manifest_has_kind_version_metadata() -> None:
    docs = _manifests()
    assert {doc["kind"] for _, doc in docs} >= {
        "Namespace", "ConfigMap", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler", "Job",
        "Ingress", "PodDisruptionBudget", "PersistentVolumeClaim"}
    for name, doc in docs:
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"], name
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "deepscreen", (name, doc["metadata"]["name"])


def test_k8s_manifests_pass_the_kubernetes_schema_strictly() -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (the test extra)")
    for name, doc in _manifests():
        try:
            kv.validate(doc, "1.31.0", strict=True)
        except kv.ValidationError as exc:
            pytest.fail(f"{name} {doc['kind']}/{doc['metadata']['name']}: {exc}")
    broken = _by_kind("Deployment")["deepscreen-web"]
    broken = yaml.safe_load(yaml.safe_dump(broken).replace("readinessProbe", "readynessProbe"))
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, "1.31.0", strict=True)


def test_k8s_containers_have_resources_and_run_unprivileged() -> None:
    for name, spec in _pod_specs():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for container in spec["containers"]:
            res = container["resources"]
            assert {"cpu", "memory"} <= set(res["requests"]), name
            assert "memory" in res["limits"], name
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], name


def test_k8s_web_probes_health_and_ready() -> None:
    web = _by_kind("Deployment")["deepscreen-web"]["spec"]["template"]["spec"]["containers"][0]
    assert web["livenessProbe"]["httpGet"]["path"] == "/health"
    assert web["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert web["command"] == ["deepscreen", "web"]
    env = _by_kind("ConfigMap")["deepscreen-config"]["data"]
    assert env["WEB_BIND"] == "0.0.0.0:8000" and int(web["ports"][0]["containerPort"]) == 8000
    assert int(env["MAX_UPLOAD_BYTES"]) == Settings.model_fields["max_upload_bytes"].default


def test_k8s_settings_are_all_provided_and_all_known() -> None:
    provided = set(_by_kind("ConfigMap")["deepscreen-config"]["data"])
    provided |= set(_by_kind("Secret")["deepscreen-secrets"]["stringData"])
    assert provided >= APP_ENV, sorted(APP_ENV - provided)
    known = {name.upper() for name in Settings.model_fields} | LIBRARY_ENV
    assert provided <= known, sorted(provided - known)


def test_k8s_worker_asks_for_a_gpu_and_beat_is_single() -> None:
    deployments = _by_kind("Deployment")
    worker = deployments["deepscreen-worker"]["spec"]["template"]["spec"]
    assert worker["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert worker["containers"][0]["command"][:2] == ["deepscreen", "worker"]
    text = (K8S / "worker.yaml").read_text()
    assert "# nodeSelector:" in text and "# tolerations:" in text
    assert worker["terminationGracePeriodSeconds"] > Settings.model_fields["task_time_limit"].default
    beat = deployments["deepscreen-beat"]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"
    migrate = _by_kind("Job")["deepscreen-migrate"]["spec"]["template"]["spec"]
    assert migrate["containers"][0]["command"] == ["deepscreen", "db", "upgrade"]
    assert migrate["restartPolicy"] in ("Never", "OnFailure")


def test_k8s_references_resolve() -> None:
    config_maps, secrets = set(_by_kind("ConfigMap")), set(_by_kind("Secret"))
    claims, deployments = set(_by_kind("PersistentVolumeClaim")), _by_kind("Deployment")
    for name, spec in _pod_specs():
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, name
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps, name
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, name
            mounted = {m["name"] for m in container.get("volumeMounts", [])}
            assert mounted <= {v["name"] for v in spec.get("volumes", [])}, name
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in deployments.values()]
    for d in deployments.values():
        assert d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
    for kind in ("Service", "PodDisruptionBudget"):
        for name, doc in _by_kind(kind).items():
            selector = doc["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            assert any(selector.items() <= labels.items() for labels in pod_labels), (kind, name)
    for name, hpa in _by_kind("HorizontalPodAutoscaler").items():
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments, name


def test_k8s_ingress_routes_the_api_but_not_metrics() -> None:
    services = _by_kind("Service")
    ingress = _by_kind("Ingress")["deepscreen"]
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    routed = {p["path"] for p in paths}
    assert {"/v1", "/status", "/health"} <= routed
    assert not any("/metrics".startswith(p) for p in routed if p != "/"), "/metrics must stay private"
    assert "/" not in routed
    for p in paths:
        backend = p["backend"]["service"]
        port_names = {port["name"] for port in services[backend["name"]]["spec"]["ports"]}
        assert backend["port"]["name"] in port_names
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "51m"


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == on_disk
    images = {i["name"] for i in kustomization["images"]}
    used = {c["image"].split(":")[0] for _, s in _pod_specs() for c in s["containers"]}
    assert used <= images


# ---- docker compose config, every profile ------------------------------------------------------------

PROFILES = {
    (): {"postgres", "redis", "minio", "createbuckets", "migrate", "models", "web", "worker", "beat", "nginx"},
    ("gpu",): {"worker-gpu", "dcgm-exporter"},
    ("monitoring",): {"prometheus", "grafana", "nginx-exporter"},
    ("backup",): {"backup"},
}


def _compose_command() -> list[str]:
    """Docker Compose v2 (the docker CLI plugin, or the same binary standalone), else Debian's v1."""
    plugin = Path.home() / ".docker" / "cli-plugins" / "docker-compose"
    candidates = [["docker", "compose"], [str(plugin)], ["docker-compose"]]
    for command in candidates:
        try:
            if subprocess.run([*command, "version"], capture_output=True, timeout=30).returncode == 0:
                return command
        except OSError:
            continue
    pytest.fail("no docker compose: scripts/ensure_services.sh installs it (make services)")


@pytest.mark.parametrize("profiles", [(), ("gpu",), ("monitoring",), ("backup",), ("gpu", "monitoring", "backup")],
                         ids=lambda p: "+".join(p) or "default")
def test_docker_compose_config_accepts_every_profile(profiles: tuple[str, ...]) -> None:
    """`docker compose config` (no engine needed) interpolates, merges and validates the file."""
    command = _compose_command()
    args = [*command, "-f", str(ROOT / "docker-compose.yml")]
    for profile in profiles:
        args += ["--profile", profile]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(Path.home()), "JWT_SECRET": "x" * 64}
    result = subprocess.run([*args, "config", "--format", "json"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    services = set(json.loads(result.stdout)["services"])
    expected = set(PROFILES[()]).union(*(PROFILES[(p,)] for p in profiles))
    assert services == expected
    # Without the JWT secret the file refuses to render (never a default secret).
    del env["JWT_SECRET"]
    refused = subprocess.run([*args, "config", "-q"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode != 0 and "JWT_SECRET" in refused.stderr


def test_compose_monitoring_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("prometheus", "grafana", "nginx-exporter"):
        assert services[name]["profiles"] == ["monitoring"], name
    assert services["dcgm-exporter"]["profiles"] == ["gpu"]
    for name in ("prometheus", "grafana"):
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"]), "loopback only"
        assert services[name]["healthcheck"]["test"], name
    prometheus_mounts = dict(m.split(":")[:2] for m in services["prometheus"]["volumes"] if m.startswith("./"))
    assert prometheus_mounts == {"./deploy/prometheus/prometheus.yml": "/etc/prometheus/prometheus.yml",
                                 "./deploy/prometheus/alerts.yml": "/etc/prometheus/alerts.yml"}
    # nginx-exporter reads stub_status on nginx's private port, which compose never publishes.
    uri = next(a for a in services["nginx-exporter"]["command"] if a.startswith("--nginx.scrape-uri="))
    assert uri == "--nginx.scrape-uri=http://nginx:8081/stub_status"
    conf = (ROOT / "nginx" / "deepscreen.conf").read_text()
    assert re.search(r"listen 8081;.*?location = /stub_status \{\s*stub_status;.*?deny all;", conf, re.S)
    assert not any("8081" in port for port in services["nginx"]["ports"])
    for image in (services[n]["image"] for n in ("prometheus", "grafana", "nginx-exporter", "dcgm-exporter")):
        assert re.search(r":-[^}]+:[\w.-]+\}$", image) and ":latest" not in image, image


def test_compose_backup_service(compose: dict[str, Any]) -> None:
    backup = compose["services"]["backup"]
    assert backup["profiles"] == ["backup"] and backup["build"]["target"] == "backup"
    script = backup["command"][0]
    assert "deepscreen backup create --out" in script and "--reuse /backups" in script
    assert "deepscreen backup prune /backups" in script
    assert "backups:/backups" in backup["volumes"]
