"""`make bench` at a small N: every contender runs and the record is whole. No timing
is asserted; the figures are the benchmark's, not the tests'."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
KEYS = {
    "n",
    "pipeline_rate",
    "aioapns_rate",
    "h2load_rate",
    "ratio_vs_aioapns",
    "p50_ms",
    "p99_ms",
    "peak_rss_mb",
    "missing",
    "duplicates",
}


def test_a_small_bench_run_accounts_for_every_request(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # nginx and h2load come from Debian's packages the first time, as for make bench.
    subprocess.run(
        ["bash", "bench/install.sh"], cwd=REPOSITORY, check=True, timeout=600
    )

    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--n",
            "400",
            "--paced-s",
            "0.5",
            "--results",
            str(tmp_path),
        ],
        cwd=REPOSITORY,
        env={**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    assert KEYS <= results.keys()
    assert (results["n"], results["missing"], results["duplicates"]) == (400, 0, 0)
    assert results["delivered"] == 400
    assert set(results["latency"]) == {"0.25", "0.5", "0.75", "0.9"}
    assert all(run["missing"] == 0 for run in results["latency"].values())
    assert (tmp_path / "latest.png").stat().st_size > 0
    assert "connector, Kafka to Kafka" in run.stdout
