"""ListOffsets (earliest, latest, by timestamp) and seeking by offset, through confluent-kafka,
kafka-python, kafkajs and raw ListOffsets v1."""

from __future__ import annotations

import pytest

import wire
from support import by_partition, ck_consume, ck_consumer, ck_produce, create_topic, js, kp_consumer, make_records, unique_topic

PARTITIONS = 3
N = 3000
STEP_MS = 10


@pytest.fixture(scope="module")
def timed_topic(shared_broker):
    """3 partitions, N records; record i is in partition i % 3 with timestamp base + 10*i."""
    topic = unique_topic("offsets")
    create_topic(shared_broker.bootstrap, topic, PARTITIONS)
    base = make_records(1, 1, "x")[0].timestamp
    records = [
        r.__class__(r.partition, r.key, r.value, r.headers, base + STEP_MS * i)
        for i, r in enumerate(make_records(N, PARTITIONS, "offsets"))
    ]
    ck_produce(shared_broker.bootstrap, topic, records, compression="lz4")
    return topic, records, base


def expected_offset_for_time(records, partition, ts):
    """Kafka: the earliest offset whose timestamp is >= ts, or None past the end."""
    for offset, r in enumerate(by_partition(records)[partition]):
        if r.timestamp >= ts:
            return offset
    return None


def query_times(base):
    return [
        base - 100_000,  # before everything -> offset 0
        base,  # exactly the first record
        base + STEP_MS * 1500 + 5,  # between two records
        base + STEP_MS * (N - 1),  # exactly the last record
        base + STEP_MS * N + 100_000,  # after everything -> none
    ]


def test_confluent_watermarks_and_offsets_for_times(shared_broker, timed_topic):
    from confluent_kafka import TopicPartition

    topic, records, base = timed_topic
    c = ck_consumer(shared_broker.bootstrap)
    try:
        for p in range(PARTITIONS):
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
            assert (low, high) == (0, N // PARTITIONS), f"partition {p}"
        for ts in query_times(base):
            res = c.offsets_for_times([TopicPartition(topic, p, ts) for p in range(PARTITIONS)], timeout=10)
            for tp in res:
                assert tp.error is None, tp
                want = expected_offset_for_time(records, tp.partition, ts)
                # librdkafka reports "no such offset" as OFFSET_END (-1)
                assert tp.offset == (-1 if want is None else want), f"ts={ts} partition {tp.partition}: {tp.offset} != {want}"
    finally:
        c.close()


def test_confluent_seek_by_offset_and_time(shared_broker, timed_topic):
    from confluent_kafka import TopicPartition

    topic, records, base = timed_topic
    parts = by_partition(records)
    # assign at an offset
    got = ck_consume(shared_broker.bootstrap, topic, [1], start={1: 700})
    assert [r.offset for r in got] == list(range(700, N // PARTITIONS))
    assert [r.value for r in got] == [r.value for r in parts[1][700:]]
    # seek by timestamp: resolve with offsets_for_times, then consume from there
    ts = base + STEP_MS * 2001
    c = ck_consumer(shared_broker.bootstrap)
    try:
        (tp,) = c.offsets_for_times([TopicPartition(topic, 2, ts)], timeout=10)
    finally:
        c.close()
    want = expected_offset_for_time(records, 2, ts)
    assert tp.offset == want
    got = ck_consume(shared_broker.bootstrap, topic, [2], start={2: tp.offset}, limit=5)
    assert got[0].offset == want and got[0].timestamp >= ts
    assert got[0].value == parts[2][want].value


def test_kafka_python_offsets_and_seek(shared_broker, timed_topic):
    from kafka import TopicPartition

    topic, records, base = timed_topic
    parts = by_partition(records)
    c = kp_consumer(shared_broker.bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        c.assign(tps)
        assert c.beginning_offsets(tps) == {tp: 0 for tp in tps}
        assert c.end_offsets(tps) == {tp: N // PARTITIONS for tp in tps}
        for ts in query_times(base):
            res = c.offsets_for_times({tp: ts for tp in tps})
            for tp in tps:
                want = expected_offset_for_time(records, tp.partition, ts)
                if want is None:
                    assert res[tp] is None, f"ts={ts} {tp}: {res[tp]}"
                else:
                    assert res[tp] is not None and res[tp].offset == want, f"ts={ts} {tp}: {res[tp]} != {want}"
                    assert res[tp].timestamp == parts[tp.partition][want].timestamp
        # seek by offset on one partition, read a few records
        c.assign([tps[0]])
        c.seek(tps[0], 123)
        batch = c.poll(timeout_ms=5000, max_records=10)
        msgs = batch.get(tps[0], [])
        # the first poll may return nothing while the fetch is in flight: bounded retries
        for _ in range(20):
            if msgs:
                break
            msgs = c.poll(timeout_ms=500, max_records=10).get(tps[0], [])
        assert msgs, "no records after seek"
        assert msgs[0].offset == 123
        assert msgs[0].value == parts[0][123].value
        assert msgs[0].headers == list(parts[0][123].headers)
    finally:
        c.close()


def test_kafkajs_offsets(shared_broker, timed_topic):
    topic, records, base = timed_topic
    ts = base + STEP_MS * 1500 + 5
    res = js("offsets", {"brokers": [shared_broker.bootstrap], "topic": topic, "timestamp": ts})
    latest = {p["partition"]: p for p in res["latest"]}
    assert sorted(latest) == list(range(PARTITIONS))
    for p, info in latest.items():
        assert int(info["high"]) == N // PARTITIONS and int(info["low"]) == 0, info
    for p in res["byTimestamp"]:
        assert int(p["offset"]) == expected_offset_for_time(records, p["partition"], ts), p


def test_raw_list_offsets_earliest_latest(shared_broker, timed_topic):
    topic, records, base = timed_topic
    with wire.Conn(shared_broker.bootstrap) as conn:
        for p in range(PARTITIONS):
            assert wire.list_offset_v1(conn, topic, p, -2)[::2] == (0, 0)
            assert wire.list_offset_v1(conn, topic, p, -1)[::2] == (0, N // PARTITIONS)
            err, ts, off = wire.list_offset_v1(conn, topic, p, base + STEP_MS * 3)
            assert err == 0
            want = expected_offset_for_time(records, p, base + STEP_MS * 3)
            assert off == want and ts == by_partition(records)[p][want].timestamp
        # unknown partition
        err, _, _ = wire.list_offset_v1(conn, topic, 99, -1)
        assert err == 3, f"UNKNOWN_TOPIC_OR_PARTITION expected, got {err}"
