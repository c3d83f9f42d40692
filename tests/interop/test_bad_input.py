"""Malformed and hostile bytes on a raw socket. Each case may only affect its own connection
(closed, or answered with an error): the broker stays up, other open connections keep working,
and a real client producing throughout never sees an error."""

from __future__ import annotations

import os
import struct
import threading
import time

import pytest

import wire
from support import ck_consume, create_topic, rdkafka_conf, unique_topic

UNSUPPORTED_VERSION = 35
SOCKET_REQUEST_MAX_BYTES = 100 * 1024 * 1024  # Kafka's default socket.request.max.bytes


class Canary:
    """A confluent-kafka producer sending one record every 10 ms on its own thread."""

    def __init__(self, bootstrap, topic):
        from confluent_kafka import Producer

        self.topic = topic
        self.producer = Producer(
            {**rdkafka_conf(bootstrap), "acks": "all", "linger.ms": 0, "message.timeout.ms": 20000}
        )
        self.delivered = 0
        self.errors = []
        self.sent = 0
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def cb(self, err, msg):
        if err is None:
            self.delivered += 1
        else:
            self.errors.append(str(err))

    def run(self):
        deadline = time.monotonic() + 300
        while not self.stop_flag.is_set() and time.monotonic() < deadline:
            self.producer.produce(self.topic, key=b"canary", value=b"%d" % self.sent, partition=0, on_delivery=self.cb)
            self.sent += 1
            self.producer.poll(0.01)

    def wait_delivered(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        while self.delivered < n:
            assert time.monotonic() < deadline, f"canary stalled at {self.delivered} (errors {self.errors[:3]})"
            time.sleep(0.02)

    def finish(self):
        self.stop_flag.set()
        self.thread.join(timeout=10)
        assert self.producer.flush(30) == 0
        assert not self.errors, self.errors[:5]


@pytest.fixture(scope="module")
def env(shared_broker):
    topic = unique_topic("canary")
    create_topic(shared_broker.bootstrap, topic, 1)
    canary = Canary(shared_broker.bootstrap, topic)
    canary.thread.start()
    canary.wait_delivered(5)
    # an ordinary raw connection opened before all the bad ones, reused after each of them
    bystander = wire.Conn(shared_broker.bootstrap)
    yield shared_broker, canary, bystander
    bystander.close()
    canary.finish()
    # every canary record is in the log once, in order
    got = ck_consume(shared_broker.bootstrap, topic, [0])
    assert [r.value for r in got] == [b"%d" % i for i in range(canary.sent)]


def still_fine(env):
    broker, canary, bystander = env
    assert broker.alive(), f"broker died\n{broker.log_tail()}"
    r = bystander.request(wire.API_API_VERSIONS, 0, b"")
    err, apis = wire.parse_api_versions_v0(r)
    assert err == 0 and wire.API_PRODUCE in apis
    r = bystander.request(wire.API_METADATA, 1, wire.metadata_v1_body([canary.topic]))
    brokers, _, topics = wire.parse_metadata_v1(r)
    assert topics[canary.topic][0] == 0 and brokers
    canary.wait_delivered(canary.delivered + 3)


def closed_or_error_answer(conn: wire.Conn, correlation_id: int | None = None, timeout: float = 10.0) -> str:
    """Waits for the broker's reaction on a connection that sent bad bytes: 'closed' or
    'answered' (a response frame with our correlation id). Anything else fails."""
    conn.sock.settimeout(timeout)
    try:
        head = conn.recv_exact(4)
    except (ConnectionError, OSError):
        return "closed"
    size = struct.unpack(">i", head)[0]
    assert 4 <= size <= 1 << 20, f"bad response size {size}"
    body = conn.recv_exact(size)
    if correlation_id is not None:
        assert struct.unpack(">i", body[:4])[0] == correlation_id
    return "answered"


def test_garbage_frame(env):
    broker = env[0]
    with wire.Conn(broker.bootstrap) as c:
        junk = bytes([0x7F, 0x00]) + os.urandom(30)  # api key 32512: no such API
        c.send_raw(wire.frame(junk))
        assert closed_or_error_answer(c) in ("closed", "answered")
    still_fine(env)


def test_frame_over_socket_request_max_bytes(env):
    broker = env[0]
    with wire.Conn(broker.bootstrap) as c:
        # only the size prefix: the broker must refuse without waiting for (or allocating) 200 MB
        c.send_raw(struct.pack(">i", 2 * SOCKET_REQUEST_MAX_BYTES))
        assert c.closed_by_peer(timeout=10), "connection not closed after an oversized size prefix"
    still_fine(env)


def test_negative_size(env):
    broker = env[0]
    with wire.Conn(broker.bootstrap) as c:
        c.send_raw(struct.pack(">i", -5) + b"abcde")
        assert c.closed_by_peer(timeout=10), "connection not closed after a negative size"
    still_fine(env)


def test_frame_shorter_than_header(env):
    broker = env[0]
    with wire.Conn(broker.bootstrap) as c:
        c.send_raw(struct.pack(">i", 3) + b"\x00\x12\x00")
        assert c.closed_by_peer(timeout=10), "connection not closed after a 3-byte request"
    still_fine(env)


def test_unknown_api_key(env):
    broker = env[0]
    with wire.Conn(broker.bootstrap) as c:
        c.send_raw(wire.frame(wire.request_header_v1(12345, 0, 77)))
        outcome = closed_or_error_answer(c, correlation_id=77)
        assert outcome in ("closed", "answered")
    still_fine(env)


def test_unsupported_version_of_known_api(env):
    """Metadata v999: answered with UNSUPPORTED_VERSION or the connection is closed."""
    broker = env[0]
    with wire.Conn(broker.bootstrap) as c:
        c.send_raw(wire.frame(wire.request_header_v2(wire.API_METADATA, 999, 78) + b"\x00"))
        outcome = closed_or_error_answer(c, correlation_id=78)
        assert outcome in ("closed", "answered")
    still_fine(env)


def test_api_versions_v127_gets_v0_answer(env):
    """KIP-511: an ApiVersions version the broker does not know is answered in v0 format with
    UNSUPPORTED_VERSION and the full API list, and the connection stays usable."""
    broker = env[0]
    with wire.Conn(broker.bootstrap) as c:
        c.send_raw(wire.frame(wire.request_header_v2(wire.API_API_VERSIONS, 127, 5) + wire.api_versions_v3_body()))
        r = wire.Reader(c.recv_frame())
        assert r.i32() == 5
        err, apis = wire.parse_api_versions_v0(r)
        assert err == UNSUPPORTED_VERSION
        for key in (0, 1, 2, 3, 18, 19, 20, 22):  # produce fetch list-offsets metadata api-versions create/delete-topics init-producer-id
            assert key in apis, f"api {key} missing from {sorted(apis)}"
        lo, hi = apis[wire.API_API_VERSIONS]
        assert lo == 0 and hi >= 3
        # the client retries with the highest version the broker listed: v3, flexible
        r = c.request(wire.API_API_VERSIONS, 3, wire.api_versions_v3_body(), flexible=True)
        assert r.i16() == 0
        n = r.uvarint() - 1
        keys = {}
        for _ in range(n):
            key, lo3, hi3 = r.i16(), r.i16(), r.i16()
            r.skip_tags()
            keys[key] = (lo3, hi3)
        assert keys == apis
    still_fine(env)


def test_metadata_with_huge_topic_count(env):
    """A topic array count of 0x7fffffff with no bytes behind it: no allocation, no hang."""
    broker = env[0]
    with wire.Conn(broker.bootstrap) as c:
        c.send_raw(wire.frame(wire.request_header_v1(wire.API_METADATA, 1, 9) + struct.pack(">i", 0x7FFFFFFF)))
        assert closed_or_error_answer(c, correlation_id=9) in ("closed", "answered")
    still_fine(env)


def test_truncated_frame_then_disconnect(env):
    broker = env[0]
    for _ in range(20):
        with wire.Conn(broker.bootstrap) as c:
            c.send_raw(struct.pack(">i", 1000) + b"\x00\x03\x00\x01")
    still_fine(env)


def test_produce_with_corrupt_batch_crc(env):
    """A Produce whose batch fails its CRC-32C gets CORRUPT_MESSAGE (2) for that partition and
    nothing is appended."""
    broker = env[0]
    topic = unique_topic("badcrc")
    create_topic(broker.bootstrap, topic, 1)
    batch = bytearray(wire.record_batch([(b"k", b"value")]))
    batch[-1] ^= 0x01
    with wire.Conn(broker.bootstrap) as c:
        res = wire.produce_v7(c, topic, 0, bytes(batch))
        assert res["error"] == 2, res
        assert wire.list_offset_v1(c, topic, 0, -1)[2] == 0
        good = wire.produce_v7(c, topic, 0, wire.record_batch([(b"k", b"value")]))
        assert good["error"] == 0 and good["base_offset"] == 0
    still_fine(env)


def test_many_bad_connections_at_once(env):
    broker = env[0]
    conns = []
    try:
        for i in range(50):
            c = wire.Conn(broker.bootstrap)
            conns.append(c)
            c.send_raw(struct.pack(">i", -1 - i) if i % 2 else wire.frame(os.urandom(64)))
    finally:
        for c in conns:
            c.close()
    still_fine(env)
