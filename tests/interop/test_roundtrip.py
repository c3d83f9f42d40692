"""Each real client produces 10,000 keyed records with headers into a 3-partition topic through
every compression codec it supports and reads them back from the beginning; the records must
come back identical (key, value, headers, partition, timestamp) with dense offsets. Then each
client's output is read by every other client."""

from __future__ import annotations

import pytest

from support import (
    CODECS,
    Record,
    assert_records_equal,
    ck_consume,
    ck_produce,
    create_topic,
    js_fetch,
    js_produce,
    kcat_consume,
    kcat_produce,
    kp_consume,
    kp_produce,
    make_records,
    now_ms,
    unique_topic,
)

N = 10_000
PARTITIONS = 3


def kcat_produce_all(bootstrap, topic, records, compression):
    """kcat sets one header list per process and cannot set timestamps: one process per
    partition, headers `codec`/`part` fixed; returns the records as kcat will have written them."""
    expected = []
    for p in range(PARTITIONS):
        part = [r for r in records if r.partition == p]
        hdrs = [("codec", compression), ("part", str(p))]
        kcat_produce(bootstrap, topic, p, part, compression=compression, headers=hdrs)
        expected += [
            Record(p, r.key, r.value, tuple((k, v.encode()) for k, v in hdrs), None) for r in part
        ]
    return expected


@pytest.mark.parametrize("codec", CODECS)
def test_kcat_roundtrip(shared_broker, codec):
    topic = unique_topic(f"kcat-{codec}")
    create_topic(shared_broker.bootstrap, topic, PARTITIONS)
    records = make_records(N, PARTITIONS, f"kcat-{codec}", text_only=True, with_timestamps=False)
    t0 = now_ms()
    expected = kcat_produce_all(shared_broker.bootstrap, topic, records, codec)
    t1 = now_ms()
    got = kcat_consume(shared_broker.bootstrap, topic)
    assert_records_equal(expected, got, ts_window=(t0 - 1000, t1 + 1000))


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_kafka_roundtrip(shared_broker, codec):
    topic = unique_topic(f"ck-{codec}")
    create_topic(shared_broker.bootstrap, topic, PARTITIONS)
    records = make_records(N, PARTITIONS, f"ck-{codec}")
    delivered = ck_produce(shared_broker.bootstrap, topic, records, compression=codec)
    got = ck_consume(shared_broker.bootstrap, topic, range(PARTITIONS))
    assert_records_equal(records, got)
    # delivery reports name the offsets the records were stored at
    assert sorted(delivered) == sorted((r.partition, r.offset) for r in got)


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_roundtrip(shared_broker, codec):
    topic = unique_topic(f"kp-{codec}")
    create_topic(shared_broker.bootstrap, topic, PARTITIONS)
    records = make_records(N, PARTITIONS, f"kp-{codec}")
    delivered = kp_produce(shared_broker.bootstrap, topic, records, compression=codec)
    got = kp_consume(shared_broker.bootstrap, topic, range(PARTITIONS), expected_total=N)
    assert_records_equal(records, got)
    assert sorted(delivered) == sorted((r.partition, r.offset) for r in got)


@pytest.mark.parametrize("codec", CODECS)
def test_kafkajs_roundtrip(shared_broker, codec):
    topic = unique_topic(f"js-{codec}")
    create_topic(shared_broker.bootstrap, topic, PARTITIONS)
    records = make_records(N, PARTITIONS, f"js-{codec}")
    res = js_produce(shared_broker.bootstrap, topic, records, compression=codec)
    assert res["sent"] == N
    assert all(r["errorCode"] == 0 for r in res["results"]), res["results"][:5]
    got = js_fetch(shared_broker.bootstrap, topic, range(PARTITIONS))
    assert_records_equal(records, got)
    # every send() reports the base offset of its batch in each partition: they must be the
    # offsets at which the batch's first record was read back
    firsts = {(r.partition, r.offset) for r in got}
    for r in res["results"]:
        assert (r["partition"], int(r["baseOffset"])) in firsts


PRODUCERS = ["kcat", "confluent-kafka", "kafka-python", "kafkajs"]
CONSUMERS = ["kcat", "confluent-kafka", "kafka-python", "kafkajs"]


def produce_with(client, bootstrap, topic, records, codec):
    if client == "kcat":
        return kcat_produce_all(bootstrap, topic, records, codec)
    if client == "confluent-kafka":
        ck_produce(bootstrap, topic, records, compression=codec)
    elif client == "kafka-python":
        kp_produce(bootstrap, topic, records, compression=codec)
    elif client == "kafkajs":
        js_produce(bootstrap, topic, records, compression=codec)
    return records


def consume_with(client, bootstrap, topic, total):
    if client == "kcat":
        return kcat_consume(bootstrap, topic)
    if client == "confluent-kafka":
        return ck_consume(bootstrap, topic, range(PARTITIONS))
    if client == "kafka-python":
        return kp_consume(bootstrap, topic, range(PARTITIONS), expected_total=total)
    return js_fetch(bootstrap, topic, range(PARTITIONS))


@pytest.mark.parametrize(
    "producer,codec",
    [("kcat", "zstd"), ("confluent-kafka", "lz4"), ("kafka-python", "snappy"), ("kafkajs", "gzip")],
)
def test_cross_client(shared_broker, producer, codec):
    """Records written by `producer` read back identically by every other client."""
    n = 2000
    topic = unique_topic(f"cross-{producer}")
    create_topic(shared_broker.bootstrap, topic, PARTITIONS)
    # text-only so kcat's line/JSON output can carry them; timestamps set by the producer
    # where it can
    records = make_records(n, PARTITIONS, f"cross-{producer}", text_only=True, with_timestamps=producer != "kcat")
    t0 = now_ms()
    expected = produce_with(producer, shared_broker.bootstrap, topic, records, codec)
    t1 = now_ms()
    failures = []
    for consumer in CONSUMERS:
        if consumer == producer:
            continue
        try:
            got = consume_with(consumer, shared_broker.bootstrap, topic, n)
            assert_records_equal(expected, got, ts_window=(t0 - 1000, t1 + 1000))
        except AssertionError as e:
            failures.append(f"{producer} -> {consumer}: {str(e)[:500]}")
    assert not failures, "\n".join(failures)


def test_many_partitions(shared_broker):
    """200 partitions in one topic: produce across all of them, read all back."""
    topic = unique_topic("many-parts")
    create_topic(shared_broker.bootstrap, topic, 200)
    records = make_records(4000, 200, "many-parts")
    ck_produce(shared_broker.bootstrap, topic, records, compression="snappy")
    assert_records_equal(records, ck_consume(shared_broker.bootstrap, topic, range(200)))
    assert_records_equal(records, kp_consume(shared_broker.bootstrap, topic, range(200), expected_total=len(records)))
