"""Creating topics and changing their configs through Kafka's admin API.

For the demo, the benchmark and the tests, which create the topics they use; the
broker runs with ``auto.create.topics.enable=false``, so a topic nobody created is an
error rather than a silent new topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, NoError, TopicAlreadyExistsError, for_code

from connector.errors import ConnectorError

logger = logging.getLogger(__name__)

# DescribeConfigs marks a value set on the topic itself with this source, as opposed
# to a broker default or a static setting.
_TOPIC_OVERRIDE_SOURCE = 1

_POLL_INTERVAL_S = 0.1


class TopicError(ConnectorError):
    """A topic could not be created or reconfigured; the message names it."""


async def ensure_topics(
    bootstrap: str,
    partitions: dict[str, int],
    *,
    replication: int = 1,
    timeout_s: float = 30,
) -> None:
    """Create each topic with its partition count unless it exists, then wait for it.

    Returns once metadata shows every topic with exactly its partitions, each with a
    leader. A topic that exists with another partition count is an error.
    """
    new_topics = [
        NewTopic(name, count, replication) for name, count in partitions.items()
    ]
    async with _admin(bootstrap) as admin:
        response = await admin.create_topics(new_topics)
        for topic, error_code, message in response.topic_errors:
            error = for_code(error_code)
            if error not in (NoError, TopicAlreadyExistsError):
                raise TopicError(
                    f"cannot create topic={topic}: {error.__name__} {message}"
                )

        await _wait_for_leaders(admin, partitions, timeout_s)
    logger.info("kafka topics ready topics=%s", ",".join(sorted(partitions)))


async def set_topic_config(
    bootstrap: str, topic: str, configs: dict[str, str], *, timeout_s: float = 30
) -> None:
    """Set ``configs`` on ``topic``, keeping its other overrides, and wait until applied.

    The admin client only offers the whole-set AlterConfigs request, which resets every
    value it does not name, so the topic's current overrides are sent along.
    """
    async with _admin(bootstrap) as admin:
        wanted = {**await _topic_overrides(admin, topic), **configs}
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, wanted)
        for response in await admin.alter_configs([resource]):
            for error_code, message, _, name in response.resources:
                if for_code(error_code) is not NoError:
                    raise TopicError(f"cannot set config of topic={name}: {message}")

        # The controller commits the change first and the broker applies it a moment
        # later; describing it back shows when the broker has.
        async with asyncio.timeout(timeout_s):
            while not configs.items() <= (await _topic_overrides(admin, topic)).items():
                await asyncio.sleep(_POLL_INTERVAL_S)
    logger.info("kafka topic config set topic=%s configs=%s", topic, configs)


@asynccontextmanager
async def _admin(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        yield admin
    except KafkaError as error:
        raise TopicError(
            f"kafka admin request to {bootstrap} failed: {error}"
        ) from error
    except TimeoutError as error:
        raise TopicError(f"kafka admin request to {bootstrap} timed out") from error
    finally:
        await admin.close()


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, partitions: dict[str, int], timeout_s: float
) -> None:
    async with asyncio.timeout(timeout_s):
        while not _all_led(await admin.describe_topics(list(partitions)), partitions):
            await asyncio.sleep(_POLL_INTERVAL_S)


def _all_led(metadata: list[dict[str, Any]], partitions: dict[str, int]) -> bool:
    for topic in metadata:
        # Right after creation a topic may briefly be unknown or leaderless.
        if for_code(topic["error_code"]) is not NoError:
            return False
        name, found = topic["topic"], topic["partitions"]
        if len(found) != partitions[name]:
            raise TopicError(
                f"topic={name} exists with {len(found)} partitions, "
                f"not the {partitions[name]} asked for"
            )
        if any(partition["leader"] < 0 for partition in found):
            return False
    return True


async def _topic_overrides(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    resource = ConfigResource(ConfigResourceType.TOPIC, topic)
    responses = await admin.describe_configs([resource])
    (described,) = responses[0].to_object()["resources"]
    if for_code(described["error_code"]) is not NoError:
        raise TopicError(f"cannot describe topic={topic}: {described['error_message']}")
    return {
        entry["config_names"]: entry["config_value"]
        for entry in described["config_entries"]
        if entry["config_source"] == _TOPIC_OVERRIDE_SOURCE
    }
