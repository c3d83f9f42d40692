"""Log lifecycle with real clients: retention by time and by size, compaction read-back, and
DeleteRecords; consumers that fall behind the log start are reset by their auto.offset.reset."""

from __future__ import annotations

import time

import pytest

from support import ck_admin, ck_consume, create_topic, rdkafka_conf, unique_topic, wait_until

LIFECYCLE_SETTINGS = {
    "log.retention.check.interval.ms": "300",
    "log.cleaner.backoff.ms": "200",
}


def low_high(bootstrap: str, topic: str, partition: int = 0) -> tuple[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(rdkafka_conf(bootstrap, **{"group.id": unique_topic("wm")}))
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        c.close()


def produce(bootstrap: str, topic: str, items, *, timestamp_ms=None, partition: int = 0) -> None:
    """`items`: (key, value) pairs, produced in order to one partition."""
    from confluent_kafka import Producer

    p = Producer(rdkafka_conf(bootstrap, **{"linger.ms": 0, "batch.num.messages": 1}))
    errors = []
    for key, value in items:
        kwargs = {"timestamp": timestamp_ms} if timestamp_ms is not None else {}
        p.produce(topic, key=key, value=value, partition=partition, on_delivery=lambda e, m: e and errors.append(e), **kwargs)
        p.poll(0)
    assert p.flush(30) == 0
    assert not errors, errors


def wait_for(predicate, timeout: float, what: str):
    return wait_until(predicate, timeout, what, interval=0.2)


def test_time_retention_deletes_old_segments_and_resets_a_lagging_consumer(broker_factory):
    from confluent_kafka import Consumer, TopicPartition

    b = broker_factory(settings=LIFECYCLE_SETTINGS)
    topic = unique_topic("retention-time")
    create_topic(
        b.bootstrap, topic, 1,
        config={"retention.ms": "60000", "segment.bytes": "2048", "file.delete.delay.ms": "0"},
    )
    hour_ago = int(time.time() * 1000) - 3_600_000
    produce(b.bootstrap, topic, [(b"old-%d" % i, b"x" * 100) for i in range(60)], timestamp_ms=hour_ago)
    # Every segment is past retention, the active one included: it is rolled, then deleted.
    low, high = wait_for(
        lambda: (lambda lh: lh if lh[0] == 60 else None)(low_high(b.bootstrap, topic)),
        30, "the old segments to be deleted",
    )
    assert high == 60
    produce(b.bootstrap, topic, [(b"new-%d" % i, b"y" * 100) for i in range(5)])
    time.sleep(1)  # a few retention runs: the new records' segment is within retention
    assert low_high(b.bootstrap, topic) == (60, 65)

    # A consumer positioned at offset 0 gets OFFSET_OUT_OF_RANGE and resets to earliest.
    c = Consumer(rdkafka_conf(b.bootstrap, **{"group.id": unique_topic("lagging"), "auto.offset.reset": "earliest"}))
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        msg = wait_for(lambda: (lambda m: m if m is not None and not m.error() else None)(c.poll(0.5)), 30, "a record")
        assert msg.offset() == 60 and msg.key() == b"new-0"
    finally:
        c.close()
    got = ck_consume(b.bootstrap, topic, [0])
    assert [r.key for r in got] == [b"new-%d" % i for i in range(5)]


def test_size_retention_keeps_the_newest_bytes(broker_factory):
    b = broker_factory(settings=LIFECYCLE_SETTINGS)
    topic = unique_topic("retention-size")
    create_topic(
        b.bootstrap, topic, 1,
        config={"retention.bytes": "6000", "segment.bytes": "2048", "file.delete.delay.ms": "0"},
    )
    produce(b.bootstrap, topic, [(b"k%d" % i, b"v" * 150) for i in range(100)])
    low, high = wait_for(
        lambda: (lambda lh: lh if lh[0] > 0 else None)(low_high(b.bootstrap, topic)),
        30, "segments over retention.bytes to be deleted",
    )
    assert high == 100
    got = ck_consume(b.bootstrap, topic, [0])
    assert [r.offset for r in got] == list(range(low, 100))
    size = sum(p.stat().st_size for p in b.partition_dir(topic, 0).glob("*.log"))
    assert size <= 6000 + 2048, size


def test_compacted_topic_keeps_the_latest_value_per_key(broker_factory):
    b = broker_factory(settings=LIFECYCLE_SETTINGS)
    topic = unique_topic("compact")
    create_topic(
        b.bootstrap, topic, 1,
        config={
            "cleanup.policy": "compact",
            "segment.bytes": "4096",
            "min.cleanable.dirty.ratio": "0.01",
            "delete.retention.ms": "0",
            "file.delete.delay.ms": "0",
        },
    )
    latest: dict[bytes, bytes | None] = {}
    items = []
    for round_ in range(20):
        for k in range(15):
            key, value = b"key-%02d" % k, b"value-%02d-%02d" % (k, round_)
            items.append((key, value))
            latest[key] = value
    for k in range(0, 15, 4):  # tombstones for some keys
        items.append((b"key-%02d" % k, None))
        latest[b"key-%02d" % k] = None
    produce(b.bootstrap, topic, items)
    written = len(items)

    def compacted():
        # New writes keep the log dirty (the cleaner leaves clean logs alone) and roll segments, so
        # the tombstones' second pass happens too; the fillers have their own keys.
        produce(b.bootstrap, topic, [(b"filler-%d" % time.monotonic_ns(), b"f" * 200) for _ in range(10)])
        got = [r for r in ck_consume(b.bootstrap, topic, [0]) if not r.key.startswith(b"filler-")]
        return got if len(got) == sum(v is not None for v in latest.values()) else None

    got = wait_for(compacted, 60, "compaction to leave one record per live key")
    assert {r.key: r.value for r in got} == {k: v for k, v in latest.items() if v is not None}
    offsets = [r.offset for r in got]
    assert offsets == sorted(offsets) and all(o < written for o in offsets), offsets
    # each kept record keeps the offset it was written at
    position = {}
    for offset, (key, value) in enumerate(items):
        position[(key, value)] = offset
    assert all(position[(r.key, r.value)] == r.offset for r in got)


def test_keyless_records_are_refused_on_compacted_topics(broker_factory):
    from confluent_kafka import Producer

    b = broker_factory()
    topic = unique_topic("compact-keyless")
    create_topic(b.bootstrap, topic, 1, config={"cleanup.policy": "compact"})
    p = Producer(rdkafka_conf(b.bootstrap, **{"retries": 0}))
    errors = []
    p.produce(topic, value=b"no key", partition=0, on_delivery=lambda e, m: errors.append(e))
    p.flush(20)
    assert errors and errors[0] is not None and errors[0].name() == "INVALID_RECORD", errors


@pytest.mark.parametrize("client", ["confluent-kafka", "kafka-python"])
def test_delete_records_moves_the_log_start(broker_factory, client):
    from confluent_kafka import TopicPartition

    b = broker_factory(settings=LIFECYCLE_SETTINGS)
    topic = unique_topic("delete-records")
    create_topic(b.bootstrap, topic, 2, config={"segment.bytes": "2048", "file.delete.delay.ms": "0"})
    produce(b.bootstrap, topic, [(b"k%d" % i, b"v" * 100) for i in range(50)], partition=0)
    produce(b.bootstrap, topic, [(b"k%d" % i, b"v" * 100) for i in range(10)], partition=1)
    if client == "confluent-kafka":
        admin = ck_admin(b.bootstrap)
        futures = admin.delete_records([TopicPartition(topic, 0, 30), TopicPartition(topic, 1, -1)])
        results = {tp.partition: f.result(timeout=20) for tp, f in futures.items()}
        assert results[0].low_watermark == 30
        assert results[1].low_watermark == 10
        with pytest.raises(Exception) as info:
            admin.delete_records([TopicPartition(topic, 0, 51)])[TopicPartition(topic, 0, 51)].result(timeout=20)
        assert "OFFSET_OUT_OF_RANGE" in str(info.value)
    else:
        from kafka.admin import KafkaAdminClient
        from kafka.structs import TopicPartition as KTopicPartition

        admin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
        try:
            admin.delete_records({KTopicPartition(topic, 0): 30, KTopicPartition(topic, 1): -1})
        finally:
            admin.close()
    assert low_high(b.bootstrap, topic, 0) == (30, 50)
    assert low_high(b.bootstrap, topic, 1) == (10, 10)
    got = ck_consume(b.bootstrap, topic, [0])
    assert [r.offset for r in got] == list(range(30, 50))
    # the segments wholly below the new start go at the next retention run
    wait_for(
        lambda: min(int(p.stem) for p in b.partition_dir(topic, 0).glob("*.log")) > 0,
        30, "segments below the log start to be deleted",
    )
    # and the start survives a restart
    b.stop()
    b.start()
    assert low_high(b.bootstrap, topic, 0) == (30, 50)


def test_kill9_while_cleaning_and_deleting_loses_nothing_that_should_remain(broker_factory):
    """A compacted topic is written and cleaned while the broker is killed again and again: after
    each restart every key still reads back with its latest value (compaction may or may not have
    happened), and a delete-policy topic under retention keeps a contiguous tail."""
    import random

    settings = {**LIFECYCLE_SETTINGS, "log.cleaner.backoff.ms": "50"}
    b = broker_factory(settings=settings)
    compacted = unique_topic("crash-compact")
    create_topic(
        b.bootstrap, compacted, 1,
        config={"cleanup.policy": "compact", "segment.bytes": "8192", "min.cleanable.dirty.ratio": "0.01",
                "file.delete.delay.ms": "0"},
    )
    retained = unique_topic("crash-retention")
    create_topic(
        b.bootstrap, retained, 1,
        config={"retention.bytes": "20000", "segment.bytes": "4096", "file.delete.delay.ms": "0"},
    )
    rng = random.Random(23)
    latest: dict[bytes, bytes] = {}
    produced_retained = 0
    for round_ in range(4):
        items = []
        for i in range(600):
            key = b"key-%03d" % rng.randrange(80)
            value = b"r%d-%d-" % (round_, i) + b"v" * rng.randrange(10, 120)
            items.append((key, value))
            latest[key] = value
        produce(b.bootstrap, compacted, items)
        produce(b.bootstrap, retained, [(b"t%d" % (produced_retained + i), b"x" * 200) for i in range(150)])
        produced_retained += 150
        time.sleep(rng.uniform(0.05, 0.6))  # cleaning and retention are under way
        b.kill9()
        b.start()
        got = ck_consume(b.bootstrap, compacted, [0])
        last: dict[bytes, bytes] = {}
        for r in got:
            last[r.key] = r.value
        assert last == latest, f"round {round_}: {len(last)} keys read back, {len(latest)} written"
        offsets = [r.offset for r in got]
        assert offsets == sorted(set(offsets)), f"round {round_}: offsets out of order"
        low, high = low_high(b.bootstrap, retained)
        assert high == produced_retained
        tail = ck_consume(b.bootstrap, retained, [0])
        assert [r.offset for r in tail] == list(range(low, high)), f"round {round_}: retained tail has gaps"

    # After the crashes the cleaner still finishes the job: one record per key.
    def compacted_fully():
        produce(b.bootstrap, compacted, [(b"filler-%d" % time.monotonic_ns(), b"f" * 300) for _ in range(30)])
        records = [r for r in ck_consume(b.bootstrap, compacted, [0]) if not r.key.startswith(b"filler-")]
        return records if len(records) == len(latest) else None

    records = wait_for(compacted_fully, 60, "the cleaner to compact the topic after the crashes")
    assert {r.key: r.value for r in records} == latest
