"""The compose `monitoring` profile, checked statically (no Docker engine here): every metric a Grafana
panel queries exists in the code's metrics registry, every Prometheus scrape target is a compose service
that serves /metrics on that port, every such service is scraped, and Grafana's provisioning points at
the files compose mounts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import Metric

from shared.metrics import ServiceMetrics

ROOT = Path(__file__).parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
PROMETHEUS = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
DASHBOARD = json.loads((MONITORING / "grafana" / "dashboards" / "tradewind.json").read_text())
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_names() -> set[str]:
    """The series names /metrics can carry: each registered family with its type's suffixes."""
    families: list[Metric] = list(ServiceMetrics("any").registry.collect())
    return {f.name + suffix for f in families for suffix in SUFFIXES[f.type]}


def queried_names() -> dict[str, str]:
    """Every tradewind_* series a panel's query names -> the panel's title."""
    found: dict[str, str] = {}
    for panel in DASHBOARD["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"\btradewind_[a-z_]+", target["expr"]):
                found[name] = panel["title"]
    return found


def test_every_metric_a_panel_queries_exists_in_the_registry():
    queried, exported = queried_names(), exported_names()
    assert {name: panel for name, panel in queried.items() if name not in exported} == {}
    # the panels are all there
    for needed in (
        "tradewind_messages_in_total",
        "tradewind_messages_out_total",
        "tradewind_consumer_lag",
        "tradewind_processing_seconds_bucket",
        "tradewind_errors_total",
        "tradewind_reconnects_total",
        "tradewind_pnl",
        "tradewind_exposure",
    ):
        assert needed in queried, needed


def test_every_panel_uses_the_provisioned_prometheus():
    datasources = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    [source] = datasources["datasources"]
    assert source["url"] == "http://prometheus:9090" and "prometheus" in SERVICES
    for panel in DASHBOARD["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert all(t["datasource"]["uid"] == source["uid"] for t in panel["targets"]), panel["title"]


def test_every_scrape_target_is_a_compose_service_serving_metrics_and_every_one_is_scraped():
    targets = [
        target
        for job in PROMETHEUS["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
        if job.get("metrics_path", "/metrics") == "/metrics"
    ]
    serving = {
        name: s["environment"]["TRADEWIND_METRICS__PORT"]
        for name, s in SERVICES.items()
        if s.get("command", [""])[0] == "tradewind"
    }
    for target in targets:
        host, _, port = target.partition(":")
        assert host in serving, f"{target}: not a compose service that serves /metrics"
        assert port == serving[host], f"{target}: {host} serves /metrics on {serving[host]}"
    assert {t.partition(":")[0] for t in targets} == set(serving), "every service that serves /metrics is scraped"


def test_every_scraped_service_serves_metrics_from_its_process():
    """Each one's ``main`` runs under shared.runtime.service_context, which serves /metrics (the trainer too)."""
    for service in SERVICES.values():
        if service.get("command", [""])[0] != "tradewind":
            continue
        module = service["command"][1]
        source = (ROOT / "services" / module / "service.py").read_text()
        assert "service_context(" in source, f"services/{module}/service.py does not serve /metrics"


def test_the_monitoring_profile_mounts_what_it_provisions():
    prometheus, grafana = SERVICES["prometheus"], SERVICES["grafana"]
    assert prometheus["profiles"] == ["monitoring"] and grafana["profiles"] == ["monitoring"]
    assert "./deploy/monitoring/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if v.startswith("./"))
    assert mounts["./deploy/monitoring/grafana/provisioning"] == "/etc/grafana/provisioning"
    providers = yaml.safe_load((MONITORING / "grafana/provisioning/dashboards/tradewind.yml").read_text())
    path = providers["providers"][0]["options"]["path"]
    assert mounts["./deploy/monitoring/grafana/dashboards"] == path
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    for service in (prometheus, grafana):
        assert all(p.startswith("127.0.0.1:") for p in service["ports"]), "published on loopback only"


def test_the_risk_gauges_follow_the_risk_state():
    metrics = ServiceMetrics("risk")
    state = {
        "equity": 1010.0,
        "drawdown_intraday": 0.02,
        "drawdown_total": 0.05,
        "venues": {
            "binance": {
                "equity": 1010.0,
                "realized_pnl": 4.0,
                "unrealized_pnl": -1.5,
                "gross_exposure": 300.0,
                "net_exposure": -20.0,
            }
        },
    }
    metrics.record_risk(state)
    value = metrics.registry.get_sample_value
    assert value("tradewind_equity", {"service": "risk", "venue": "*"}) == 1010.0
    assert value("tradewind_pnl", {"service": "risk", "venue": "binance", "kind": "unrealized"}) == -1.5
    assert value("tradewind_exposure", {"service": "risk", "venue": "binance", "kind": "net"}) == -20.0
    assert value("tradewind_drawdown", {"service": "risk", "window": "total"}) == 0.05
    metrics.record_streams([{"name": "orders:intents", "length": 7, "groups": [{"name": "executor", "lag": 3}]}])
    assert value("tradewind_consumer_lag", {"service": "risk", "stream": "orders:intents", "group": "executor"}) == 3
