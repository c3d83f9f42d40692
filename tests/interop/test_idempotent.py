"""Idempotent producers (InitProducerId + sequence numbers): every record lands exactly once and
offsets stay dense."""

from __future__ import annotations

import pytest

from support import (
    assert_records_equal,
    ck_consume,
    ck_produce,
    create_topic,
    js_fetch,
    js_produce,
    make_records,
    unique_topic,
)

N = 10_000
PARTITIONS = 3


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_confluent_kafka_idempotent(shared_broker, codec):
    topic = unique_topic(f"idem-ck-{codec}")
    create_topic(shared_broker.bootstrap, topic, PARTITIONS)
    records = make_records(N, PARTITIONS, f"idem-ck-{codec}")
    delivered = ck_produce(
        shared_broker.bootstrap,
        topic,
        records,
        compression=codec,
        # several batches in flight per partition: the broker must keep them in sequence order
        extra={"enable.idempotence": True, "max.in.flight.requests.per.connection": 5, "batch.num.messages": 200},
    )
    got = ck_consume(shared_broker.bootstrap, topic, range(PARTITIONS))
    assert_records_equal(records, got)
    assert len(set(delivered)) == N


def test_kafkajs_idempotent(shared_broker):
    topic = unique_topic("idem-js")
    create_topic(shared_broker.bootstrap, topic, PARTITIONS)
    records = make_records(N, PARTITIONS, "idem-js")
    res = js_produce(shared_broker.bootstrap, topic, records, compression="gzip", idempotent=True)
    assert res["sent"] == N
    got = js_fetch(shared_broker.bootstrap, topic, range(PARTITIONS))
    assert_records_equal(records, got)


def test_duplicate_and_out_of_order_batches(shared_broker):
    """Raw Produce v7 with a producer id: a re-sent batch (same producer id, epoch, sequence) is
    acknowledged with its original offset and not appended again; a sequence gap is rejected with
    OUT_OF_ORDER_SEQUENCE_NUMBER (45); the log end offset counts each record once."""
    import wire

    topic = unique_topic("idem-wire")
    create_topic(shared_broker.bootstrap, topic, 1)
    with wire.Conn(shared_broker.bootstrap) as conn:
        pid, epoch = wire.init_producer_id(conn)
        assert pid >= 0 and epoch >= 0
        recs = [(b"k%d" % i, b"v%d" % i) for i in range(5)]
        first = wire.produce_v7(conn, topic, 0, wire.record_batch(recs, producer_id=pid, producer_epoch=epoch, base_sequence=0))
        assert first["error"] == 0, first
        assert first["base_offset"] == 0, first
        again = wire.produce_v7(conn, topic, 0, wire.record_batch(recs, producer_id=pid, producer_epoch=epoch, base_sequence=0))
        assert again["error"] == 0, again
        assert again["base_offset"] == 0, f"duplicate batch must report the original offset: {again}"
        nxt = wire.produce_v7(conn, topic, 0, wire.record_batch(recs[:2], producer_id=pid, producer_epoch=epoch, base_sequence=5))
        assert nxt == {**nxt, "error": 0, "base_offset": 5}, nxt
        gap = wire.produce_v7(conn, topic, 0, wire.record_batch(recs[:1], producer_id=pid, producer_epoch=epoch, base_sequence=42))
        assert gap["error"] == 45, f"sequence gap must be OUT_OF_ORDER_SEQUENCE_NUMBER: {gap}"
        err, _, latest = wire.list_offset_v1(conn, topic, 0, -1)
        assert (err, latest) == (0, 7)
    got = ck_consume(shared_broker.bootstrap, topic, [0])
    assert [(r.offset, r.key) for r in got] == [(i, b"k%d" % (i if i < 5 else i - 5)) for i in range(7)]
