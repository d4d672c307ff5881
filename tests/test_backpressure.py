"""Back-pressure: at the in-flight bound the consumer pauses its partitions instead of
fetching more, and resumes once requests finish; real Kafka, the simulator over TLS."""

from __future__ import annotations

import asyncio
import secrets

import msgspec

from connector import stack
from connector.events import NotificationRequest, encoder
from connector.service import Service
from connector.settings import load
from connector.simulator.server import Simulator

BUNDLE_ID = "com.example.demo"


async def test_fetching_pauses_at_the_in_flight_bound(
    run: stack.Run, simulator: Simulator
) -> None:
    loaded = load(run.config)
    settings = msgspec.structs.replace(
        loaded, delivery=msgspec.structs.replace(loaded.delivery, max_in_flight=5)
    )
    records = [
        (
            f"bp{n}",
            encoder.encode(
                NotificationRequest(
                    id=f"bp{n}",
                    device_token=secrets.token_hex(32),
                    topic=BUNDLE_ID,
                    aps={"alert": "hi"},
                )
            ),
        )
        for n in range(40)
    ]
    await run.produce(records)
    simulator.faults.answer_delay_s = 1.5

    service = Service(settings)
    await service.start()
    running = asyncio.create_task(service.run())
    try:
        async with asyncio.timeout(60):
            # The first request went alone (the token's probation), then the bound
            # filled: five streams open at once.
            while max(simulator.open_streams_seen, default=0) < 5:
                await asyncio.sleep(0.01)
            arrived = len(simulator.open_streams_seen)
            # Full for longer than the pipeline waits before pausing.
            await asyncio.sleep(0.6)
            pipeline = service.pipeline
            assert pipeline is not None

            # While those five wait, none more arrives and nothing is fetched.
            assert len(simulator.open_streams_seen) == arrived
            assert pipeline.paused == pipeline.assigned != frozenset()

            simulator.faults.answer_delay_s = 0
            values = await run.read("apns.results", len(records))
    finally:
        service.request_stop()
        await asyncio.wait_for(running, 30)
        await service.stop()

    outcomes = [msgspec.json.decode(value) for value in values]
    assert sorted(o["request_id"] for o in outcomes) == sorted(k for k, _ in records)
    assert {o["status"] for o in outcomes} == {"delivered"}
    assert pipeline.paused == frozenset()
    assert max(simulator.open_streams_seen) <= 5
