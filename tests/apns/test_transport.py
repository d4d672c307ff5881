"""The HTTP/2 layer against the simulator over TLS: each thing APNs does to a
connection, and that every request gets exactly one answer through it."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest

from connector import stack
from connector.apns.client import ApnsClient, ApnsResponse
from connector.apns.notification import Notification, prepare
from connector.apns.reasons import Reason
from connector.errors import ConnectionFailed, RequestTimedOut
from connector.events import NotificationRequest
from connector.settings import AppSettings
from connector.simulator.server import Simulator

BUNDLE_ID = "com.example.demo"
# Every test ends well within this; a hang fails instead of blocking the run.
BOUND_S = 20


def notification(number: int, token: str | None = None) -> Notification:
    prepared = prepare(
        NotificationRequest(
            id=f"transport-{number}-{secrets.token_hex(4)}",
            device_token=token or secrets.token_hex(32),
            topic=BUNDLE_ID,
            aps={"alert": f"hello {number}"},
        )
    )
    assert isinstance(prepared, Notification)
    return prepared


def app_for(simulator: Simulator, credentials: stack.Credentials) -> AppSettings:
    return app_for_port(simulator.port, credentials)


def app_for_port(port: int, credentials: stack.Credentials) -> AppSettings:
    return AppSettings(
        bundle_id=BUNDLE_ID,
        key_file=str(credentials.key_file),
        key_id=stack.KEY_ID,
        team_id=stack.TEAM_ID,
        host="127.0.0.1",
        port=port,
        ca_file=str(credentials.cert_file),
    )


@pytest.fixture
async def client(
    simulator: Simulator, credentials: stack.Credentials
) -> AsyncIterator[ApnsClient]:
    apns = ApnsClient(app_for(simulator, credentials), request_timeout_s=10)
    yield apns
    await apns.aclose()


async def send_all(client: ApnsClient, notes: list[Notification]) -> list[ApnsResponse]:
    async with asyncio.timeout(BOUND_S):
        return await asyncio.gather(*(client.send(note) for note in notes))


def assert_each_answered_once(simulator: Simulator, notes: list[Notification]) -> None:
    answered = sorted(r.apns_id for r in simulator.received if r.status == 200)
    assert answered == sorted(note.apns_id for note in notes)


async def test_requests_share_one_connection_and_each_gets_its_answer(
    client: ApnsClient, simulator: Simulator
) -> None:
    notes = [notification(n) for n in range(200)]

    responses = await send_all(client, notes)

    assert [(r.status, r.apns_id) for r in responses] == [
        (200, note.apns_id) for note in notes
    ]
    assert_each_answered_once(simulator, notes)
    assert {r.connection_id for r in simulator.received} == {1}
    assert client.pool.opened == 1


async def test_one_stream_until_the_token_is_accepted(
    client: ApnsClient, simulator: Simulator
) -> None:
    simulator.faults.answer_delay_s = 0.05

    await send_all(client, [notification(n) for n in range(5)])

    # The first request went alone; the rest waited for its answer, then went
    # together (each one counts itself).
    assert simulator.open_streams_seen == [1, 1, 2, 3, 4]


async def test_frames_of_requests_started_together_leave_in_one_write(
    client: ApnsClient, simulator: Simulator
) -> None:
    await send_all(client, [notification(0)])
    (connection,) = client.pool.connections
    before = connection.writes

    await send_all(client, [notification(n) for n in range(1, 51)])

    # 50 requests, one write; answers without a body need no reply.
    assert connection.writes - before == 1
    assert len(simulator.received) == 51


@pytest.mark.parametrize("limit", [1, 3])
async def test_a_lowered_stream_limit_holds_back_new_streams(
    simulator: Simulator, credentials: stack.Credentials, limit: int
) -> None:
    # One connection only, so the limit is felt instead of a second connection.
    client = ApnsClient(
        app_for(simulator, credentials), request_timeout_s=10, max_connections=1
    )
    warm_up = notification(0)
    first = [notification(n) for n in range(1, 11)]
    later = [notification(n) for n in range(11, 31)]
    try:
        await send_all(client, [warm_up])
        simulator.faults.answer_delay_s = 0.1

        async with asyncio.timeout(BOUND_S):
            in_flight = asyncio.gather(*(client.send(note) for note in first))
            while len(simulator.open_streams_seen) < 11:
                await asyncio.sleep(0.005)
            simulator.announce_stream_limit(limit)
            await asyncio.sleep(0.02)
            responses = await asyncio.gather(
                in_flight, asyncio.gather(*(client.send(note) for note in later))
            )
    finally:
        await client.aclose()

    assert [r.status for batch in responses for r in batch] == [200] * 30
    assert_each_answered_once(simulator, [warm_up, *first, *later])
    # The ten in flight finished; those started after the change never had more
    # than `limit` streams open.
    assert simulator.open_streams_seen[1:11] == list(range(1, 11))
    assert max(simulator.open_streams_seen[11:]) <= limit
    assert client.pool.opened == 1


@pytest.mark.parametrize("debug_data", [b"", b'{"reason":"Shutdown"}'])
async def test_streams_beyond_a_goaway_are_resent_on_a_new_connection(
    client: ApnsClient, simulator: Simulator, debug_data: bytes
) -> None:
    await send_all(client, [notification(0)])
    simulator.faults.answer_delay_s = 0.05
    simulator.faults.goaway_every = 5
    simulator.faults.goaway_debug_data = debug_data
    notes = [notification(n) for n in range(1, 41)]

    responses = await send_all(client, notes)

    assert [r.status for r in responses] == [200] * 40
    answered = [r.apns_id for r in simulator.received[1:]]
    assert sorted(answered) == sorted(note.apns_id for note in notes)
    assert client.pool.opened >= 2


async def test_refused_streams_are_resent(
    client: ApnsClient, simulator: Simulator
) -> None:
    simulator.faults.refuse_every = 3
    notes = [notification(n) for n in range(30)]

    responses = await send_all(client, notes)

    assert [r.status for r in responses] == [200] * 30
    assert_each_answered_once(simulator, notes)
    assert client.pool.opened == 1


async def test_no_answer_within_the_timeout_resets_the_stream_only(
    simulator: Simulator, credentials: stack.Credentials
) -> None:
    client = ApnsClient(app_for(simulator, credentials), request_timeout_s=0.3)
    try:
        await send_all(client, [notification(0)])
        simulator.faults.answer_delay_s = 3

        with pytest.raises(RequestTimedOut, match="within 0.3 s"):
            await send_all(client, [notification(1)])

        simulator.faults.answer_delay_s = 0
        responses = await send_all(client, [notification(2)])
        assert [r.status for r in responses] == [200]
        assert client.pool.opened == 1
        assert client.pool.connections[0].budget.in_flight == 0
    finally:
        await client.aclose()


async def test_a_peer_that_stops_answering_is_found_dead_by_ping(
    simulator: Simulator, credentials: stack.Credentials
) -> None:
    client = ApnsClient(
        app_for(simulator, credentials), request_timeout_s=10, ping_interval_s=0.2
    )
    try:
        await send_all(client, [notification(0)])
        simulator.faults.stall = True

        with pytest.raises(ConnectionFailed, match="no answer to PING"):
            await send_all(client, [notification(1)])

        simulator.faults.stall = False
        responses = await send_all(client, [notification(2)])
        assert [r.status for r in responses] == [200]
        assert client.pool.opened == 2
    finally:
        await client.aclose()


async def test_an_idle_connection_is_kept_by_ping(
    simulator: Simulator, credentials: stack.Credentials
) -> None:
    client = ApnsClient(
        app_for(simulator, credentials), request_timeout_s=10, ping_interval_s=0.05
    )
    try:
        await send_all(client, [notification(0)])
        await asyncio.sleep(0.5)

        await send_all(client, [notification(1)])
        assert client.pool.opened == 1
    finally:
        await client.aclose()


async def test_a_dropped_connection_fails_its_requests_and_is_replaced(
    client: ApnsClient, simulator: Simulator
) -> None:
    await send_all(client, [notification(0)])
    simulator.faults.drop_every = 2

    with pytest.raises(ConnectionFailed, match="APNs closed the connection"):
        await send_all(client, [notification(1)])

    simulator.faults.drop_every = 0
    responses = await send_all(client, [notification(2)])
    assert [r.status for r in responses] == [200]
    assert client.pool.opened == 2


async def test_more_connections_open_when_one_is_full_up_to_the_cap(
    credentials: stack.Credentials,
) -> None:
    async with Simulator(
        tls=credentials.tls,
        signing_keys=credentials.signing_keys,
        max_concurrent_streams=2,
    ) as simulator:
        client = ApnsClient(
            app_for(simulator, credentials), request_timeout_s=10, max_connections=3
        )
        try:
            await send_all(client, [notification(0)])
            simulator.faults.answer_delay_s = 0.2
            notes = [notification(n) for n in range(1, 13)]

            responses = await send_all(client, notes)

            assert [r.status for r in responses] == [200] * 12
            assert client.pool.opened == 3
            assert {r.connection_id for r in simulator.received} == {1, 2, 3}
            assert max(simulator.open_streams_seen) == 2
        finally:
            await client.aclose()


async def test_reconnects_back_off_instead_of_storming(
    credentials: stack.Credentials,
) -> None:
    attempts = 0

    async def refuse(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal attempts
        attempts += 1
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    app = app_for_port(port, credentials)
    client = ApnsClient(app, request_timeout_s=0.2)
    try:
        async with asyncio.timeout(BOUND_S):
            loop = asyncio.get_running_loop()
            ends = loop.time() + 1.0
            failures = 0
            while loop.time() < ends:
                results = await asyncio.gather(
                    *(client.send(notification(n)) for n in range(20)),
                    return_exceptions=True,
                )
                assert all(
                    isinstance(r, ConnectionFailed | RequestTimedOut) for r in results
                )
                failures += len(results)
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()

    # Hundreds of failed requests, a handful of attempts: 0.1 s doubling.
    assert failures >= 40
    assert 2 <= attempts <= 6


async def test_expired_provider_token_gets_a_new_connection_and_one_resend(
    client: ApnsClient, simulator: Simulator
) -> None:
    token = secrets.token_hex(32)
    simulator.inject(token, Reason.EXPIRED_PROVIDER_TOKEN)

    (response,) = await send_all(client, [notification(0, token)])

    assert (response.status, response.reason) == (403, "ExpiredProviderToken")
    assert [(r.reason, r.connection_id) for r in simulator.received] == [
        (Reason.EXPIRED_PROVIDER_TOKEN, 1),
        (Reason.EXPIRED_PROVIDER_TOKEN, 2),
    ]
    # The first connection retired; the next request goes on the new one.
    await send_all(client, [notification(1)])
    assert simulator.received[-1].connection_id == 2
    assert client.pool.opened == 2


async def test_httpx_clients_can_send_through_the_transport(
    client: ApnsClient, simulator: Simulator
) -> None:
    note = notification(0)
    async with httpx.AsyncClient(
        transport=client.transport, base_url=simulator.url
    ) as http:
        response = await http.post(note.path, content=note.body, headers=note.headers)
        with pytest.raises(httpx.UnsupportedProtocol, match="POST requests only"):
            await http.get("/")

    assert response.status_code == 200
    assert response.headers["apns-id"] == note.apns_id
    assert response.http_version == "HTTP/2"
    assert_each_answered_once(simulator, [note])
