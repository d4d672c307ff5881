"""Senders fed from memory, each in a process of its own: `python -m bench.senders KIND`.

Every sender gets the same notifications (same device tokens, same payloads) and the
same bound on requests in flight, sends them all to the stand-in, and prints one JSON
line: how many were answered 200, the rate, and the CPU seconds the process spent
while sending.

- `aioapns`: aioapns 4, the Python asyncio APNs client, pointed at the stand-in;
- `connector`: our `ApnsClient.send`, the path the connector takes;
- `httpx-request`: an `httpx.Request` handed straight to our transport;
- `httpx-client`: `httpx.AsyncClient.post` over our transport.

All of them run on uvloop, the event loop `apns-connector run` uses.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import resource
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import uvloop

BUNDLE_ID = "com.example.bench"
TEAM_ID = "TEAMID1234"
KEY_ID = "KEYID12345"
# Answered 200, wall seconds, CPU seconds.
Sent = tuple[int, float, float]


def device_token(seed: str, number: int) -> str:
    return hashlib.sha256(f"{seed}-{number}".encode()).hexdigest()


def aps(number: int) -> dict[str, Any]:
    return {"alert": {"title": "Bench", "body": f"Hello {number}"}}


async def _run_all(
    n: int, in_flight: int, send: Callable[[int], Awaitable[bool]]
) -> tuple[int, float, float]:
    """Send requests 0..n-1, `in_flight` at a time; (answered 200, wall s, CPU s)."""
    ok = 0
    next_number = 0

    async def worker() -> None:
        nonlocal ok, next_number
        while next_number < n:
            number = next_number
            next_number += 1
            if await send(number):
                ok += 1

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return ok, time.perf_counter() - started, time.process_time() - cpu_started


async def _aioapns(args: argparse.Namespace) -> tuple[int, float, float]:
    import aioapns.connection
    from aioapns import APNs, NotificationRequest, PushType

    # aioapns knows only Apple's hosts: point its sandbox protocol at the stand-in.
    aioapns.connection.APNsDevelopmentClientProtocol.APNS_SERVER = "127.0.0.1"
    aioapns.connection.APNsDevelopmentClientProtocol.APNS_PORT = args.port
    context = ssl.create_default_context(cafile=args.cafile)
    context.set_alpn_protocols(["h2"])
    client = APNs(
        key=Path(args.key_file).read_text(),
        key_id=KEY_ID,
        team_id=TEAM_ID,
        topic=BUNDLE_ID,
        use_sandbox=True,
        ssl_context=context,
    )
    requests = [
        NotificationRequest(
            device_token=device_token(args.seed, i),
            message={"aps": aps(i)},
            push_type=PushType.ALERT,
        )
        for i in range(args.n)
    ]

    async def send(number: int) -> bool:
        result = await client.send_notification(requests[number])
        return bool(result.is_successful)

    try:
        return await _run_all(args.n, args.in_flight, send)
    finally:
        client.pool.close()


def _our_client(args: argparse.Namespace) -> Any:
    from connector.apns.client import ApnsClient
    from connector.settings import AppSettings

    app = AppSettings(
        bundle_id=BUNDLE_ID,
        key_file=args.key_file,
        key_id=KEY_ID,
        team_id=TEAM_ID,
        host="127.0.0.1",
        port=args.port,
        ca_file=args.cafile,
    )
    return ApnsClient(app, request_timeout_s=30)


def _notifications(args: argparse.Namespace) -> list[Any]:
    from connector.apns.notification import Notification, prepare
    from connector.events import NotificationRequest

    prepared = []
    for i in range(args.n):
        notification = prepare(
            NotificationRequest(
                id=f"bench-{i}",
                device_token=device_token(args.seed, i),
                topic=BUNDLE_ID,
                aps=aps(i),
            )
        )
        assert isinstance(notification, Notification)
        prepared.append(notification)
    return prepared


async def _connector(args: argparse.Namespace) -> tuple[int, float, float]:
    client = _our_client(args)
    notifications = _notifications(args)

    async def send(number: int) -> bool:
        response = await client.send(notifications[number])
        return bool(response.status == 200)

    try:
        return await _run_all(args.n, args.in_flight, send)
    finally:
        await client.aclose()


async def _httpx(
    args: argparse.Namespace, whole_client: bool
) -> tuple[int, float, float]:
    import httpx

    client = _our_client(args)
    notifications = _notifications(args)
    base = f"https://127.0.0.1:{args.port}"
    http = httpx.AsyncClient(transport=client.transport, base_url=base)
    transport = client.transport

    async def send(number: int) -> bool:
        note = notifications[number]
        # The connection adds the authorization header of its own token.
        headers = note.headers
        if whole_client:
            response = await http.post(note.path, content=note.body, headers=headers)
        else:
            request = httpx.Request(
                "POST", base + note.path, content=note.body, headers=headers
            )
            response = await transport.handle_async_request(request)
        return response.status_code == 200

    try:
        return await _run_all(args.n, args.in_flight, send)
    finally:
        await http.aclose()


async def _httpx_request(args: argparse.Namespace) -> tuple[int, float, float]:
    return await _httpx(args, whole_client=False)


async def _httpx_client(args: argparse.Namespace) -> tuple[int, float, float]:
    return await _httpx(args, whole_client=True)


SENDERS: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, Sent]]] = {
    "aioapns": _aioapns,
    "connector": _connector,
    "httpx-request": _httpx_request,
    "httpx-client": _httpx_client,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.senders")
    parser.add_argument("kind", choices=sorted(SENDERS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cafile", required=True)
    parser.add_argument("--key-file", required=True)
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--in-flight", type=int, default=1000)
    parser.add_argument("--seed", default="bench")
    args = parser.parse_args(argv)

    # The connector runs on uvloop; so does every sender here, aioapns included.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        ok, wall_s, cpu_s = runner.run(SENDERS[args.kind](args))
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "kind": args.kind,
                "n": args.n,
                "ok": ok,
                "rate": args.n / wall_s,
                "cpu_per_request_ms": cpu_s / args.n * 1000,
                "peak_rss_mb": round(peak_rss_mb, 1),
            }
        )
    )
    return 0 if ok == args.n else 1


if __name__ == "__main__":
    sys.exit(main())
