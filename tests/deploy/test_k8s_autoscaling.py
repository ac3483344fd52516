"""Kubernetes autoscaling, graceful shutdown and scheduled backups.

KEDA objects are validated by @kubernetes-models/keda (npm; its validators are generated from KEDA's
CRDs, installed by scripts/ensure_services.sh): types, required fields and enums. Those validators,
like the CRDs, accept unknown fields (the API server would prune them silently), so the test also
checks every key against the field names that package declares for each KEDA type (.d.ts files).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KEDA_DIR = K8S / "keda"
TOOLS = Path(os.environ.get("DEEPSCREEN_TOOLS", Path.home() / ".cache" / "deepscreen-tools"))
KEDA_MODELS = TOOLS / "keda" / "node_modules" / "@kubernetes-models" / "keda" / "keda.sh" / "v1alpha1"


def _docs(*paths: Path) -> list[dict[str, Any]]:
    return [doc for path in paths for doc in yaml.safe_load_all(path.read_text()) if doc]


def _all_k8s() -> list[dict[str, Any]]:
    return _docs(*sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"))


def _keda_docs() -> list[tuple[str, dict[str, Any]]]:
    paths = [KEDA_DIR / "scaledobjects.yaml", *sorted((KEDA_DIR / "alternatives").glob("*.yaml"))]
    return [(p.relative_to(K8S).as_posix(), d) for p in paths for d in _docs(p)]


def _scaled_objects() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _docs(KEDA_DIR / "scaledobjects.yaml") if d["kind"] == "ScaledObject"}


def _deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _all_k8s() if d["kind"] == "Deployment"}


def _worker_deployments() -> dict[str, dict[str, Any]]:
    return {name: d for name, d in _deployments().items()
            if d["spec"]["template"]["spec"]["containers"][0]["command"][:2] == ["deepscreen", "worker"]}


def _queues(deployment: dict[str, Any]) -> list[str]:
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    return command[command.index("--queues") + 1].split(",")


# ---- KEDA schema ---------------------------------------------------------------------------------------

def test_keda_objects_pass_the_validators_generated_from_keda_crds() -> None:
    node = shutil.which("node")
    if node is None or not KEDA_MODELS.is_dir():
        pytest.fail(f"KEDA validators missing under {TOOLS}: run scripts/ensure_services.sh (make services)")
    docs = [doc for _, doc in _keda_docs()]
    broken = json.loads(json.dumps(docs[1]))
    broken["spec"]["minReplicaCount"] = "one"
    broken["metadata"]["name"] = "broken-on-purpose"
    result = subprocess.run([node, str(ROOT / "tests" / "deploy" / "keda_validate.mjs"), str(TOOLS / "keda")],
                            input=json.dumps([*docs, broken]), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    verdicts = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(verdicts) == len(docs) + 1
    for verdict in verdicts[:-1]:
        assert verdict["ok"], verdict
    assert not verdicts[-1]["ok"] and "minReplicaCount" in verdicts[-1]["error"]  # the validator can fail


@cache
def _fields(type_name: str) -> set[str]:
    """Field names @kubernetes-models/keda declares for a KEDA type (its .d.ts interface)."""
    text = (KEDA_MODELS / f"{type_name}.d.ts").read_text()
    body = re.search(r"export interface I\w+ \{(.*?)\n\}", text, re.S)
    assert body, type_name
    return set(re.findall(r'^\s+"(\w+)"\??:', body.group(1), re.M))


def _check_keys(obj: dict[str, Any], type_name: str, where: str) -> None:
    unknown = set(obj) - _fields(type_name)
    assert not unknown, f"{where}: {sorted(unknown)} are not {type_name} fields"


def test_keda_objects_use_only_fields_keda_knows() -> None:
    if not KEDA_MODELS.is_dir():
        pytest.fail(f"KEDA validators missing under {TOOLS}: run scripts/ensure_services.sh (make services)")
    for where, doc in _keda_docs():
        spec = doc["spec"]
        if doc["kind"] == "ScaledObject":
            _check_keys(spec, "ScaledObjectSpec", where)
            _check_keys(spec["scaleTargetRef"], "ScaleTarget", where)
            if "advanced" in spec:
                _check_keys(spec["advanced"], "AdvancedConfig", where)
                _check_keys(spec["advanced"]["horizontalPodAutoscalerConfig"], "HorizontalPodAutoscalerConfig", where)
            for trigger in spec["triggers"]:
                _check_keys(trigger, "ScaleTriggers", where)
                if "authenticationRef" in trigger:
                    _check_keys(trigger["authenticationRef"], "AuthenticationRef", where)
        else:
            _check_keys(spec, "TriggerAuthenticationSpec", where)
            for ref in spec.get("secretTargetRef", []):
                _check_keys(ref, "AuthTargetRef", where)


# ---- what the scaling means ------------------------------------------------------------------------------

def test_every_worker_deployment_has_one_scaled_object_on_its_own_queue() -> None:
    scaled, workers = _scaled_objects(), _worker_deployments()
    assert set(workers) == {"deepscreen-worker", "deepscreen-worker-cpu"}
    targets = [so["spec"]["scaleTargetRef"]["name"] for so in scaled.values()]
    assert sorted(targets) == sorted(workers), "exactly one ScaledObject per worker Deployment"
    hpas = [d for d in _all_k8s() if d["kind"] == "HorizontalPodAutoscaler"]
    assert not {h["spec"]["scaleTargetRef"]["name"] for h in hpas} & set(workers), "KEDA owns the worker HPAs"
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas} == {"deepscreen-web"}  # web scales on CPU
    for so in scaled.values():
        deployment = workers[so["spec"]["scaleTargetRef"]["name"]]
        lists = {t["metadata"]["listName"] for t in so["spec"]["triggers"] if t["type"] == "redis"}
        # Reprocessing runs on spare capacity by design (it yields to live traffic), so its queue is consumed
        # but never a reason to add pods.
        assert lists == set(_queues(deployment)) - {"reprocess"}, (so["metadata"]["name"], lists)
        assert "replicas" not in deployment["spec"], "a fixed replica count fights the autoscaler on every apply"
        assert so["spec"]["minReplicaCount"] >= 1 or "inference" in lists
    gpu = workers["deepscreen-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert _queues(workers["deepscreen-worker"]) == ["inference", "reprocess"]
    assert scaled["deepscreen-worker-cpu"]["spec"]["minReplicaCount"] >= 1, "POST /v1/text needs a text consumer"
    assert "replicas" not in _deployments()["deepscreen-web"]["spec"], "the web HPA owns the count"


def test_keda_reads_the_broker_that_broker_url_names() -> None:
    secret = next(d for d in _docs(K8S / "secret.example.yaml") if d["metadata"]["name"] == "deepscreen-secrets")
    broker = urlparse(secret["stringData"]["BROKER_URL"])
    assert broker.scheme == "redis"
    auth = next(d for d in _docs(KEDA_DIR / "scaledobjects.yaml") if d["kind"] == "TriggerAuthentication")
    keda_secret = next(d for d in _docs(K8S / "secret.example.yaml")
                       if d["metadata"]["name"] == "deepscreen-keda-redis")
    assert {r["name"] for r in auth["spec"]["secretTargetRef"]} == {keda_secret["metadata"]["name"]}
    for so in _scaled_objects().values():
        for trigger in so["spec"]["triggers"]:
            meta = trigger["metadata"]
            assert meta["address"] == f"{broker.hostname}:{broker.port or 6379}"
            assert meta["databaseIndex"] == (broker.path.strip("/") or "0")
            assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
            assert int(meta["listLength"]) > 0


def test_keda_overlay_applies_the_base_and_the_scaled_objects() -> None:
    kustomization = yaml.safe_load((KEDA_DIR / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["..", "scaledobjects.yaml"]
    base = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert not any("keda" in r for r in base), "the base must apply on a cluster without KEDA"


def test_graceful_shutdown_outlasts_the_task_hard_limit() -> None:
    config = next(d for d in _all_k8s() if d["kind"] == "ConfigMap")["data"]
    hard_limit = int(config.get("TASK_TIME_LIMIT", Settings.model_fields["task_time_limit"].default))
    for name, deployment in _worker_deployments().items():
        spec = deployment["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] > hard_limit, name
        # Celery must be PID 1's own process so SIGTERM starts its warm shutdown: no shell wrapper.
        assert spec["containers"][0]["command"][0] == "deepscreen", name
        assert "preStop" not in spec["containers"][0].get("lifecycle", {}), name
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("worker", "worker-gpu"):
        assert int(compose[name]["stop_grace_period"].rstrip("s")) > hard_limit, name


# ---- scheduled backups -------------------------------------------------------------------------------------

def test_backup_cronjob_runs_the_backup_and_retention() -> None:
    docs = _docs(K8S / "backup-cronjob.yaml")
    cron = next(d for d in docs if d["kind"] == "CronJob")
    claim = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid" and len(spec["schedule"].split()) == 5
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"].startswith("deepscreen-backup:")
    script = container["command"][-1]
    # `$$(` reaches the shell as `$(` (Kubernetes expands `$(VAR)` in commands itself).
    assert re.search(r"deepscreen backup create --out \"/backups/\$\$\(date -u [^)]+\)\" --reuse /backups", script)
    assert re.search(r"&& deepscreen backup prune /backups --keep-last \d+ --keep-weekly \d+", script)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["backups"] == "/backups"
    assert volumes["backups"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert {s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s} == {"deepscreen-secrets"}
