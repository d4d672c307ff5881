"""What a benchmark run found: the printed table, the JSON record and the picture."""

from __future__ import annotations

import itertools
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any


def progress(label: str, done: int, total: int, extra: str = "") -> None:
    width = 30
    filled = int(width * done / total) if total else width
    bar = "#" * filled + "." * (width - filled)
    print(
        f"\r{label:<22} [{bar}] {done:>7}/{total} {extra:<24}", end="", file=sys.stderr
    )
    if done >= total:
        print(file=sys.stderr)


def percentile(sorted_values: list[float], percent: float) -> float:
    """The nearest-rank percentile of values sorted ascending; NaN for none."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(percent / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarise(
    *,
    n: int,
    in_flight: int,
    pinned: bool,
    h2load: dict[str, Any],
    aioapns: dict[str, Any],
    ours: dict[str, Any],
    httpx_request: dict[str, Any],
    httpx_client: dict[str, Any],
    pipeline: dict[str, Any],
) -> dict[str, Any]:
    half = pipeline["latency"].get("0.5", {})
    return {
        "n": n,
        "in_flight": in_flight,
        "pinned": pinned,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()} {platform.python_version()}",
        "pipeline_rate": round(pipeline["rate"], 1),
        "aioapns_rate": round(aioapns["rate"], 1),
        "h2load_rate": round(h2load["rate"], 1),
        "http_layer_rate": round(ours["rate"], 1),
        "httpx_request_rate": round(httpx_request["rate"], 1),
        "httpx_client_rate": round(httpx_client["rate"], 1),
        "ratio_vs_aioapns": round(pipeline["rate"] / aioapns["rate"], 3),
        "ratio_vs_h2load": round(pipeline["rate"] / h2load["rate"], 4),
        "http_layer_ratio_vs_aioapns": round(ours["rate"] / aioapns["rate"], 3),
        "cpu_per_request_ms": {
            "pipeline": round(pipeline["cpu_per_request_ms"], 4),
            "aioapns": round(aioapns["cpu_per_request_ms"], 4),
            "http_layer": round(ours["cpu_per_request_ms"], 4),
            "httpx_request": round(httpx_request["cpu_per_request_ms"], 4),
            "httpx_client": round(httpx_client["cpu_per_request_ms"], 4),
        },
        "p50_ms": round(half.get("p50_ms", math.nan), 1),
        "p99_ms": round(half.get("p99_ms", math.nan), 1),
        "latency": {
            fraction: {k: round(v, 1) for k, v in run.items() if k != "points"}
            for fraction, run in pipeline["latency"].items()
        },
        "peak_rss_mb": round(pipeline["peak_rss_mb"], 1),
        "missing": pipeline["missing"],
        "duplicates": pipeline["duplicates"],
        "delivered": pipeline["delivered"],
    }


def table(results: dict[str, Any]) -> str:
    cpu = results["cpu_per_request_ms"]
    aioapns, h2load = results["aioapns_rate"], results["h2load_rate"]
    rows = [
        ("h2load (C, the wire's limit)", h2load, None),
        ("aioapns, from memory", aioapns, cpu["aioapns"]),
        ("our HTTP layer, from memory", results["http_layer_rate"], cpu["http_layer"]),
        (
            "httpx.Request to our transport",
            results["httpx_request_rate"],
            cpu["httpx_request"],
        ),
        (
            "httpx AsyncClient.post, ours",
            results["httpx_client_rate"],
            cpu["httpx_client"],
        ),
        ("connector, Kafka to Kafka", results["pipeline_rate"], cpu["pipeline"]),
    ]
    header = (
        f"{'sender':<32} {'req/s':>8} {'CPU ms/req':>10} {'vs aioapns':>10} "
        f"{'vs h2load':>9}"
    )
    lines = [header]
    for name, rate, cpu_ms in rows:
        cpu_text = f"{cpu_ms:.3f}" if cpu_ms is not None else "-"
        lines.append(
            f"{name:<32} {rate:>8.0f} {cpu_text:>10} {rate / aioapns:>9.2f}x "
            f"{rate / h2load:>8.3f}x"
        )
    lines.append("")
    lines.append(
        f"{'connector latency, paced at':<32} {'req/s':>8} {'p50 ms':>10} "
        f"{'p99 ms':>10}"
    )
    for fraction, run in results["latency"].items():
        lines.append(
            f"{f'{float(fraction):.0%} of its maximum':<32} {run['rate']:>8.0f} "
            f"{run['p50_ms']:>10.1f} {run['p99_ms']:>10.1f}"
        )
    lines.append("")
    lines.append(
        f"n={results['n']} in_flight={results['in_flight']} "
        f"peak_rss_mb={results['peak_rss_mb']} missing={results['missing']} "
        f"duplicates={results['duplicates']} "
        f"ratio_vs_aioapns={results['ratio_vs_aioapns']}"
    )
    return "\n".join(lines)


def plot(pipeline: dict[str, Any], path: Path) -> None:
    """Outcomes per second over the run at full speed, and latency in paced runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rate_axis, latency_axis) = plt.subplots(2, 1, figsize=(9, 7))
    samples = pipeline["samples"]
    start = samples[0][0]
    times, rates = [], []
    for before, after in itertools.pairwise(samples):
        if after[0] > before[0]:
            times.append(after[0] - start)
            rates.append((after[1] - before[1]) / (after[0] - before[0]))
    rate_axis.plot(times, rates)
    rate_axis.set_title("connector at full speed: outcomes written per second")
    rate_axis.set_xlabel("seconds")
    rate_axis.set_ylabel("outcomes/s")

    for fraction, run in pipeline["latency"].items():
        points = run["points"]
        latency_axis.plot(
            [at for at, _ in points],
            [ms for _, ms in points],
            ".",
            markersize=1,
            label=f"{float(fraction):.0%} ({run['rate']:.0f}/s)",
        )
    latency_axis.set_title("paced runs: scheduled send to outcome written")
    latency_axis.set_xlabel("seconds into the paced run")
    latency_axis.set_ylabel("ms")
    latency_axis.set_yscale("log")
    latency_axis.legend(markerscale=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
