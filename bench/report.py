"""The bench's table, ratios, chart and the results section of ``docs/performance.md``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

__all__ = ["chart", "ratios", "table", "update_docs"]

BEGIN = "<!-- bench:results:begin -->"
END = "<!-- bench:results:end -->"


def _by(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["scenario"], r["target"]): r for r in rows}


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per scenario: regserve/mlflow req/s, mlflow p99 / regserve p99, regserve/ceiling req/s."""
    found = _by(rows)
    out = []
    for scenario in dict.fromkeys(r["scenario"] for r in rows):
        ours, theirs, top = (found.get((scenario, t)) for t in ("regserve", "mlflow", "ceiling"))
        if not (ours and theirs and top):
            continue
        out.append(
            {
                "scenario": scenario,
                "rps_vs_mlflow": round(ours["rps"] / theirs["rps"], 2) if theirs["rps"] else None,
                "p99_mlflow_over_ours": round(theirs["p99_ms"] / ours["p99_ms"], 2)
                if ours["p99_ms"]
                else None,
                "p50_mlflow_over_ours": round(theirs["p50_ms"] / ours["p50_ms"], 2)
                if ours["p50_ms"]
                else None,
                "share_of_ceiling": round(ours["rps"] / top["rps"], 3) if top["rps"] else None,
            }
        )
    return out


def capture_cost(rows: list[dict[str, Any]], off: str, on: str) -> dict[str, Any] | None:
    """regserve's req/s and p99 with the inference table on against the same load with it
    off (None when either was not run)."""
    found = _by(rows)
    base, captured = found.get((off, "regserve")), found.get((on, "regserve"))
    if not (base and captured and base["rps"]):
        return None
    return {
        "rps_off": base["rps"],
        "rps_on": captured["rps"],
        "rps_change": round(captured["rps"] / base["rps"] - 1, 3),
        "p99_off_ms": base["p99_ms"],
        "p99_on_ms": captured["p99_ms"],
    }


def table(result: dict[str, Any]) -> str:
    """Markdown: the measurements, the ratios, and memory."""
    lines = [
        "| scenario | server | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in result["results"]:
        errors = r["non2xx"] + r["socket_errors"]
        lines.append(
            f"| {r['scenario']} | {r['target']} | {r['rps']:.0f} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {errors} |"
        )
    lines += [
        "",
        "| scenario | regserve / mlflow req/s | mlflow p99 / regserve p99 "
        "| mlflow p50 / regserve p50 | regserve / ceiling req/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for q in result["ratios"]:
        lines.append(
            f"| {q['scenario']} | {q['rps_vs_mlflow']}x | {q['p99_mlflow_over_ours']}x "
            f"| {q['p50_mlflow_over_ours']}x | {q['share_of_ceiling']:.0%} |"
        )
    cost = result.get("capture_cost")
    if cost:
        lines += [
            "",
            f"Inference table on (every request captured) at c=32: {cost['rps_on']:.0f} req/s "
            f"against {cost['rps_off']:.0f} off ({cost['rps_change']:+.1%}); p99 "
            f"{cost['p99_on_ms']:.2f} ms against {cost['p99_off_ms']:.2f} ms.",
        ]
    memory = result["memory"]
    ours, theirs = memory["regserve_two_versions"], memory["mlflow_one_version"]
    lines += [
        "",
        "| RSS, MiB (two versions served) | |",
        "|---|---:|",
        f"| regserve main process (gateway, controller, hosted MLflow registry) "
        f"| {ours['main_mb']:.0f} |",
        f"| regserve worker, per version (with its share of the template) "
        f"| {ours['per_worker_mb']:.0f} |",
        f"| regserve total ({ours['workers']} workers, {ours.get('templates', 0)} templates; "
        f"RSS counts their shared pages in each) | {ours['total_mb']:.0f} |",
        f"| regserve total, PSS (shared pages counted once) | {ours.get('total_pss_mb', 0):.0f} |",
        f"| mlflow models serve, per version: its uvicorn | {theirs['serving_mb']:.0f} |",
        f"| mlflow models serve, per version: uvicorn + `mlflow` launcher "
        f"| {theirs['total_mb']:.0f} |",
        f"| bare ASGI ceiling | {memory['ceiling_mb']:.0f} |",
    ]
    if result.get("memory_scaling"):
        lines += [
            "",
            "| versions served | regserve main MiB | workers MiB | per worker MiB | total MiB |",
            "|---:|---:|---:|---:|---:|",
        ]
        for m in result["memory_scaling"]:
            lines.append(
                f"| {m['versions']} | {m['main_mb']:.0f} | {m['workers_mb']:.0f} "
                f"| {m['per_worker_mb']:.0f} | {m['total_mb']:.0f} |"
            )
    return "\n".join(lines)


def chart(result: dict[str, Any], path: Path) -> None:
    """Requests/s and p99 per scenario, one bar per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["results"]
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    found = _by(rows)
    targets = ["mlflow", "regserve", "ceiling"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    width = 0.27
    for i, target in enumerate(targets):
        xs = [k + (i - 1) * width for k in range(len(scenarios))]
        rps = [found.get((s, target), {}).get("rps", 0) for s in scenarios]
        p99 = [found.get((s, target), {}).get("p99_ms", 0) for s in scenarios]
        top.bar(xs, rps, width, label=target)
        bottom.bar(xs, p99, width, label=target)
    top.set_ylabel("requests/s (log)")
    top.set_yscale("log")
    top.set_title(f"regserve vs mlflow models serve vs bare ASGI ({result['when']})")
    top.legend()
    bottom.set_ylabel("p99 latency, ms (log)")
    bottom.set_yscale("log")
    bottom.set_xticks(range(len(scenarios)), scenarios, rotation=20, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def update_docs(result: dict[str, Any], path: Path) -> None:
    """Replace the generated results section of docs/performance.md."""
    text = path.read_text() if path.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    load = ", ".join(f"{x:.2f}" for x in result["machine"]["load_average_at_start"])
    section = (
        f"{BEGIN}\n_Generated by `make bench` on {result['when']}: {result['machine']['cpus']} "
        f"CPUs, load average at start {load}, {result['seconds_per_scenario']:g} s per "
        f"scenario._\n\n{table(result)}\n\n![bench chart](../bench/results/bench.png)\n{END}"
    )
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    path.write_text(pattern.sub(lambda _: section, text))
