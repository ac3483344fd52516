"""Monitoring files: Prometheus's config and alert rules (checked and unit-tested by promtool), and
the provisioned Grafana datasource and dashboard.

promtool comes from Debian's `prometheus` package (scripts/ensure_services.sh installs it for
`make test`). The metric names below are the ones web, workers and beat export: the rules and the
dashboard may use no other, so a renamed metric breaks a test here instead of an alert in production.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
PROMTOOL = shutil.which("promtool")
# A developer without promtool gets a skip; CI (CI=true), where `make test` installs it, gets a failure.
needs_promtool = pytest.mark.skipif(PROMTOOL is None and not os.environ.get("CI"),
                                    reason="promtool missing: apt-get install prometheus "
                                    "(make test does it through scripts/ensure_services.sh)")

# The exported series (histograms by their _bucket/_sum/_count), agreed with web/, workers/ and beat.
METRICS = {
    "deepscreen_http_requests_total", "deepscreen_jobs_submitted_total", "deepscreen_jobs_finished_total",
    "deepscreen_model_load_seconds", "deepscreen_model_info", "deepscreen_predictions_total",
    "deepscreen_webhook_deliveries_total", "deepscreen_model_drift_psi", "deepscreen_worker_cuda_requested_but_cpu",
    "deepscreen_queue_depth", "deepscreen_oldest_queued_job_age_seconds",
} | {f"{name}_{part}" for name in ("deepscreen_http_request_seconds", "deepscreen_job_queue_seconds",
                                      "deepscreen_stage_seconds", "deepscreen_batch_size", "deepscreen_score")
     for part in ("bucket", "sum", "count")}
EXTERNAL = re.compile(r"^(nginx_|DCGM_FI_|up$)")
PROMQL_WORDS = {
    "sum", "by", "rate", "increase", "histogram_quantile", "max", "min", "avg", "and", "or", "unless", "on",
    "ignoring", "group_left", "absent", "vector", "le", "offset", "bool", "count",
}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL, "promtool is not installed: scripts/ensure_services.sh installs it (make services)"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


def _metric_names(expr: str) -> set[str]:
    """Identifiers in a PromQL expression that name series (not functions, labels or keywords)."""
    expr = re.sub(r'"[^"]*"', '""', expr)                      # label values
    expr = re.sub(r"\{[^}]*\}", "{}", expr)                    # matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)                     # ranges
    names = set(re.findall(r"\b[A-Za-z_:][A-Za-z0-9_:]*\b", expr))
    return {n for n in names if n not in PROMQL_WORDS and not re.fullmatch(r"\d.*", n)}


def _alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROM / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


# ---- Prometheus -------------------------------------------------------------------------------------

@needs_promtool
def test_promtool_checks_the_config_and_its_rule_file() -> None:
    result = _promtool("check", "config", str(PROM / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alerts.yml" in result.stdout and "SUCCESS" in result.stdout  # the rule file was found and read


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    result = _promtool("check", "rules", str(PROM / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_every_rule() -> None:
    tests = sorted((PROM / "tests").glob("*.yml"))
    assert tests
    result = _promtool("test", "rules", *map(str, tests))
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set()
    for path in tests:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    tested.add(check["alertname"])
    alerts = {rule["alert"] for rule in _alert_rules()}
    assert alerts - tested == set(), f"alerts never seen firing in a unit test: {sorted(alerts - tested)}"


@needs_promtool
def test_a_broken_rule_fails_its_unit_test(tmp_path: Path) -> None:
    """The unit tests can fail: raise one threshold and the suite must notice."""
    (tmp_path / "tests").mkdir()
    rules = (PROM / "alerts.yml").read_text().replace(
        "max by (queue) (deepscreen_oldest_queued_job_age_seconds) > 300",
        "max by (queue) (deepscreen_oldest_queued_job_age_seconds) > 3000")
    (tmp_path / "alerts.yml").write_text(rules)
    shutil.copy(PROM / "tests" / "alerts_test.yml", tmp_path / "tests")
    result = _promtool("test", "rules", str(tmp_path / "tests" / "alerts_test.yml"))
    assert result.returncode != 0 and "DeepscreenQueueBacklogAge" in result.stdout + result.stderr


def test_every_alert_has_summary_description_severity_and_a_runbook_that_exists() -> None:
    docs = (ROOT / "docs" / "operations.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", docs, re.M)}
    rules = _alert_rules()
    assert {r["alert"] for r in rules} >= {
        "DeepscreenHigh5xxRate", "DeepscreenHighLatencyP95", "DeepscreenQueueBacklogAge",
        "DeepscreenQueueHasNoConsumer", "DeepscreenNoWorkerUp", "DeepscreenWorkerOnCpuInsteadOfCuda",
        "DeepscreenJobFailuresByCode", "DeepscreenWebhookGaveUp", "DeepscreenModelScoreDrift"}
    for rule in rules:
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        path, _, anchor = annotations["runbook"].partition("#")
        assert path == "docs/operations.md" and anchor in anchors, f"{rule['alert']}: no heading for #{anchor}"


def test_rules_use_only_exported_metrics() -> None:
    for rule in _alert_rules():
        unknown = {n for n in _metric_names(rule["expr"]) if n not in METRICS and not EXTERNAL.match(n)}
        assert not unknown, f"{rule['alert']} uses {sorted(unknown)}"


def test_scrape_jobs_cover_every_process() -> None:
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"deepscreen-web", "deepscreen-worker", "deepscreen-beat", "nginx", "dcgm"} <= set(jobs)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]

    def targets(job: dict[str, Any]) -> list[tuple[str, int]]:
        found = [(n, sd["port"]) for sd in job.get("dns_sd_configs", []) for n in sd["names"]]
        for static in job.get("static_configs", []):
            found += [(t.split(":")[0], int(t.split(":")[1])) for t in static["targets"]]
        return found

    for name in ("deepscreen-web", "deepscreen-worker", "deepscreen-beat", "nginx", "dcgm"):
        for host, _ in targets(jobs[name]):
            assert host in compose, f"{name} scrapes {host}, which is not a compose service"
    assert ("web", 8000) in targets(jobs["deepscreen-web"])
    assert {("worker", 9808), ("worker-gpu", 9808)} <= set(targets(jobs["deepscreen-worker"]))
    assert ("beat", 9809) in targets(jobs["deepscreen-beat"])
    # The alerts name the worker job: keep them in step.
    assert 'up{job="deepscreen-worker"}' in (PROM / "alerts.yml").read_text()
    # Kubernetes pods announce the same ports.
    for manifest, port in (("worker.yaml", "9808"), ("worker-cpu.yaml", "9808"), ("beat.yaml", "9809")):
        doc = yaml.safe_load((ROOT / "deploy" / "k8s" / manifest).read_text())
        assert doc["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == port, manifest


# ---- Grafana --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads((GRAFANA / "dashboards" / "deepscreen.json").read_text())


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"]
            for target in panel.get("targets", [])]


def test_grafana_provisioning_points_at_the_compose_services(dashboard: dict[str, Any]) -> None:
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    ds = source["datasources"][0]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "deepscreen.yml").read_text())["providers"][0]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    mounts = dict(m.split(":")[:2] for m in compose["grafana"]["volumes"] if m.startswith("./"))
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    variable = next(v for v in dashboard["templating"]["list"] if v["type"] == "datasource")
    assert variable["current"]["value"] == ds["uid"]
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_has_the_panels_operators_need(dashboard: dict[str, Any]) -> None:
    exprs = " ".join(expr for _, expr in _queries(dashboard))
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for quantile in ("0.5", "0.95", "0.99"):
        latency = f"histogram_quantile({quantile}, sum by (endpoint, le) (rate(deepscreen_http_request_seconds_bucket"
        assert latency in exprs, quantile
    for needle in ("deepscreen_http_requests_total", 'status=~"5.."', "deepscreen_queue_depth",
                   "deepscreen_oldest_queued_job_age_seconds", "sum by (outcome) (rate(deepscreen_jobs_finished_total",
                   "sum by (model, stage, le) (rate(deepscreen_stage_seconds_bucket", "deepscreen_batch_size_bucket",
                   "DCGM_FI_DEV_GPU_UTIL", "deepscreen_score_bucket", "deepscreen_model_drift_psi", "nginx_"):
        assert needle in exprs, needle
    for word in ("request rate", "latency", "error rate", "queue depth", "oldest", "outcome", "stage",
                 "batch size", "gpu", "score distribution"):
        assert word in titles, word
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_queries_use_only_exported_metrics(dashboard: dict[str, Any]) -> None:
    for title, expr in _queries(dashboard):
        unknown = {n for n in _metric_names(expr) if n not in METRICS and not EXTERNAL.match(n)}
        assert not unknown, f"panel {title!r} uses {sorted(unknown)}"


@needs_promtool
def test_every_dashboard_query_is_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """Grafana's variables replaced by values, each query becomes a recording rule for promtool to parse."""
    values = {"$__rate_interval": "1m", "$__range": "6h", "$__interval": "15s", "$model": ".*", "$version": ".*"}
    rules = []
    for number, (_, expr) in enumerate(_queries(dashboard)):
        for variable, value in values.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{number}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
