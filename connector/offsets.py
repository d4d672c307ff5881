"""Which input offsets may be committed.

Requests of one partition finish out of order, but an offset may be committed only when
every request before it has its outcome acknowledged: committing offset N tells Kafka
that everything below N is done. Each partition keeps its started offsets in order and
the set of finished ones; the committable position is the first offset not yet finished.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from aiokafka import TopicPartition


class PartitionOffsets:
    """Started and finished offsets of one partition."""

    __slots__ = ("_finished", "_position", "_started")

    def __init__(self) -> None:
        self._started: deque[int] = deque()
        self._finished: set[int] = set()
        self._position: int | None = None

    def start(self, offset: int) -> None:
        self._started.append(offset)

    def finish(self, offset: int) -> None:
        self._finished.add(offset)
        while self._started and self._started[0] in self._finished:
            done = self._started.popleft()
            self._finished.discard(done)
            self._position = done + 1

    @property
    def position(self) -> int | None:
        """The offset to commit: every earlier started offset is finished."""
        return self._position

    @property
    def in_flight(self) -> int:
        return len(self._started)


class OffsetTracker:
    """Committable positions of every assigned partition."""

    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, PartitionOffsets] = {}
        self._committed: dict[TopicPartition, int] = {}

    def start(self, partition: TopicPartition, offset: int) -> None:
        offsets = self._partitions.get(partition)
        if offsets is None:
            offsets = self._partitions[partition] = PartitionOffsets()
        offsets.start(offset)

    def finish(self, partition: TopicPartition, offset: int) -> None:
        offsets = self._partitions.get(partition)
        # A partition revoked meanwhile has been forgotten: its work is not ours.
        if offsets is not None:
            offsets.finish(offset)

    def in_flight(self, partitions: Iterable[TopicPartition] | None = None) -> int:
        chosen = self._partitions.keys() if partitions is None else partitions
        return sum(
            self._partitions[p].in_flight for p in chosen if p in self._partitions
        )

    def uncommitted(
        self, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, int]:
        """Positions that moved since they were last committed."""
        chosen = self._partitions.keys() if partitions is None else partitions
        positions = {}
        for partition in chosen:
            offsets = self._partitions.get(partition)
            if offsets is None or offsets.position is None:
                continue
            if self._committed.get(partition) != offsets.position:
                positions[partition] = offsets.position
        return positions

    def committed(self, positions: dict[TopicPartition, int]) -> None:
        self._committed.update(positions)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        for partition in partitions:
            self._partitions.pop(partition, None)
            self._committed.pop(partition, None)
