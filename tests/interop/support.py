"""Client drivers and record checks shared by the interop tests.

Each client (kcat, confluent-kafka, kafka-python, kafkajs) gets a `produce` and a `consume`
helper over the same `Record` type, so any producer can be checked against any consumer with
`assert_records_equal`. Every loop here is bounded by a deadline and every client call has a
timeout.

Consumer groups: `GroupMember` runs one group member per process (this file is also the Python
members' entry point: `python support.py group-member CONF`), and `GroupLog` checks what the
members of a group processed and committed (see docs/testing.md, "Consumer groups").
"""

from __future__ import annotations

import atexit
import base64
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
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


# ---- consumer-group members ---------------------------------------------------------------------
#
# Each member of a consumer group runs in its own process (`python support.py group-member CONF`
# for confluent-kafka and kafka-python, `node js/group_consumer.js member CONF` for kafkajs), so
# that SIGKILL is a real crash: no LeaveGroup, no last commit. A member subscribes to one topic
# and loops: poll a batch -> print a `records` line -> "process" (sleep process_delay_ms) ->
# print `committing` -> commit the batch's next offsets synchronously -> print `committed` or
# `commit_failed`. Rebalances are printed as `assigned`/`revoked`/`lost` (partition deltas, as the
# client's rebalance listener sees them) or, for kafkajs, `assignment` (the full new assignment
# after each join) and `rebalancing`. Every line is one JSON object with `ev` and `t` (wall-clock
# ms). SIGTERM closes the consumer cleanly (LeaveGroup for dynamic members) and prints `closed`.
# A fatal client error (for example FENCED_INSTANCE_ID) prints `error` with fatal=true and exits 3.

MEMBER_EXIT_FATAL = 3


def _member_emit(ev: str, **fields) -> None:
    sys.stdout.write(json.dumps({"ev": ev, "t": now_ms(), **fields}) + "\n")
    sys.stdout.flush()


def _text(v: bytes | None) -> str | None:
    return None if v is None else v.decode("utf-8", errors="replace")


def _ck_member(conf: dict, stop: threading.Event) -> int:
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    topic = conf["topic"]
    fatal: list = []

    def on_error(err) -> None:
        # librdkafka reports a fatal error (FENCED_INSTANCE_ID for a fenced static member) as an
        # error event _FATAL, whose fatal() is false
        is_fatal = err.fatal() or err.code() == KafkaError._FATAL
        _member_emit("error", code=err.code(), name=err.name(), message=err.str(), fatal=is_fatal)
        if is_fatal:
            fatal.append(err)

    cconf = {
        "bootstrap.servers": conf["bootstrap"],
        "group.id": conf["group"],
        "client.id": conf["name"],
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": conf.get("session_timeout_ms", 6000),
        "heartbeat.interval.ms": conf.get("heartbeat_interval_ms", 500),
        "fetch.wait.max.ms": 100,
        "socket.timeout.ms": 10000,
        "error_cb": on_error,
    }
    if conf.get("strategy"):
        cconf["partition.assignment.strategy"] = conf["strategy"]
    if conf.get("instance_id"):
        cconf["group.instance.id"] = conf["instance_id"]
    if conf.get("debug"):
        cconf["debug"] = conf["debug"]
    c = Consumer(cconf)

    def parts(tps):
        return sorted(tp.partition for tp in tps if tp.topic == topic)

    def on_assign(consumer, tps):
        _member_emit("assigned", partitions=parts(tps), member_id=consumer.memberid())

    def on_revoke(consumer, tps):
        _member_emit("revoked", partitions=parts(tps))

    def on_lost(consumer, tps):
        _member_emit("lost", partitions=parts(tps))

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    _member_emit("started")
    delay = conf.get("process_delay_ms", 0) / 1000
    while not stop.is_set() and not fatal:
        try:
            msgs = c.consume(num_messages=conf.get("max_records", 100), timeout=0.1)
        except KafkaException as e:
            on_error(e.args[0])
            continue
        batch = []
        for m in msgs:
            if m.error():
                on_error(m.error())
                continue
            batch.append(m)
        if not batch:
            continue
        _member_emit("records", records=[[m.partition(), m.offset(), _text(m.value())] for m in batch])
        if delay:
            time.sleep(delay)
        offsets: dict[int, int] = {}
        for m in batch:
            offsets[m.partition()] = max(offsets.get(m.partition(), 0), m.offset() + 1)
        _member_emit("committing", offsets=offsets)
        try:
            res = c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
            bad = [tp for tp in res or () if tp.error is not None]
            if bad:
                _member_emit("commit_failed", error=str(bad[0].error), partition=bad[0].partition)
            else:
                _member_emit("committed", offsets=offsets)
        except KafkaException as e:
            err = e.args[0]
            _member_emit("commit_failed", error=str(err), name=getattr(err, "name", lambda: "")())
            if getattr(err, "fatal", lambda: False)():
                fatal.append(err)
    if fatal:
        return MEMBER_EXIT_FATAL
    c.close()
    _member_emit("closed")
    return 0


def _kp_member(conf: dict, stop: threading.Event) -> int:
    import kafka.errors as Errors
    from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from kafka.structs import OffsetAndMetadata

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if conf.get("debug") else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    topic = conf["topic"]
    kconf = dict(
        bootstrap_servers=conf["bootstrap"],
        group_id=conf["group"],
        client_id=conf["name"],
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=conf.get("session_timeout_ms", 6000),
        heartbeat_interval_ms=conf.get("heartbeat_interval_ms", 500),
        fetch_max_wait_ms=100,
        max_poll_records=conf.get("max_records", 100),
        request_timeout_ms=30000,
    )
    strategies = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}
    if conf.get("strategy"):
        kconf["partition_assignment_strategy"] = [strategies[s] for s in conf["strategy"].split(",")]
    if conf.get("instance_id"):
        kconf["group_instance_id"] = conf["instance_id"]
    c = KafkaConsumer(**kconf)

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            _member_emit("revoked", partitions=sorted(tp.partition for tp in revoked if tp.topic == topic))

        def on_partitions_assigned(self, assigned):
            _member_emit("assigned", partitions=sorted(tp.partition for tp in assigned if tp.topic == topic))

        def on_partitions_lost(self, lost):
            _member_emit("lost", partitions=sorted(tp.partition for tp in lost if tp.topic == topic))

    c.subscribe([topic], listener=Listener())
    _member_emit("started")
    delay = conf.get("process_delay_ms", 0) / 1000

    def fatal_error(e) -> int:
        _member_emit("error", name=type(e).__name__, code=getattr(e, "errno", None), message=str(e), fatal=True)
        return MEMBER_EXIT_FATAL

    while not stop.is_set():
        try:
            # kafka-python 3.0.12 can lose a SyncGroup answer when poll()'s timeout expires
            # while a join is in flight ("timeout in ensure_active_group; returning early"): it
            # never re-enables heartbeats and the broker expires it. A longer timeout makes that
            # window rare; poll() still returns as soon as records arrive.
            polled = c.poll(timeout_ms=1000)
        except Errors.FencedInstanceIdError as e:
            return fatal_error(e)
        except Errors.KafkaError as e:
            _member_emit("error", name=type(e).__name__, code=getattr(e, "errno", None), message=str(e), fatal=False)
            continue
        batch = [m for tp in sorted(polled, key=lambda tp: tp.partition) for m in polled[tp]]
        if not batch:
            continue
        _member_emit("records", records=[[m.partition, m.offset, _text(m.value)] for m in batch])
        if delay:
            time.sleep(delay)
        offsets: dict[int, int] = {}
        for m in batch:
            offsets[m.partition] = max(offsets.get(m.partition, 0), m.offset + 1)
        _member_emit("committing", offsets=offsets)
        try:
            c.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()})
            _member_emit("committed", offsets=offsets)
        except Errors.FencedInstanceIdError as e:
            _member_emit("commit_failed", error=str(e), name=type(e).__name__)
            return fatal_error(e)
        except Errors.KafkaError as e:
            _member_emit("commit_failed", error=str(e), name=type(e).__name__)
    c.close()
    _member_emit("closed")
    return 0


def group_member_main(argv: list[str]) -> int:
    conf = json.loads(argv[0])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if conf["client"] == "ck":
        return _ck_member(conf, stop)
    if conf["client"] == "kp":
        return _kp_member(conf, stop)
    raise SystemExit(f"unknown client {conf['client']}")


class GroupMember:
    """One group member process (see above) and the events it printed.

    `client` is "ck" (confluent-kafka), "kp" (kafka-python) or "js" (kafkajs). `conf` keys:
    bootstrap, topic, group, and optionally session_timeout_ms, heartbeat_interval_ms, strategy
    (client strategy names, comma-separated), instance_id (group.instance.id), process_delay_ms,
    max_records, protocol_name (kafkajs: publish its round-robin assigner under this name), debug.
    The member's client.id is its `name`, so DescribeGroups answers can be matched to members.
    """

    def __init__(self, name: str, client: str, conf: dict, log_dir: Path):
        self.name = name
        self.client = client
        self.conf = {**conf, "name": name}
        if os.environ.get("GROUP_MEMBER_DEBUG") and client != "js":
            # client debug logs into the member's log: librdkafka's cgrp context, kafka-python DEBUG
            self.conf.setdefault("debug", "cgrp" if client == "ck" else True)
        self.log_path = log_dir / f"member-{name}.log"
        self.proc: subprocess.Popen | None = None
        self._events: list[dict] = []
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self.killed_at_ms: int | None = None

    def command(self) -> list[str]:
        if self.client == "js":
            c = self.conf
            js_conf = {
                "bootstrap": c["bootstrap"],
                "topic": c["topic"],
                "group": c["group"],
                "name": c["name"],
                "sessionTimeoutMs": c.get("session_timeout_ms", 6000),
                "heartbeatIntervalMs": c.get("heartbeat_interval_ms", 500),
                "processDelayMs": c.get("process_delay_ms", 0),
                "protocolName": c.get("protocol_name"),
            }
            if not (JS_DIR / "node_modules/kafkajs").exists():
                raise AssertionError("kafkajs not installed: run scripts/install-test-deps.sh")
            return ["node", str(JS_DIR / "group_consumer.js"), "member", json.dumps(js_conf)]
        return [sys.executable, str(Path(__file__).resolve()), "group-member", json.dumps({"client": self.client, **self.conf})]

    def start(self) -> "GroupMember":
        assert self.proc is None, f"member {self.name} already started"
        log = open(self.log_path, "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAUDAL_")}
        env["PYTHONUNBUFFERED"] = "1"
        env["KAFKAJS_NO_PARTITIONER_WARNING"] = "1"
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=Path(__file__).resolve().parent,
            env=env,
            start_new_session=True,
        )
        log.close()
        _LIVE_MEMBERS.add(self)
        self._reader = threading.Thread(target=self._read, name=f"member-{self.name}", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = {"ev": "stdout", "t": now_ms(), "line": line}
            with self._lock:
                self._events.append(event)

    # ---- lifecycle ----------------------------------------------------------------------------
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the client gets no chance to leave the group or commit."""
        assert self.proc is not None
        self.killed_at_ms = now_ms()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM: the member closes its consumer (LeaveGroup) and exits; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.cleanup()
                raise AssertionError(f"member {self.name} did not exit within {timeout}s of SIGTERM\n{self.report()}")
        if self._reader is not None:
            self._reader.join(timeout=5)
        return self.proc.returncode

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"member {self.name} still running after {timeout}s\n{self.report()}")
        if self._reader is not None:
            self._reader.join(timeout=5)
        return self.proc.returncode

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        _LIVE_MEMBERS.discard(self)

    # ---- what it printed ----------------------------------------------------------------------
    def events(self, ev: str | None = None) -> list[dict]:
        with self._lock:
            evs = list(self._events)
        return evs if ev is None else [e for e in evs if e["ev"] == ev]

    def assignment(self) -> set[int]:
        """The partitions the member currently owns, per its own rebalance events."""
        owned: set[int] = set()
        for e in self.events():
            if e["ev"] == "assigned":
                owned |= set(e["partitions"])
            elif e["ev"] in ("revoked", "lost"):
                owned -= set(e["partitions"])
            elif e["ev"] == "assignment":
                owned = set(e["partitions"])
            elif e["ev"] == "rebalancing":
                owned = set()
        return owned

    def rebalance_events(self, since_ms: int = 0) -> list[dict]:
        return [
            e
            for e in self.events()
            if e["ev"] in ("assigned", "revoked", "lost", "assignment", "rebalancing") and e["t"] >= since_ms
        ]

    def fatal_errors(self) -> list[dict]:
        return [e for e in self.events("error") if e.get("fatal")]

    def stderr_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def report(self, lines: int = 40) -> str:
        evs = self.events()
        summary = []
        for e in evs[-lines:]:
            if e["ev"] == "records":
                recs = e["records"]
                summary.append(f"  {e['t']} records {len(recs)}: {recs[0][:2]}..{recs[-1][:2]}")
            else:
                summary.append(f"  {json.dumps(e)[:300]}")
        state = "running" if self.alive() else f"exited {self.proc.returncode if self.proc else None}"
        return (
            f"--- member {self.name} ({self.client}, {state}): last {min(lines, len(evs))} of {len(evs)} events ---\n"
            + "\n".join(summary)
            + f"\n--- member {self.name} stderr ({self.log_path}) ---\n"
            + self.stderr_tail(lines)
        )


_LIVE_MEMBERS: set = set()


@atexit.register
def kill_leftover_members() -> None:
    """Kills every member process still running (fixtures call it at teardown; it also runs at
    exit in case a teardown never did)."""
    for m in list(_LIVE_MEMBERS):
        m.cleanup()


def wait_until(predicate, timeout: float, what: str, members=(), interval: float = 0.1):
    """Polls `predicate()` until it returns a truthy value (returned) or `timeout` passes
    (AssertionError naming `what`, with the members' recent events and logs)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            reports = "\n".join(m.report() for m in members)
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{reports}")
        time.sleep(interval)


@dataclass
class Delivery:
    """One record handed to one member's processing."""

    member: str
    partition: int
    offset: int
    value: str | None
    t: int
    seq: int  # position in the member's event stream
    run_start: bool = False  # first record of a partition after the member was (re)assigned it
    confirmed_ms: int | None = None  # when this member's commit covering the record succeeded
    confirmed_seq: int | None = None


@dataclass
class CommitAttempt:
    member: str
    t: int
    seq: int
    offsets: dict[int, int]
    ok: bool | None = None  # None: the member died before the answer
    result_ms: int | None = None
    result_seq: int | None = None

    def sent_before(self, d: "Delivery") -> bool:
        # one member's events are ordered exactly; across members, by wall clock
        return self.seq < d.seq if self.member == d.member else self.t <= d.t

    def answered_before(self, d: "Delivery") -> bool:
        if self.result_seq is None:
            return False
        return self.result_seq < d.seq if self.member == d.member else self.result_ms <= d.t


class GroupLog:
    """Every delivery and commit of a group's members, from their event streams, with the checks
    that make "each record is processed by one member" and "nothing is skipped across a
    rebalance" precise:

    - every produced record is delivered, with its value, and nothing else is;
    - within one assignment a member's offsets of a partition are consecutive;
    - a member that is (re)assigned a partition starts at the group's committed offset at that
      moment: the last acknowledged commit, or the offset of a commit whose answer never arrived
      or failed (the broker may have stored it);
    - a record is delivered more than once only when at most one of those deliveries was followed
      by an acknowledged commit covering it, and no delivery happens after such an acknowledgment
      (records processed but not yet committed when a member dies or a commit fails may be
      processed again; committed ones never). A member fenced out of the group (a fatal error such
      as FENCED_INSTANCE_ID) may still process records it fetched before it noticed; its commits
      are refused, so its uncommitted deliveries are exempt from that last rule.
    """

    def __init__(self, members, initial: dict[int, int] | None = None):
        self.initial = dict(initial or {})
        self.deliveries: list[Delivery] = []
        self.commits: list[CommitAttempt] = []
        self.problems: list[str] = []
        self.fenced: set[str] = set()  # members that stopped on a fatal error
        for m in members:
            self._parse(m)

    def _parse(self, m) -> None:
        fresh: set[int] = set()  # partitions assigned since the member's last delivery of them
        last: dict[int, int] = {}  # last offset delivered per partition in the current assignment
        pending: list[Delivery] = []  # delivered since the last commit attempt
        attempt: CommitAttempt | None = None
        for seq, e in enumerate(m.events()):
            ev = e["ev"]
            if ev == "assigned":
                fresh |= set(e["partitions"])
                for p in e["partitions"]:
                    last.pop(p, None)
            elif ev in ("revoked", "lost"):
                fresh -= set(e["partitions"])
                for p in e["partitions"]:
                    last.pop(p, None)
            elif ev == "assignment":
                fresh = set(e["partitions"])
                last.clear()
            elif ev == "rebalancing":
                fresh = set()
                last.clear()
            elif ev == "error" and e.get("fatal"):
                self.fenced.add(m.name)
            elif ev == "records":
                for p, o, v in e["records"]:
                    d = Delivery(m.name, p, o, v, e["t"], seq)
                    if p in fresh:
                        d.run_start = True
                        fresh.discard(p)
                    elif p not in last:
                        self.problems.append(f"{m.name}: record {p}@{o} delivered without an assignment of partition {p}")
                    elif o != last[p] + 1:
                        self.problems.append(f"{m.name}: partition {p} went from offset {last[p]} to {o} within one assignment")
                    last[p] = o
                    pending.append(d)
                    self.deliveries.append(d)
            elif ev == "committing":
                attempt = CommitAttempt(m.name, e["t"], seq, {int(k): v for k, v in e["offsets"].items()})
                self.commits.append(attempt)
            elif ev in ("committed", "commit_failed"):
                if attempt is None:
                    self.problems.append(f"{m.name}: {ev} without a commit attempt")
                    continue
                attempt.ok = ev == "committed"
                attempt.result_ms = e["t"]
                attempt.result_seq = seq
                if attempt.ok:
                    for d in pending:
                        if d.offset < attempt.offsets.get(d.partition, -1):
                            d.confirmed_ms = e["t"]
                            d.confirmed_seq = seq
                pending = []
                attempt = None

    # ---- queries ----------------------------------------------------------------------------
    def by_record(self) -> dict[tuple[int, int], list[Delivery]]:
        out: dict[tuple[int, int], list[Delivery]] = defaultdict(list)
        for d in self.deliveries:
            out[(d.partition, d.offset)].append(d)
        return out

    def committed(self) -> dict[int, int]:
        """Per partition, the highest offset any member's acknowledged commit reached."""
        out = dict(self.initial)
        for c in self.commits:
            if c.ok:
                for p, o in c.offsets.items():
                    out[p] = max(out.get(p, 0), o)
        return out

    def allowed_starts(self, d: Delivery) -> set[int]:
        """Offsets the first delivery `d` of a newly assigned partition may have: the committed
        offset of the partition at that moment."""
        p = d.partition
        base, base_c = self.initial.get(p, 0), None
        for c in self.commits:
            if c.ok and p in c.offsets and c.answered_before(d) and (base_c is None or c.t >= base_c.t):
                base, base_c = c.offsets[p], c
        allowed = {base}
        for c in self.commits:
            if p not in c.offsets or c is base_c or not c.sent_before(d):
                continue
            if base_c is not None and c.t < base_c.t:
                continue
            if not c.ok or not c.answered_before(d):
                allowed.add(c.offsets[p])  # failed, unanswered or in flight: may be stored
        return allowed

    def violations(self, expected: dict[tuple[int, int], str], exactly_once=()) -> list[str]:
        """Problems with the deliveries against `expected` ({(partition, offset): value}, every
        record of the topic); records in `exactly_once` must have been delivered exactly once."""
        out = list(self.problems)
        deliveries = self.by_record()
        missing = sorted(k for k in expected if k not in deliveries)
        if missing:
            out.append(f"{len(missing)} records never delivered, first {missing[:10]}")
        for key, ds in sorted(deliveries.items()):
            if key not in expected:
                out.append(f"record {key} delivered to {[d.member for d in ds]} but never produced")
                continue
            for d in ds:
                if d.value != expected[key]:
                    out.append(f"record {key} delivered to {d.member} with value {d.value!r}, produced {expected[key]!r}")
            confirmed = [d for d in ds if d.confirmed_ms is not None]
            if len(confirmed) > 1:
                out.append(f"record {key} processed and committed by {[d.member for d in confirmed]}")
            for c in confirmed:
                again = [
                    d
                    for d in ds
                    if d is not c
                    and (d.seq > c.confirmed_seq if d.member == c.member else d.t > c.confirmed_ms)
                    and not (d.member in self.fenced and d.confirmed_ms is None)
                ]
                if again:
                    out.append(
                        f"record {key} delivered again to {[d.member for d in again]} after {c.member}'s commit "
                        f"covering it was acknowledged"
                    )
        for d in self.deliveries:
            if d.run_start:
                allowed = self.allowed_starts(d)
                if d.offset not in allowed:
                    out.append(
                        f"{d.member} started partition {d.partition} at offset {d.offset}; the group's committed "
                        f"offset was {sorted(allowed)}"
                    )
        for key in exactly_once:
            n = len(deliveries.get(key, ()))
            if n > 1:
                out.append(f"record {key} delivered {n} times in steady state: {[d.member for d in deliveries[key]]}")
        return out


def js_group_admin(bootstrap: str, op: str, timeout: float = 60, **request) -> dict | list:
    """kafkajs admin over group_consumer.js: fetchOffsets, describeGroups, listGroups."""
    res = subprocess.run(
        ["node", str(JS_DIR / "group_consumer.js"), "admin", json.dumps({"brokers": [bootstrap], "op": op, **request})],
        capture_output=True,
        timeout=timeout,
        cwd=JS_DIR,
    )
    if res.returncode != 0:
        raise JsError(f"admin {op}", res.returncode, res.stderr.decode(errors="replace"))
    return json.loads(res.stdout)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "group-member":
        sys.exit(group_member_main(sys.argv[2:]))
    raise SystemExit("usage: support.py group-member CONF_JSON")
