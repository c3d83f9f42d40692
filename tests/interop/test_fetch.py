"""Fetch semantics real consumers rely on: long-poll wake-up on new data, progress past a batch
larger than the fetch limits (KIP-74), and reading from the middle of a compressed batch."""

from __future__ import annotations

import time

from support import Record, ck_consume, ck_consumer, ck_produce, create_topic, make_records, rdkafka_conf, unique_topic


def test_long_poll_wakes_on_new_records(shared_broker):
    """A consumer waiting at the end (fetch.wait.max.ms=10s) gets a new record long before the
    wait runs out: the broker answers the parked Fetch when data arrives."""
    from confluent_kafka import OFFSET_END, Producer, TopicPartition

    topic = unique_topic("longpoll")
    create_topic(shared_broker.bootstrap, topic, 1)
    ck_produce(shared_broker.bootstrap, topic, make_records(5, 1, "before"))
    c = ck_consumer(shared_broker.bootstrap, {"fetch.wait.max.ms": 10000, "enable.partition.eof": False})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_END)])
        # give the consumer time to resolve the end offset and send its Fetch, which then parks
        # for up to fetch.wait.max.ms because there is nothing to return
        settle = time.monotonic() + 1.5
        while time.monotonic() < settle:
            msg = c.poll(0.1)
            assert msg is None, f"unexpected record or event at the end of the log: {msg.error() or msg.value()}"
        producer = Producer(rdkafka_conf(shared_broker.bootstrap, **{"acks": "all", "linger.ms": 0}))
        producer.produce(topic, key=b"k", value=b"wake-up", partition=0)
        assert producer.flush(10) == 0
        acked_at = time.monotonic()
        got = None
        while time.monotonic() < acked_at + 9:
            msg = c.poll(0.05)
            if msg is not None and msg.error() is None:
                got = msg
                break
        waited = time.monotonic() - acked_at
        assert got is not None, "record not delivered within 9 s (fetch.wait.max.ms is 10 s)"
        assert got.value() == b"wake-up" and got.offset() == 5
        assert waited < 3, f"delivery took {waited:.1f}s after the ack: the parked fetch was not woken by the append"
    finally:
        c.close()


def test_batch_larger_than_fetch_limits_is_still_returned(shared_broker):
    """KIP-74: the first batch is returned even when it exceeds max.partition.fetch.bytes and
    fetch.max.bytes, so a consumer with small limits still makes progress."""
    topic = unique_topic("bigbatch")
    create_topic(shared_broker.bootstrap, topic, 1)
    big = [Record(0, b"k%d" % i, bytes([i]) * 200_000, (), None) for i in range(3)]
    ck_produce(shared_broker.bootstrap, topic, big, extra={"batch.num.messages": 1})
    from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

    c = ck_consumer(
        shared_broker.bootstrap,
        {"max.partition.fetch.bytes": 1024, "fetch.max.bytes": 1024, "message.max.bytes": 1000, "receive.message.max.bytes": 2_000_000},
    )
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        out = []
        deadline = time.monotonic() + 30
        while len(out) < 3 and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                continue
            out.append((msg.offset(), msg.value()))
        assert [o for o, _ in out] == [0, 1, 2], f"got offsets {[o for o, _ in out]}"
        assert [v for _, v in out] == [r.value for r in big]
    finally:
        c.close()


def test_fetch_from_inside_a_compressed_batch(shared_broker):
    """Starting at an offset inside a compressed batch returns that record first (the client
    skips the earlier records of the batch the broker sends whole)."""
    topic = unique_topic("midbatch")
    create_topic(shared_broker.bootstrap, topic, 1)
    records = make_records(500, 1, "midbatch")
    ck_produce(shared_broker.bootstrap, topic, records, compression="zstd", extra={"batch.num.messages": 100})
    for start in (1, 99, 101, 250, 499):
        got = ck_consume(shared_broker.bootstrap, topic, [0], start={0: start})
        assert [r.offset for r in got] == list(range(start, 500))
        assert [r.value for r in got] == [r.value for r in records[start:]]


def test_offset_out_of_range_resets_per_policy(shared_broker):
    """A fetch position past the log end gets OFFSET_OUT_OF_RANGE, which the client resolves with
    auto.offset.reset: earliest -> offset 0, latest -> only records appended afterwards."""
    from confluent_kafka import TopicPartition

    topic = unique_topic("outofrange")
    create_topic(shared_broker.bootstrap, topic, 1)
    ck_produce(shared_broker.bootstrap, topic, make_records(10, 1, "oor"))
    c = ck_consumer(shared_broker.bootstrap, {"auto.offset.reset": "earliest", "enable.partition.eof": False})
    try:
        c.assign([TopicPartition(topic, 0, 1000)])
        msg = None
        deadline = time.monotonic() + 20
        while msg is None and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                msg = m
        assert msg is not None and msg.offset() == 0, "earliest reset did not restart at offset 0"
    finally:
        c.close()
    c = ck_consumer(shared_broker.bootstrap, {"auto.offset.reset": "error", "enable.partition.eof": False})
    try:
        c.assign([TopicPartition(topic, 0, 1000)])
        err = None
        deadline = time.monotonic() + 20
        while err is None and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is not None:
                err = m.error()
        assert err is not None, "no error for an out-of-range offset with auto.offset.reset=error"
        assert "out of range" in err.str().lower() or "offset_out_of_range" in err.str().lower(), err
    finally:
        c.close()


def test_edge_records_roundtrip(shared_broker):
    """Null and empty keys and values, a null header value, many headers, a record near the
    1 MB default limit: written by confluent-kafka, read identically by three clients."""
    from support import js_fetch, kp_consume

    topic = unique_topic("edge")
    create_topic(shared_broker.bootstrap, topic, 1)
    many_headers = tuple((f"h{i}", b"v%d" % i) for i in range(100))
    records = [
        Record(0, None, b"null key", (), None),
        Record(0, b"tombstone", None, (), None),
        Record(0, b"", b"", (), None),
        Record(0, None, None, (), None),
        Record(0, b"k", b"null header value", (("nullh", None), ("x", b"")), None),
        Record(0, b"many", b"headers", many_headers, None),
        Record(0, "ключ".encode(), "значение ✓".encode(), (("ünï", "çødé".encode()),), None),
        Record(0, b"big", bytes(range(256)) * 3900, (), None),
    ]
    ck_produce(shared_broker.bootstrap, topic, records, extra={"linger.ms": 0, "batch.num.messages": 1})

    def strip(rs):
        return [(r.offset, r.key, r.value, tuple(r.headers)) for r in rs]

    want = [(i, r.key, r.value, r.headers) for i, r in enumerate(records)]
    assert strip(ck_consume(shared_broker.bootstrap, topic, [0])) == want
    assert strip(kp_consume(shared_broker.bootstrap, topic, [0], expected_total=len(records))) == want
    # kafkajs decodes a null header value as null and keeps headers as an object (unique keys)
    assert strip(js_fetch(shared_broker.bootstrap, topic, [0])) == want
