"""The APNs stand-in for throughput: Debian's nginx, HTTP/2 over TLS, configured here.

nginx answers every push 200 with the request's apns-id, after reading its body, on a
self-signed P-256 certificate made for the run. It runs as a child of the benchmark,
with its state (pid, logs, temporary folders) in the run's own folder.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from connector.simulator.credentials import TlsIdentity, write_tls_identity

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Standin:
    """nginx listening on 127.0.0.1:`port` until `stop()`."""

    def __init__(
        self, state: Path, *, cpu_prefix: list[str], tls: TlsIdentity | None = None
    ) -> None:
        self.state = state
        self.port = 0
        self.tls = tls
        self._cpu_prefix = cpu_prefix
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10) -> int:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.state.mkdir(parents=True, exist_ok=True)
        if self.tls is None:
            self.tls = write_tls_identity(
                self.state / "tls", ("127.0.0.1", "localhost")
            )
        self.port = free_port()
        config = (HERE / "nginx.conf").read_text()
        for name, value in {
            "state": str(self.state),
            "bench": str(HERE),
            "port": str(self.port),
            "cert": str(self.tls.cert_path),
            "key": str(self.tls.key_path),
        }.items():
            config = config.replace("{" + name + "}", value)
        conf_path = self.state / "nginx.conf"
        conf_path.write_text(config)

        log = (self.state / "nginx.out").open("ab")
        self._process = subprocess.Popen(
            [
                *self._cpu_prefix,
                nginx,
                "-p",
                str(self.state),
                "-c",
                str(conf_path),
                "-e",
                str(self.state / "error.log"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self.port
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not listen within {timeout_s} s")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def log_tail(self) -> str:
        text = ""
        for name in ("nginx.out", "error.log"):
            path = self.state / name
            if path.exists():
                text += path.read_text(errors="replace")[-2000:]
        return text
