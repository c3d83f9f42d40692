"""Connection-level protocol behaviour, on a raw socket: pipelined requests are answered in
request order, and acks=0 produces get no response at all (while still being appended)."""

from __future__ import annotations

import struct

import wire
from support import ck_consume, create_topic, unique_topic


def test_pipelined_requests_answered_in_order(shared_broker):
    topic = unique_topic("pipeline")
    create_topic(shared_broker.bootstrap, topic, 2)
    with wire.Conn(shared_broker.bootstrap, timeout=30) as c:
        sent = []
        payload = b""
        for i in range(60):
            cid = 1000 + i
            kind = i % 3
            if kind == 0:
                body = (
                    wire.string(None)
                    + wire.i16(-1)
                    + wire.i32(30000)
                    + wire.i32(1)
                    + wire.string(topic)
                    + wire.i32(1)
                    + wire.i32(i % 2)
                    + wire.nbytes(wire.record_batch([(b"k%d" % i, b"v%d" % i)]))
                )
                payload += wire.frame(wire.request_header_v1(wire.API_PRODUCE, 7, cid) + body)
            elif kind == 1:
                payload += wire.frame(wire.request_header_v1(wire.API_METADATA, 1, cid) + wire.metadata_v1_body([topic]))
            else:
                payload += wire.frame(wire.request_header_v1(wire.API_API_VERSIONS, 0, cid))
            sent.append(cid)
        c.send_raw(payload)  # all 60 requests before reading any response
        got = [struct.unpack(">i", c.recv_frame()[:4])[0] for _ in sent]
        assert got == sent, f"responses out of order: {got[:10]}..."
    records = ck_consume(shared_broker.bootstrap, topic, [0, 1])
    assert sorted(r.value for r in records) == sorted(b"v%d" % i for i in range(0, 60, 3))


def test_acks_zero_gets_no_response(shared_broker):
    topic = unique_topic("acks0")
    create_topic(shared_broker.bootstrap, topic, 1)
    with wire.Conn(shared_broker.bootstrap) as c:
        body = (
            wire.string(None)
            + wire.i16(0)
            + wire.i32(30000)
            + wire.i32(1)
            + wire.string(topic)
            + wire.i32(1)
            + wire.i32(0)
            + wire.nbytes(wire.record_batch([(b"k", b"fire-and-forget")]))
        )
        c.send_raw(wire.frame(wire.request_header_v1(wire.API_PRODUCE, 7, 41) + body))
        # the next response on the connection must be the ApiVersions one, not a Produce response
        c.send_raw(wire.frame(wire.request_header_v1(wire.API_API_VERSIONS, 0, 42)))
        r = wire.Reader(c.recv_frame())
        assert r.i32() == 42
        assert wire.parse_api_versions_v0(r)[0] == 0
    records = ck_consume(shared_broker.bootstrap, topic, [0])
    assert [r.value for r in records] == [b"fire-and-forget"]
