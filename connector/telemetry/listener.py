"""The HTTP listener of `/livez`, `/readyz` and `/metrics`.

It runs on the connector's event loop, so `/livez` answering is itself the proof that
the loop is not stuck. aiohttp serves it: a maintained server that lives inside our
loop without taking over its signals or logging, for which `prometheus_client` ships
the `/metrics` handler (it renders the text or OpenMetrics format the scraper asks
for). Rendering the metrics is a few hundred lines of text, quick enough to do on the
loop; nothing here blocks.
"""

from __future__ import annotations

import logging
import os

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.registry import CollectorRegistry

from connector.errors import ConfigurationError
from connector.settings import TelemetrySettings
from connector.telemetry.health import Readiness

log = logging.getLogger(__name__)


class Listener:
    """Serves the endpoints on `telemetry.http_host:http_port` once started."""

    def __init__(
        self,
        settings: TelemetrySettings,
        readiness: Readiness,
        registry: CollectorRegistry,
    ) -> None:
        self._settings = settings
        self._readiness = readiness
        app = web.Application()
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", make_aiohttp_handler(registry))
        # No access log: the kubelet's probes would fill it.
        self._runner = web.AppRunner(app, access_log=None)
        self._started = False
        self.port: int | None = None

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        host, port = self._settings.http_host, self._settings.http_port
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError as exc:
            # asyncio's message repeats the address; the error number says it all.
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ConfigurationError(
                f"telemetry.http_port: cannot listen on {host}:{port}: {why}"
            ) from exc

        # With port 0 the system chose one; the log line says which.
        self.port = self._runner.addresses[0][1]
        log.info("telemetry listening", extra={"host": host, "port": self.port})

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._runner.cleanup()

    async def _livez(self, request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def _readyz(self, request: web.Request) -> web.Response:
        report = await self._readiness.report()
        return web.json_response(report.as_dict(), status=200 if report.ready else 503)
