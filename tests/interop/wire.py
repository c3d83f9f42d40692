"""A minimal Kafka wire-protocol encoder/decoder for raw-socket tests.

Only what the tests need: request headers v1/v2, ApiVersions, Metadata v1, InitProducerId v0,
Produce v7, ListOffsets v1, and v2 record batches with CRC-32C. Written from the protocol
specification; it exists so tests can send exactly the bytes they mean, including wrong ones.
"""

from __future__ import annotations

import socket
import struct
import time

# ---- CRC-32C (Castagnoli), table driven --------------------------------------------------------
_CRC32C_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC32C_TABLE.append(_c)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the standard check value


# ---- primitive encoders -------------------------------------------------------------------------
def i8(v):
    return struct.pack(">b", v)


def i16(v):
    return struct.pack(">h", v)


def i32(v):
    return struct.pack(">i", v)


def u32(v):
    return struct.pack(">I", v)


def i64(v):
    return struct.pack(">q", v)


def string(s: str | None) -> bytes:
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def nbytes(b: bytes | None) -> bytes:
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(v: int) -> bytes:
    return uvarint((v << 1) ^ (v >> 63))


def compact_string(s: str | None) -> bytes:
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


# ---- decoder --------------------------------------------------------------------------------------
class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"short read: want {n} at {self.pos}, have {len(self.data) - self.pos}")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def i8(self):
        return struct.unpack(">b", self.take(1))[0]

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def i64(self):
        return struct.unpack(">q", self.take(8))[0]

    def string(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def uvarint(self):
        shift = 0
        v = 0
        while True:
            b = self.take(1)[0]
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                return v
            shift += 7
            if shift > 63:
                raise ValueError("varint too long")

    def compact_string(self):
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode()

    def skip_tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())

    def remaining(self) -> int:
        return len(self.data) - self.pos


# ---- framing ----------------------------------------------------------------------------------------
API_PRODUCE = 0
API_FETCH = 1
API_LIST_OFFSETS = 2
API_METADATA = 3
API_API_VERSIONS = 18
API_INIT_PRODUCER_ID = 22


def request_header_v1(api_key: int, version: int, correlation_id: int, client_id: str = "wire-test") -> bytes:
    return i16(api_key) + i16(version) + i32(correlation_id) + string(client_id)


def request_header_v2(api_key: int, version: int, correlation_id: int, client_id: str = "wire-test") -> bytes:
    return request_header_v1(api_key, version, correlation_id, client_id) + uvarint(0)


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


class Conn:
    """One blocking TCP connection with a timeout on every operation."""

    def __init__(self, bootstrap: str, timeout: float = 10.0):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.settimeout(timeout)
        self.correlation_id = 0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_frame(self) -> bytes:
        size = struct.unpack(">i", self.recv_exact(4))[0]
        if size < 0 or size > 64 * 1024 * 1024:
            raise ValueError(f"bad response size {size}")
        return self.recv_exact(size)

    def request(self, api_key: int, version: int, body: bytes, *, flexible: bool = False) -> Reader:
        """Sends one request and returns a Reader positioned after the correlation id (and, for
        flexible responses other than ApiVersions, after the header tagged fields)."""
        self.correlation_id += 1
        cid = self.correlation_id
        header = (request_header_v2 if flexible else request_header_v1)(api_key, version, cid)
        self.send_raw(frame(header + body))
        r = Reader(self.recv_frame())
        got = r.i32()
        if got != cid:
            raise AssertionError(f"correlation id {got} != {cid}")
        if flexible and api_key != API_API_VERSIONS:
            r.skip_tags()
        return r

    def closed_by_peer(self, timeout: float = 10.0) -> bool:
        """True if the peer closes the connection (EOF or reset) within `timeout`; reads and
        discards anything sent before that."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                if not self.sock.recv(65536):
                    return True
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                return True
        return False


# ---- ApiVersions ----------------------------------------------------------------------------------
def parse_api_versions_v0(r: Reader):
    error = r.i16()
    apis = {}
    for _ in range(r.i32()):
        key, lo, hi = r.i16(), r.i16(), r.i16()
        apis[key] = (lo, hi)
    return error, apis


def api_versions_v3_body() -> bytes:
    return compact_string("caudal-wire-test") + compact_string("1.0") + uvarint(0)


# ---- Metadata v1 ------------------------------------------------------------------------------------
def metadata_v1_body(topics: list[str] | None) -> bytes:
    if topics is None:
        return i32(-1)
    return i32(len(topics)) + b"".join(string(t) for t in topics)


def parse_metadata_v1(r: Reader):
    brokers = []
    for _ in range(r.i32()):
        node, host, port, rack = r.i32(), r.string(), r.i32(), r.string()
        brokers.append((node, host, port, rack))
    controller = r.i32()
    topics = {}
    for _ in range(r.i32()):
        err, name, internal = r.i16(), r.string(), r.i8()
        parts = {}
        for _ in range(r.i32()):
            perr, idx, leader = r.i16(), r.i32(), r.i32()
            replicas = [r.i32() for _ in range(r.i32())]
            isr = [r.i32() for _ in range(r.i32())]
            parts[idx] = (perr, leader, replicas, isr)
        topics[name] = (err, parts)
    return brokers, controller, topics


# ---- InitProducerId v0 ------------------------------------------------------------------------------
def init_producer_id(conn: Conn) -> tuple[int, int]:
    r = conn.request(API_INIT_PRODUCER_ID, 0, string(None) + i32(60000))
    r.i32()  # throttle
    err = r.i16()
    pid, epoch = r.i64(), r.i16()
    if err != 0:
        raise AssertionError(f"InitProducerId error {err}")
    return pid, epoch


# ---- record batches ---------------------------------------------------------------------------------
def record(offset_delta: int, ts_delta: int, key: bytes | None, value: bytes | None, headers=()) -> bytes:
    body = i8(0) + varint(ts_delta) + varint(offset_delta)
    body += varint(-1) if key is None else varint(len(key)) + key
    body += varint(-1) if value is None else varint(len(value)) + value
    body += varint(len(headers))
    for hk, hv in headers:
        kb = hk.encode()
        body += varint(len(kb)) + kb
        body += varint(-1) if hv is None else varint(len(hv)) + hv
    return varint(len(body)) + body


def record_batch(
    records: list[tuple[bytes | None, bytes | None]],
    *,
    base_timestamp: int | None = None,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    attributes: int = 0,
) -> bytes:
    """An uncompressed v2 batch with base offset 0 and a correct CRC-32C."""
    if base_timestamp is None:
        base_timestamp = int(time.time() * 1000)
    recs = b"".join(record(i, 0, k, v) for i, (k, v) in enumerate(records))
    after_crc = (
        i16(attributes)
        + i32(len(records) - 1)
        + i64(base_timestamp)
        + i64(base_timestamp)
        + i64(producer_id)
        + i16(producer_epoch)
        + i32(base_sequence)
        + i32(len(records))
        + recs
    )
    # batchLength counts from partitionLeaderEpoch to the end
    batch_length = 4 + 1 + 4 + len(after_crc)
    return i64(0) + i32(batch_length) + i32(-1) + i8(2) + u32(crc32c(after_crc)) + after_crc


# ---- Produce v7 ---------------------------------------------------------------------------------------
def produce_v7(conn: Conn, topic: str, partition: int, batch: bytes, acks: int = -1, timeout_ms: int = 30000):
    body = string(None) + i16(acks) + i32(timeout_ms) + i32(1) + string(topic) + i32(1) + i32(partition) + nbytes(batch)
    r = conn.request(API_PRODUCE, 7, body)
    out = {}
    for _ in range(r.i32()):
        name = r.string()
        for _ in range(r.i32()):
            idx, err, base, append_time, log_start = r.i32(), r.i16(), r.i64(), r.i64(), r.i64()
            out[(name, idx)] = {"error": err, "base_offset": base, "log_start_offset": log_start}
    return out[(topic, partition)]


# ---- ListOffsets v1 -------------------------------------------------------------------------------------
def list_offset_v1(conn: Conn, topic: str, partition: int, timestamp: int) -> tuple[int, int, int]:
    """Returns (error, timestamp, offset); timestamp -1 = latest, -2 = earliest."""
    body = i32(-1) + i32(1) + string(topic) + i32(1) + i32(partition) + i64(timestamp)
    r = conn.request(API_LIST_OFFSETS, 1, body)
    r.i32()  # topics
    r.string()
    r.i32()
    r.i32()
    err, ts, off = r.i16(), r.i64(), r.i64()
    return err, ts, off


# ---- Metadata v4 (allow_auto_topic_creation) ----------------------------------------------------------
def metadata_v4(conn: Conn, topics: list[str] | None, allow_auto_topic_creation: bool):
    body = (i32(-1) if topics is None else i32(len(topics)) + b"".join(string(t) for t in topics)) + i8(
        1 if allow_auto_topic_creation else 0
    )
    r = conn.request(API_METADATA, 4, body)
    r.i32()  # throttle
    brokers = []
    for _ in range(r.i32()):
        brokers.append((r.i32(), r.string(), r.i32(), r.string()))
    r.string()  # cluster id
    r.i32()  # controller
    out = {}
    for _ in range(r.i32()):
        err, name, _internal = r.i16(), r.string(), r.i8()
        parts = {}
        for _ in range(r.i32()):
            perr, idx, leader = r.i16(), r.i32(), r.i32()
            [r.i32() for _ in range(r.i32())]
            [r.i32() for _ in range(r.i32())]
            parts[idx] = (perr, leader)
        out[name] = (err, parts)
    return brokers, out
