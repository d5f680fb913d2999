"""The Grafana dashboard and docs/monitoring.md name only metrics regserve exports, and all."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from regserve.gateway.worker_stats import WorkerStats
from regserve.metrics import CaptureMetrics, ControlMetrics, TrafficRecorder
from regserve.router import Router

DOCS = Path(__file__).resolve().parents[1] / "docs"
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Family name -> the sample names Prometheus sees for it."""
    recorder = TrafficRecorder()
    registry: CollectorRegistry = recorder.registry
    ControlMetrics(registry).watch_memory(lambda: None, budget_bytes=1)
    CaptureMetrics(registry)
    WorkerStats(Router(), registry)
    return {
        family.name: {family.name + suffix for suffix in _SUFFIXES[family.type]}
        for family in registry.collect()
    }


def _exprs() -> list[str]:
    dashboard = json.loads((DOCS / "grafana" / "regserve-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return exprs


def test_every_dashboard_query_names_exported_metrics(exported: dict[str, set[str]]) -> None:
    samples = set().union(*exported.values())
    exprs = _exprs()
    assert len(exprs) >= 10
    for expr in exprs:
        names = set(re.findall(r"\bregserve_\w+", expr))
        assert names, expr
        assert names <= samples, (expr, names - samples)


def test_the_dashboard_shows_every_metric(exported: dict[str, set[str]]) -> None:
    text = " ".join(_exprs())
    missing = [name for name in exported if not re.search(rf"\b{name}(_\w+)?\b", text)]
    assert missing == []


def test_monitoring_md_describes_every_metric(exported: dict[str, set[str]]) -> None:
    text = (DOCS / "monitoring.md").read_text()
    samples = set().union(*exported.values())
    assert [name for name in exported if f"`{name}" not in text] == []
    mentioned = set(re.findall(r"\bregserve_\w+", text))
    assert mentioned <= samples | set(exported), mentioned - samples


_EVENT_TYPE = re.compile(
    r'"((?:SERVING|CLUSTER|VERSION|ENV|REPLICAS?|WORKER|TEMPLATE|WARM|REGISTRY|PERMISSIONS'
    r'|LEADER|TOKEN|PRINCIPAL|TRAFFIC|INFERENCE)_[A-Z_]+)"'
)
_NOT_EVENTS = {
    "INFERENCE_READ_PATH",
    "INFERENCE_SAMPLE_TAG",
    "INFERENCE_TABLE_TAG",
    "PERMISSIONS_PREFIX",
    "REPLICAS_TAG",
    "TEMPLATE_PROTOCOL",
    "WARM_PROTOCOL",
    "TOKEN_EVENTS_MODEL",
    "TOKEN_ID",
    "TOKEN_PREFIX",
    "TRAFFIC_PATH",
}
"""Constants' names and values (and the CLI's ``TOKEN_ID`` metavar) that share the events'
prefixes."""


def _source_event_types() -> set[str]:
    found: set[str] = set()
    for path in (DOCS.parent / "src" / "regserve").rglob("*.py"):
        if path.name == "states.py":  # state names, not event types
            continue
        found |= set(_EVENT_TYPE.findall(path.read_text()))
    return {t for t in found if t not in _NOT_EVENTS and not t.startswith("VERSION_STATE_")}


def test_monitoring_md_lists_every_event_type() -> None:
    """Every event type regserve records is in the events table, and nothing else is."""
    emitted = _source_event_types()
    assert {"WORKER_CRASHED", "TEMPLATE_DISABLED", "WARM_PROCESS_DISABLED"} <= emitted
    text = (DOCS / "monitoring.md").read_text()
    table = text[text.index("## Events") : text.index("## Registry webhooks")]
    listed = set(re.findall(r"`([A-Z]+(?:_[A-Z]+)+)`", table))
    assert emitted - listed == set(), "events missing from docs/monitoring.md"
    assert listed - emitted == set(), "docs/monitoring.md lists events nothing records"
