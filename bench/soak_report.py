"""The soak's figures from its raw outcomes, and the markdown table of them."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from bench.soak_faults import Cluster, Kill, Restart
from bench.soak_load import Outcome

__all__ = ["summarize", "table"]


def summarize(
    outcomes: list[Outcome],
    cluster: Cluster,
    kills: list[Kill],
    done: dict[str, int],
    seconds: float,
    concurrency: int,
    grace: float,
) -> dict[str, Any]:
    misrouted = [o for o in outcomes if _misrouted(o, cluster, grace)]
    wrong = {id(o) for o in misrouted}
    failed = [o for o in outcomes if o.cause is not None]
    in_restart = [o for o in failed if _during(o, cluster.restarts)]
    outside = [o for o in outcomes if not _during(o, cluster.restarts)]
    back = sorted(k.back_after_s for k in kills if k.back_after_s is not None)
    return {
        "duration_s": round(seconds, 1),
        "concurrency": concurrency,
        "requests": len(outcomes),
        "ok": len(outcomes) - len(failed) - len(misrouted),
        "failed": len(failed),
        "failed_by_cause": dict(Counter(str(o.cause) for o in failed).most_common()),
        "failed_during_restarts": len(in_restart),
        "misrouted": len(misrouted),
        "success_ratio": _ratio(len(outcomes) - len(failed) - len(misrouted), len(outcomes)),
        "success_ratio_outside_restarts": _ratio(
            sum(1 for o in outside if o.cause is None and id(o) not in wrong), len(outside)
        ),
        "requests_per_s": round(len(outcomes) / seconds, 1) if seconds else 0.0,
        "faults": {
            "worker_kills": len(kills),
            "stage_moves": done.get("move", 0),
            "config_changes": done.get("config", 0),
            "could_not_be_done": done.get("errors", 0),
            "restarts": [
                {"mode": r.mode, "down_s": r.down_s, "ready_after_s": r.ready_after_s}
                for r in cluster.restarts
            ],
        },
        "latency_ms": _latency(outcomes, kills),
        "kills_by_what": dict(Counter("+".join(sorted(k.roles)) for k in kills).most_common()),
        "kill_recovery_s": {
            "measured": len(back),
            "median": statistics.median(back) if back else None,
            "max": back[-1] if back else None,
            "not_back_in_60_s": sum(
                1 for k in kills if k.back_after_s is None and not k.overlapped_restart
            ),
            "all": back,
        },
    }


def _latency(outcomes: list[Outcome], kills: list[Kill]) -> dict[str, float | None]:
    """p50 and p99 of the answered requests, overall and of those sent while a killed worker
    was not back yet (its window: from the kill until its version served again, 5 s at least)."""
    windows = [(k.at, k.at + max(k.back_after_s or 0.0, 5.0)) for k in kills]
    took = sorted((o.answered - o.sent) * 1000 for o in outcomes if o.status == 200)
    faulted = sorted(
        (o.answered - o.sent) * 1000
        for o in outcomes
        if o.status == 200 and any(start <= o.sent <= end for start, end in windows)
    )
    return {
        "p50": _quantile(took, 0.5),
        "p99": _quantile(took, 0.99),
        "p99_during_faults": _quantile(faulted, 0.99),
    }


def _quantile(values: list[float], q: float) -> float | None:
    return round(values[min(int(len(values) * q), len(values) - 1)], 1) if values else None


def _misrouted(outcome: Outcome, cluster: Cluster, grace: float) -> bool:
    if outcome.status != 200:
        return False
    allowed = cluster.timeline.allowed(outcome.ref, outcome.sent - grace, outcome.answered)
    return outcome.version not in allowed


def _during(outcome: Outcome, restarts: list[Restart]) -> bool:
    return any(
        r.at <= outcome.answered and outcome.sent <= r.at + r.ready_after_s for r in restarts
    )


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def table(report: dict[str, Any]) -> str:
    faults = report["faults"]
    kills = report["kill_recovery_s"]
    restarts = ", ".join(
        f"{r['mode']}: down {r['down_s']} s, all READY after {r['ready_after_s']} s"
        for r in faults["restarts"]
    )
    causes = ", ".join(f"{k}: {v}" for k, v in report["failed_by_cause"].items()) or "none"
    rows = [
        ("duration", f"{report['duration_s']} s, {report['concurrency']} concurrent clients"),
        ("machine load (1 min average, at the end)", str(report.get("load_average_1m_end"))),
        ("requests sent", f"{report['requests']} ({report['requests_per_s']}/s)"),
        ("failed", f"{report['failed']} ({causes})"),
        ("failed during main-process restarts", str(report["failed_during_restarts"])),
        ("misrouted", str(report["misrouted"])),
        ("success ratio", _percent(report["success_ratio"])),
        ("success ratio outside restarts", _percent(report["success_ratio_outside_restarts"])),
        (
            "latency p50 / p99 / p99 during faults (ms)",
            " / ".join(str(report["latency_ms"][k]) for k in ("p50", "p99", "p99_during_faults")),
        ),
        ("worker kills (kill -9)", f"{faults['worker_kills']} ({_kinds(report)})"),
        (
            "killed worker replaced (every replica READY), median / max",
            f"{kills['median']} s / {kills['max']} s",
        ),
        ("killed worker not back within 60 s", str(kills["not_back_in_60_s"])),
        ("stage + alias moves", str(faults["stage_moves"])),
        ("update-cluster-config", str(faults["config_changes"])),
        ("faults that could not be done", str(faults.get("could_not_be_done", 0))),
        ("main-process restarts", restarts or "none"),
    ]
    lines = ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def _kinds(report: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in report.get("kills_by_what", {}).items())


def _percent(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio * 100:.3f}%"
