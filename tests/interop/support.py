"""Client drivers and record checks shared by the interop tests.

Each client (kcat, confluent-kafka, kafka-python, kafkajs) gets a `produce` and a `consume`
helper over the same `Record` type, so any producer can be checked against any consumer with
`assert_records_equal`. Every loop here is bounded by a deadline and every client call has a
timeout.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import shutil
import subprocess
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
JS_DIR = REPO_ROOT / "tests/interop/js"

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]

# librdkafka's log lines go through Python logging, so pytest captures them per test (and shows
# them only for failing tests) instead of printing to the terminal.
RDKAFKA_LOGGER = logging.getLogger("librdkafka")


def rdkafka_conf(bootstrap: str, **conf) -> dict:
    """Base configuration for every confluent-kafka client in the suite."""
    return {"bootstrap.servers": bootstrap, "logger": RDKAFKA_LOGGER, **conf}


def unique_topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class Record:
    partition: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp: int | None = None  # ms; None = let the client stamp it
    offset: int | None = None  # set on consumed records

    def without_offset(self) -> "Record":
        return Record(self.partition, self.key, self.value, self.headers, self.timestamp)


def make_records(
    n: int,
    partitions: int,
    tag: str,
    *,
    text_only: bool = False,
    with_timestamps: bool = True,
    base_ts: int | None = None,
    seed: int = 7,
) -> list[Record]:
    """`n` keyed records with headers, spread round-robin over `partitions`.

    Values vary in length (0..~600 bytes) and content (repetitive and random, so codecs see both
    compressible and incompressible data). `text_only` keeps keys/values/headers printable ASCII
    without tabs/newlines (for kcat's line-based producer). Timestamps are strictly increasing
    from `base_ts` (default: one hour ago).
    """
    rng = random.Random(seed)
    if base_ts is None:
        base_ts = int(time.time() * 1000) - 3_600_000
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:;,=+/"
    out = []
    for i in range(n):
        p = i % partitions
        key = f"key-{i % 257:03d}".encode()
        length = rng.choice([0, 1, 10, 50, 100, 300, 600])
        if text_only:
            body = "".join(rng.choice(alphabet) for _ in range(length // 2)) + "x" * (length // 2)
            value = f"{tag}|{i}|{body}".encode()
            headers = (("idx", str(i).encode()), ("tag", tag.encode()))
        else:
            if i % 3 == 0:
                body = bytes(rng.getrandbits(8) for _ in range(length))
            else:
                body = (b"caudal " * (length // 7 + 1))[:length]
            value = f"{tag}|{i}|".encode() + body
            if i == 5:
                value = b""  # empty, not null
            headers = (
                ("idx", str(i).encode()),
                ("tag", tag.encode()),
                ("bin", bytes([i % 256, 0, 255])),
            )
            if i % 100 == 7:
                headers = headers + (("empty", b""),)
        ts = base_ts + i if with_timestamps else None
        out.append(Record(p, key, value, headers, ts))
    return out


def by_partition(records) -> dict[int, list[Record]]:
    parts: dict[int, list[Record]] = defaultdict(list)
    for r in records:
        parts[r.partition].append(r)
    return parts


def assert_offsets_dense(got: list[Record], start: int = 0) -> None:
    for p, recs in by_partition(got).items():
        offsets = [r.offset for r in recs]
        want = list(range(start, start + len(recs)))
        if offsets != want:
            bad = next(i for i, (a, b) in enumerate(zip(offsets, want + [None] * len(offsets))) if a != b)
            raise AssertionError(
                f"partition {p}: offsets not dense from {start}: first mismatch at position {bad}: "
                f"got {offsets[max(0, bad - 2) : bad + 3]} want {want[max(0, bad - 2) : bad + 3]}"
            )


def assert_records_equal(
    expected: list[Record],
    got: list[Record],
    *,
    check_timestamps: bool = True,
    ts_window: tuple[int, int] | None = None,
) -> None:
    """Same records per partition, in order, with dense offsets from 0.

    With `check_timestamps`, each record's timestamp must equal the expected one; when the
    expected record has no timestamp (client-stamped), it must lie within `ts_window` and be
    non-decreasing per partition.
    """
    exp = by_partition(expected)
    act = by_partition(got)
    assert sorted(act) == sorted(exp), f"partitions: got {sorted(act)} want {sorted(exp)}"
    assert_offsets_dense(got)
    for p in sorted(exp):
        e, a = exp[p], act[p]
        assert len(a) == len(e), f"partition {p}: got {len(a)} records, want {len(e)}"
        last_ts = None
        for i, (er, ar) in enumerate(zip(e, a)):
            where = f"partition {p} offset {ar.offset}"
            assert ar.key == er.key, f"{where}: key {ar.key!r} != {er.key!r}"
            assert ar.value == er.value, f"{where}: value {_short(ar.value)} != {_short(er.value)}"
            assert tuple(ar.headers) == tuple(er.headers), f"{where}: headers {ar.headers} != {er.headers}"
            if check_timestamps:
                if er.timestamp is not None:
                    assert ar.timestamp == er.timestamp, f"{where}: timestamp {ar.timestamp} != {er.timestamp}"
                else:
                    assert ts_window is not None
                    lo, hi = ts_window
                    assert lo <= ar.timestamp <= hi, f"{where}: timestamp {ar.timestamp} outside [{lo},{hi}]"
                    if last_ts is not None:
                        assert ar.timestamp >= last_ts, f"{where}: timestamp went backwards"
                    last_ts = ar.timestamp


def _short(v: bytes | None) -> str:
    if v is None:
        return "None"
    return repr(v[:40]) + (f"...({len(v)} bytes)" if len(v) > 40 else "")


def now_ms() -> int:
    return int(time.time() * 1000)


# ---- confluent-kafka (librdkafka) -------------------------------------------------------------


_ADMINS: dict = {}


def ck_admin(bootstrap: str):
    """One AdminClient per bootstrap address, kept alive for the session: a client that is
    garbage-collected while a request is outstanding fails that request with _DESTROY."""
    from confluent_kafka.admin import AdminClient

    if bootstrap not in _ADMINS:
        _ADMINS[bootstrap] = AdminClient(rdkafka_conf(bootstrap, **{"socket.timeout.ms": 10000}))
    return _ADMINS[bootstrap]


def forget_admin(bootstrap: str) -> None:
    """Drops the cached AdminClient of a broker that stopped (it would retry forever)."""
    _ADMINS.pop(bootstrap, None)


def create_topic(bootstrap: str, topic: str, partitions: int = 3, config: dict | None = None, timeout: float = 20):
    from confluent_kafka.admin import NewTopic

    fs = ck_admin(bootstrap).create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    fs[topic].result(timeout=timeout)
    wait_topic_ready(bootstrap, topic, partitions)


def wait_topic_ready(bootstrap: str, topic: str, partitions: int, timeout: float = 20):
    admin = ck_admin(bootstrap)
    deadline = time.monotonic() + timeout
    while True:
        md = admin.list_topics(topic=topic, timeout=5)
        t = md.topics.get(topic)
        if t is not None and t.error is None and len(t.partitions) == partitions:
            if all(pm.leader >= 0 for pm in t.partitions.values()):
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"topic {topic} not ready with {partitions} partitions: {t and t.error}")
        time.sleep(0.1)


def ck_produce(
    bootstrap: str,
    topic: str,
    records: list[Record],
    *,
    compression: str = "none",
    extra: dict | None = None,
    timeout: float = 120,
) -> list[tuple[int, int]]:
    """Produces with confluent-kafka, returns [(partition, offset)] in record order. Raises on
    any delivery error."""
    from confluent_kafka import Producer

    conf = {
        **rdkafka_conf(bootstrap),
        "compression.type": compression,
        "acks": "all",
        "linger.ms": 5,
        "batch.num.messages": 1000,
        "message.timeout.ms": int(timeout * 1000),
        "socket.timeout.ms": 10000,
    }
    conf.update(extra or {})
    p = Producer(conf)
    results: list = [None] * len(records)
    errors: list = []

    def report(i):
        def cb(err, msg):
            if err is not None:
                errors.append((i, err))
            else:
                results[i] = (msg.partition(), msg.offset())

        return cb

    deadline = time.monotonic() + timeout
    for i, r in enumerate(records):
        kwargs = dict(topic=topic, key=r.key, value=r.value, headers=list(r.headers), partition=r.partition)
        if r.timestamp is not None:
            kwargs["timestamp"] = r.timestamp
        while True:
            try:
                p.produce(on_delivery=report(i), **kwargs)
                break
            except BufferError:
                p.poll(0.05)
                if time.monotonic() > deadline:
                    raise AssertionError("producer queue stayed full")
        p.poll(0)
    remaining = p.flush(max(1.0, deadline - time.monotonic()))
    assert remaining == 0, f"{remaining} messages not delivered within {timeout}s"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:3]}"
    return results


def ck_consumer(bootstrap: str, extra: dict | None = None):
    from confluent_kafka import Consumer

    conf = {
        **rdkafka_conf(bootstrap),
        "group.id": f"interop-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
        "check.crcs": True,  # verify the CRC-32C of every fetched batch
        "fetch.wait.max.ms": 100,
        "socket.timeout.ms": 10000,
    }
    conf.update(extra or {})
    return Consumer(conf)


def ck_consume(
    bootstrap: str,
    topic: str,
    partitions,
    *,
    start: dict[int, int] | None = None,
    timeout: float = 60,
    limit: int | None = None,
) -> list[Record]:
    """Reads `partitions` (from `start[p]`, default beginning) until end-of-partition on all of
    them (or `limit` records), with confluent-kafka's Consumer on a manual assignment."""
    from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

    c = ck_consumer(bootstrap)
    try:
        c.assign([TopicPartition(topic, p, (start or {}).get(p, OFFSET_BEGINNING)) for p in partitions])
        out: list[Record] = []
        at_eof: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(at_eof) < len(partitions) and (limit is None or len(out) < limit):
            if time.monotonic() > deadline:
                raise AssertionError(f"consume timed out: {len(out)} records, eof on {sorted(at_eof)}")
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_eof.add(msg.partition())
                    continue
                if msg.error().fatal() or msg.topic() == topic:
                    raise AssertionError(f"consume error: {msg.error()}")
                continue  # group-coordinator noise etc.
            at_eof.discard(msg.partition())
            _, ts = msg.timestamp()
            out.append(
                Record(
                    msg.partition(),
                    msg.key(),
                    msg.value(),
                    tuple(msg.headers() or ()),
                    ts,
                    msg.offset(),
                )
            )
        return out
    finally:
        c.close()


# ---- kafka-python -----------------------------------------------------------------------------


def kp_produce(
    bootstrap: str, topic: str, records: list[Record], *, compression: str = "none", extra: dict | None = None
) -> list[tuple[int, int]]:
    from kafka import KafkaProducer

    conf = dict(
        bootstrap_servers=bootstrap,
        acks="all",
        compression_type=None if compression == "none" else compression,
        linger_ms=5,
        batch_size=64 * 1024,
        request_timeout_ms=30000,
        max_block_ms=30000,
    )
    conf.update(extra or {})
    p = KafkaProducer(**conf)
    try:
        futures = []
        for r in records:
            futures.append(
                p.send(
                    topic,
                    key=r.key,
                    value=r.value,
                    headers=list(r.headers),
                    partition=r.partition,
                    timestamp_ms=r.timestamp,
                )
            )
        p.flush(timeout=120)
        out = []
        for f in futures:
            md = f.get(timeout=30)
            out.append((md.partition, md.offset))
        return out
    finally:
        p.close(timeout=10)


def kp_consumer(bootstrap: str, **extra):
    from kafka import KafkaConsumer

    conf = dict(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        request_timeout_ms=30000,
        consumer_timeout_ms=1000,
    )
    conf.update(extra)
    return KafkaConsumer(**conf)


def kp_consume(
    bootstrap: str, topic: str, partitions, *, expected_total: int, timeout: float = 60
) -> list[Record]:
    """Reads `partitions` from the beginning up to their end offsets (ListOffsets latest)."""
    from kafka import TopicPartition

    c = kp_consumer(bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        ends = c.end_offsets(tps)
        assert sum(ends.values()) == expected_total, f"end offsets {ends} do not add up to {expected_total}"
        out: list[Record] = []
        done = {tp.partition: ends[tp] == 0 for tp in tps}
        deadline = time.monotonic() + timeout
        while not all(done.values()):
            if time.monotonic() > deadline:
                raise AssertionError(f"kafka-python consume timed out with {len(out)} records")
            batch = c.poll(timeout_ms=500, max_records=2000)
            for tp, msgs in batch.items():
                for m in msgs:
                    out.append(
                        Record(m.partition, m.key, m.value, tuple(m.headers or ()), m.timestamp, m.offset)
                    )
                    if m.offset + 1 >= ends[tp]:
                        done[tp.partition] = True
        return out
    finally:
        c.close()


# ---- kcat ---------------------------------------------------------------------------------------


def kcat_bin() -> str:
    path = shutil.which("kcat") or shutil.which("kafkacat")
    if not path:
        raise AssertionError("kcat is not installed (scripts/install-test-deps.sh installs it)")
    return path


def kcat_produce(
    bootstrap: str,
    topic: str,
    partition: int,
    records: list[Record],
    *,
    compression: str = "none",
    headers: list[tuple[str, str]] = (),
    timeout: float = 120,
) -> None:
    """One kcat producer process for one partition; lines `key<TAB>value` on stdin."""
    lines = []
    for r in records:
        assert r.partition == partition
        assert b"\t" not in r.key and b"\n" not in r.key and b"\n" not in r.value
        lines.append(r.key + b"\t" + r.value)
    cmd = [kcat_bin(), "-P", "-b", bootstrap, "-t", topic, "-p", str(partition), "-K", "\t", "-q"]
    cmd += ["-z", compression] if compression != "none" else []
    for k, v in headers:
        cmd += ["-H", f"{k}={v}"]
    cmd += ["-X", "acks=all", "-X", "linger.ms=5", "-X", "message.timeout.ms=60000"]
    res = subprocess.run(cmd, input=b"\n".join(lines) + b"\n", capture_output=True, timeout=timeout)
    assert res.returncode == 0, f"kcat produce failed ({res.returncode}): {res.stderr.decode(errors='replace')}"


def kcat_consume(bootstrap: str, topic: str, *, partition: int | None = None, offset: str = "beginning",
                 count: int | None = None, timeout: float = 120) -> list[Record]:
    """kcat -C -J from `offset` to the end (-e); parses the JSON envelope per message."""
    cmd = [kcat_bin(), "-C", "-b", bootstrap, "-t", topic, "-o", offset, "-e", "-J", "-q"]
    if partition is not None:
        cmd += ["-p", str(partition)]
    if count is not None:
        cmd += ["-c", str(count)]
    res = subprocess.run(cmd, capture_output=True, timeout=timeout)
    assert res.returncode == 0, f"kcat consume failed ({res.returncode}): {res.stderr.decode(errors='replace')}"
    out = []
    for line in res.stdout.splitlines():
        if not line.strip():
            continue
        m = json.loads(line)
        hdrs = m.get("headers") or []
        headers = tuple((hdrs[i], None if hdrs[i + 1] is None else hdrs[i + 1].encode()) for i in range(0, len(hdrs), 2))
        out.append(
            Record(
                m["partition"],
                None if m.get("key") is None else m["key"].encode(),
                None if m.get("payload") is None else m["payload"].encode(),
                headers,
                m.get("ts"),
                m["offset"],
            )
        )
    return out


# ---- kafkajs ------------------------------------------------------------------------------------


def js(command: str, request: dict, timeout: float = 180) -> dict:
    if not (JS_DIR / "node_modules/kafkajs").exists():
        raise AssertionError("kafkajs not installed: run scripts/install-test-deps.sh")
    res = subprocess.run(
        ["node", str(JS_DIR / "client.js"), command],
        input=json.dumps(request).encode(),
        capture_output=True,
        timeout=timeout,
        cwd=JS_DIR,
    )
    if res.returncode != 0:
        raise JsError(command, res.returncode, res.stderr.decode(errors="replace"))
    return json.loads(res.stdout)


class JsError(AssertionError):
    def __init__(self, command, code, stderr):
        super().__init__(f"kafkajs {command} exited {code}: {stderr[-3000:]}")
        self.stderr = stderr


def _b64(b: bytes | None):
    return None if b is None else base64.b64encode(b).decode()


def _unb64(s):
    return None if s is None else base64.b64decode(s)


def js_produce(bootstrap: str, topic: str, records: list[Record], *, compression="none", idempotent=False,
               chunk=500) -> dict:
    req = {
        "brokers": [bootstrap],
        "topic": topic,
        "compression": compression,
        "idempotent": idempotent,
        "chunk": chunk,
        "records": [
            {
                "partition": r.partition,
                "key": _b64(r.key),
                "value": _b64(r.value),
                "headers": [[k, _b64(v)] for k, v in r.headers],
                "timestamp": r.timestamp,
            }
            for r in records
        ],
    }
    return js("produce", req)


def js_fetch(bootstrap: str, topic: str, partitions, timeout_ms: int = 60000) -> list[Record]:
    res = js("fetch", {"brokers": [bootstrap], "topic": topic, "partitions": list(partitions), "timeoutMs": timeout_ms})
    return [
        Record(
            r["partition"],
            _unb64(r["key"]),
            _unb64(r["value"]),
            tuple((k, _unb64(v)) for k, v in r["headers"]),
            r["timestamp"],
            r["offset"],
        )
        for r in res["records"]
    ]
