"""Broker settings that change what clients see: auto.create.topics.enable, num.partitions,
message.max.bytes."""

from __future__ import annotations

import pytest

import wire
from support import Record, ck_consume, ck_produce, create_topic, rdkafka_conf, unique_topic, wait_topic_ready

UNKNOWN_TOPIC_OR_PARTITION = 3
LEADER_NOT_AVAILABLE = 5
MESSAGE_TOO_LARGE = 10


def ck_produce_one(bootstrap, topic, value, extra=None, timeout=30):
    """Produces one record with confluent-kafka; returns the KafkaError (None on success)."""
    from confluent_kafka import Producer

    conf = {
        **rdkafka_conf(bootstrap),
        "acks": "all",
        "message.timeout.ms": int(timeout * 1000),
        "topic.metadata.propagation.max.ms": 1000,
    }
    conf.update(extra or {})
    p = Producer(conf)
    result = []
    p.produce(topic, key=b"k", value=value, on_delivery=lambda err, msg: result.append(err))
    assert p.flush(timeout + 5) == 0
    assert len(result) == 1
    return result[0]


def test_auto_create_on_by_default(broker_factory):
    b = broker_factory(settings={"num.partitions": "2"})
    topic = unique_topic("auto-on")
    err = ck_produce_one(b.bootstrap, topic, b"hello")
    assert err is None, err
    wait_topic_ready(b.bootstrap, topic, 2)  # num.partitions applies
    got = ck_consume(b.bootstrap, topic, [0, 1])
    assert [r.value for r in got] == [b"hello"]
    # Metadata with allow_auto_topic_creation=false never creates
    other = unique_topic("auto-on-noallow")
    with wire.Conn(b.bootstrap) as conn:
        _, topics = wire.metadata_v4(conn, [other], allow_auto_topic_creation=False)
        assert topics[other][0] == UNKNOWN_TOPIC_OR_PARTITION
        _, topics = wire.metadata_v4(conn, [other], allow_auto_topic_creation=True)
        assert topics[other][0] in (0, LEADER_NOT_AVAILABLE)
    wait_topic_ready(b.bootstrap, other, 2)


def test_auto_create_off(broker_factory):
    from confluent_kafka import KafkaError

    b = broker_factory(settings={"auto.create.topics.enable": "false"})
    topic = unique_topic("auto-off")
    err = ck_produce_one(b.bootstrap, topic, b"hello", timeout=10)
    assert err is not None, "produce to an unknown topic succeeded with auto-create off"
    assert err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC), err
    with wire.Conn(b.bootstrap) as conn:
        _, topics = wire.metadata_v4(conn, [topic], allow_auto_topic_creation=True)
        assert topics[topic][0] == UNKNOWN_TOPIC_OR_PARTITION
        res = wire.produce_v7(conn, topic, 0, wire.record_batch([(b"k", b"v")]))
        assert res["error"] == UNKNOWN_TOPIC_OR_PARTITION, res
        _, topics = wire.metadata_v4(conn, None, allow_auto_topic_creation=True)
        assert topic not in topics
    # kafka-python's producer gives up waiting for metadata of the missing topic
    from kafka import KafkaProducer
    from kafka.errors import KafkaTimeoutError

    p = KafkaProducer(bootstrap_servers=b.bootstrap, max_block_ms=2000)
    try:
        with pytest.raises(KafkaTimeoutError):
            p.send(topic, b"v").get(timeout=10)
    finally:
        p.close(timeout=5)
    # explicitly created topics still work
    create_topic(b.bootstrap, topic, 1)
    assert ck_produce_one(b.bootstrap, topic, b"now") is None


def test_message_too_large(broker_factory):
    from confluent_kafka import KafkaError

    limit = 10_000
    b = broker_factory(settings={"message.max.bytes": str(limit)})
    topic = unique_topic("too-large")
    create_topic(b.bootstrap, topic, 1)
    err = ck_produce_one(b.bootstrap, topic, b"x" * (2 * limit), extra={"batch.num.messages": 1})
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
    # raw: one batch over the limit -> MESSAGE_TOO_LARGE, nothing appended
    with wire.Conn(b.bootstrap) as conn:
        res = wire.produce_v7(conn, topic, 0, wire.record_batch([(b"k", b"y" * (limit + 100))]))
        assert res["error"] == MESSAGE_TOO_LARGE, res
        res = wire.produce_v7(conn, topic, 0, wire.record_batch([(b"k", b"z" * (limit - 200))]))
        assert res["error"] == 0 and res["base_offset"] == 0, res
    assert ck_produce_one(b.bootstrap, topic, b"small") is None
    got = ck_consume(b.bootstrap, topic, [0])
    assert [(r.offset, len(r.value)) for r in got] == [(0, limit - 200), (1, 5)]


def test_topic_max_message_bytes_override(broker_factory):
    """The topic config max.message.bytes overrides the broker's message.max.bytes."""
    b = broker_factory(settings={"message.max.bytes": "10000"})
    topic = unique_topic("topic-limit")
    create_topic(b.bootstrap, topic, 1, config={"max.message.bytes": "100000"})
    ck_produce(b.bootstrap, topic, [Record(0, b"k", b"w" * 50_000, (), None)])
    with wire.Conn(b.bootstrap) as conn:
        res = wire.produce_v7(conn, topic, 0, wire.record_batch([(b"k", b"v" * 150_000)]))
        assert res["error"] == MESSAGE_TOO_LARGE, res
    got = ck_consume(b.bootstrap, topic, [0])
    assert [len(r.value) for r in got] == [50_000]


def test_log_append_time_topic(shared_broker):
    """message.timestamp.type=LogAppendTime: consumers see the broker's append time (timestamp
    type 2) instead of the producer's, and the batch CRC still checks out."""
    from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME

    from support import make_records, now_ms

    topic = unique_topic("logappendtime")
    create_topic(shared_broker.bootstrap, topic, 1, config={"message.timestamp.type": "LogAppendTime"})
    records = make_records(200, 1, "lat")  # producer timestamps an hour in the past
    t0 = now_ms()
    ck_produce(shared_broker.bootstrap, topic, records, compression="lz4")
    t1 = now_ms()
    got = ck_consume(shared_broker.bootstrap, topic, [0])
    assert [r.value for r in got] == [r.value for r in records]
    assert all(t0 <= r.timestamp <= t1 for r in got), (t0, t1, got[0].timestamp)
    # the type travels in the batch attributes
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    from support import ck_consumer

    c = ck_consumer(shared_broker.bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        msg = None
        for _ in range(100):
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                msg = m
                break
        assert msg is not None
        assert msg.timestamp()[0] == TIMESTAMP_LOG_APPEND_TIME
    finally:
        c.close()


def test_producer_timestamps_kept_by_default(shared_broker):
    """CreateTime (the default): the producer's timestamps, even an hour old, are stored as sent."""
    from support import make_records

    topic = unique_topic("createtime")
    create_topic(shared_broker.bootstrap, topic, 1)
    records = make_records(50, 1, "ct")
    ck_produce(shared_broker.bootstrap, topic, records)
    assert [r.timestamp for r in ck_consume(shared_broker.bootstrap, topic, [0])] == [r.timestamp for r in records]
