"""The benchmark run: every contender against the same stand-in, in one run.

The run's own process, Kafka and nginx stay on the second core; each sender in turn
(h2load, aioapns, our HTTP layer, the connector) runs alone on the first. The
connector's run starts with all N requests already in its input topic; its rate is N
over the time from the first request consumed to the last outcome written. Latency
comes from separate runs paced at fractions of that rate, measured from each
request's scheduled send time to its outcome's append time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import report
from bench.pipeline import pipeline_run
from bench.report import progress
from bench.senders import BUNDLE_ID, aps, device_token
from bench.standin import Standin
from connector import stack
from connector.events import encoder
from connector.kafka.broker import LocalBroker, external_bootstrap


class Cores:
    """taskset prefixes: the sender on core 0, everything else on core 1."""

    def __init__(self) -> None:
        self.pinned = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
        if self.pinned:
            os.sched_setaffinity(0, {1})

    def sender(self) -> list[str]:
        return ["taskset", "-c", "0"] if self.pinned else []

    def rest(self) -> list[str]:
        return ["taskset", "-c", "1"] if self.pinned else []


# The senders fed from memory


def run_sender(
    cores: Cores,
    kind: str,
    port: int,
    credentials: stack.Credentials,
    n: int,
    in_flight: int,
) -> dict[str, Any]:
    progress(kind, 0, 1, "running")
    result = subprocess.run(
        [
            *cores.sender(),
            sys.executable,
            "-m",
            "bench.senders",
            kind,
            "--port",
            str(port),
            "--cafile",
            str(credentials.cert_file),
            "--key-file",
            str(credentials.key_file),
            "--n",
            str(n),
            "--in-flight",
            str(in_flight),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{result.stdout}\n{result.stderr[-3000:]}")
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    progress(kind, 1, 1, f"{answer['rate']:.0f}/s")
    return answer


def run_h2load(
    cores: Cores, port: int, state: Path, n: int, in_flight: int
) -> dict[str, Any]:
    body = state / "h2load-body.json"
    body.write_bytes(encoder.encode({"aps": aps(0)}))
    progress("h2load", 0, 1, "running")
    result = subprocess.run(
        [
            *cores.sender(),
            "h2load",
            "-n",
            str(n),
            "-c",
            "1",
            "-m",
            str(in_flight),
            "-d",
            str(body),
            "-H",
            f"apns-topic: {BUNDLE_ID}",
            "-H",
            "apns-push-type: alert",
            f"https://127.0.0.1:{port}/3/device/{device_token('h2load', 0)}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", result.stdout)
    done = re.search(
        r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", result.stdout
    )
    if result.returncode != 0 or rate is None or done is None:
        raise RuntimeError(f"h2load failed:\n{result.stdout}\n{result.stderr}")
    progress("h2load", 1, 1, f"{float(rate.group(1)):.0f}/s")
    return {"rate": float(rate.group(1)), "ok": int(done.group(1))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--in-flight", type=int, default=1000)
    parser.add_argument("--paced-s", type=float, default=8.0, help="per paced run")
    parser.add_argument("--results", type=Path, default=Path("bench/results"))
    parser.add_argument("--keep", action="store_true", help="keep the state folder")
    args = parser.parse_args(argv)
    n, in_flight = args.n, args.in_flight
    cores = Cores()

    state = Path(tempfile.mkdtemp(prefix="apns-bench-"))
    with ExitStack() as cleanup:
        if not args.keep:
            cleanup.callback(shutil.rmtree, state, True)
        bootstrap = external_bootstrap()
        if bootstrap is None:
            progress("starting Kafka", 0, 1)
            broker = cleanup.enter_context(LocalBroker(state / "kafka"))
            bootstrap = broker.bootstrap
            progress("starting Kafka", 1, 1)
        credentials = stack.Credentials(state / "credentials")
        standin = Standin(state / "nginx", cpu_prefix=cores.rest(), tls=credentials.tls)
        port = standin.start()
        cleanup.callback(standin.stop)

        h2load = run_h2load(cores, port, state, n, in_flight)
        aioapns = run_sender(cores, "aioapns", port, credentials, n, in_flight)
        ours = run_sender(cores, "connector", port, credentials, n, in_flight)
        small = min(n, 20_000)
        httpx_request = run_sender(
            cores, "httpx-request", port, credentials, small, in_flight
        )
        httpx_client = run_sender(
            cores, "httpx-client", port, credentials, small, in_flight
        )
        pipeline = asyncio.run(
            pipeline_run(
                cores.sender(),
                bootstrap,
                state,
                credentials,
                port,
                n,
                in_flight,
                args.paced_s,
            )
        )

    results = report.summarise(
        n=n,
        in_flight=in_flight,
        pinned=cores.pinned,
        h2load=h2load,
        aioapns=aioapns,
        ours=ours,
        httpx_request=httpx_request,
        httpx_client=httpx_client,
        pipeline=pipeline,
    )
    print(report.table(results))
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    report.plot(pipeline, args.results / "latest.png")
    print(f"wrote {args.results / 'latest.json'} and {args.results / 'latest.png'}")
    return 0 if results["missing"] == 0 and results["duplicates"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
