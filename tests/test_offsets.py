from aiokafka import TopicPartition

from connector.offsets import OffsetTracker, PartitionOffsets

P0 = TopicPartition("apns.requests", 0)
P1 = TopicPartition("apns.requests", 1)


def test_position_waits_for_the_earliest_unfinished_offset() -> None:
    offsets = PartitionOffsets()
    for offset in (10, 11, 12):
        offsets.start(offset)

    offsets.finish(12)
    offsets.finish(11)
    assert offsets.position is None
    assert offsets.in_flight == 3

    offsets.finish(10)
    assert offsets.position == 13
    assert offsets.in_flight == 0


def test_position_stops_before_a_gap() -> None:
    offsets = PartitionOffsets()
    for offset in (0, 1, 2, 3):
        offsets.start(offset)

    offsets.finish(0)
    offsets.finish(2)
    offsets.finish(3)
    assert offsets.position == 1


def test_uncommitted_reports_only_moved_positions() -> None:
    tracker = OffsetTracker()
    tracker.start(P0, 5)
    tracker.start(P1, 7)
    tracker.finish(P0, 5)
    assert tracker.uncommitted() == {P0: 6}

    tracker.committed({P0: 6})
    assert tracker.uncommitted() == {}

    tracker.finish(P1, 7)
    assert tracker.uncommitted() == {P1: 8}
    assert tracker.uncommitted([P0]) == {}


def test_forgotten_partition_ignores_late_finishes() -> None:
    tracker = OffsetTracker()
    tracker.start(P0, 1)
    tracker.forget([P0])
    tracker.finish(P0, 1)
    assert tracker.uncommitted() == {}
    assert tracker.in_flight() == 0
