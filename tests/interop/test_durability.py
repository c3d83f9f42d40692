"""Restarts, kill -9 under load and damaged segment files.

- Restart: SIGTERM, start again: every record reads back identically, offsets continue.
- Crash: an acks=all producer (idempotent or not) sends continuously while the broker is killed
  with SIGKILL and restarted; every acknowledged record is in the log at the offset its delivery
  report named, and with idempotence nothing is written twice.
- Corruption: after kill -9, bytes of the active segment are flipped or cut; the broker starts,
  serves every record before the damage, logs a WARN about the truncation, and takes new writes
  at the truncation point.
"""

from __future__ import annotations

import os
import random
import signal
import struct
import threading
import time
from collections import Counter

import pytest

from support import (
    assert_offsets_dense,
    assert_records_equal,
    by_partition,
    ck_admin,
    ck_consume,
    ck_produce,
    rdkafka_conf,
    create_topic,
    make_records,
    unique_topic,
)

CLEAN_SHUTDOWN_MARKER = ".caudal_cleanshutdown"
PARTITIONS = 3


# ---- restart --------------------------------------------------------------------------------------


def test_sigterm_restart_keeps_everything(broker_factory):
    from confluent_kafka.admin import ConfigResource, ResourceType

    b = broker_factory(settings={"log.segment.bytes": str(256 * 1024)})
    topic = unique_topic("restart")
    create_topic(b.bootstrap, topic, PARTITIONS, config={"retention.ms": "86400000"})
    records = make_records(5000, PARTITIONS, "restart")
    ck_produce(b.bootstrap, topic, records, compression="zstd")
    before = ck_consume(b.bootstrap, topic, range(PARTITIONS))
    assert_records_equal(records, before)
    # several segments per partition, so the restart has to find all of them
    assert len(b.segment_files(topic, 0)) >= 2, os.listdir(b.partition_dir(topic, 0))

    for round_ in range(2):
        code = b.stop(signal.SIGTERM)
        assert code == 0, f"SIGTERM exit code {code}\n{b.log_tail()}"
        assert (b.data_dir / CLEAN_SHUTDOWN_MARKER).exists(), "no clean-shutdown marker after SIGTERM"
        b.start()
        after = ck_consume(b.bootstrap, topic, range(PARTITIONS))
        assert by_partition(after) == by_partition(before), f"records differ after restart {round_ + 1}"

    # topic metadata and configs survive
    res = ConfigResource(ResourceType.TOPIC, topic)
    configs = ck_admin(b.bootstrap).describe_configs([res], request_timeout=20)[res].result(timeout=20)
    assert configs["retention.ms"].value == "86400000"
    # offsets continue after the restart
    more = make_records(30, PARTITIONS, "restart-more", seed=11)
    delivered = ck_produce(b.bootstrap, topic, more)
    per_part = Counter(r.partition for r in records)
    for (p, off), r in zip(delivered, more):
        assert p == r.partition
    firsts = {}
    for p, off in delivered:
        firsts.setdefault(p, off)
    assert firsts == {p: per_part[p] for p in range(PARTITIONS)}
    assert_records_equal(records + more, ck_consume(b.bootstrap, topic, range(PARTITIONS)))


# ---- kill -9 under load -----------------------------------------------------------------------------


class LoadProducer:
    """confluent-kafka producer sending numbered records round-robin over the partitions until
    stopped; remembers every delivery report."""

    def __init__(self, bootstrap, topic, idempotent):
        from confluent_kafka import Producer

        self.topic = topic
        self.producer = Producer(
            {
                **rdkafka_conf(bootstrap),
                "acks": "all",
                "enable.idempotence": idempotent,
                "linger.ms": 2,
                "batch.num.messages": 500,
                "message.timeout.ms": 90000,
                "retry.backoff.ms": 50,
                "reconnect.backoff.ms": 50,
                "reconnect.backoff.max.ms": 500,
                "socket.timeout.ms": 5000,
                "queue.buffering.max.messages": 50000,
            }
        )
        self.acked: dict[int, tuple[int, int]] = {}
        self.failed: dict[int, str] = {}
        self.sent = 0
        self.fatal = None
        self.rng = random.Random(5)

    def value(self, i: int) -> bytes:
        return b"%08d|" % i + bytes(self.rng.getrandbits(8) for _ in range(self.rng.choice([0, 20, 200])))

    def _cb(self, i):
        def cb(err, msg):
            if err is None:
                self.acked[i] = (msg.partition(), msg.offset())
            else:
                self.failed[i] = str(err)

        return cb

    def pump(self, until, deadline, max_records=400_000):
        """Produces until `until()` is true or the deadline passes."""
        from confluent_kafka import KafkaException

        while not until() and time.monotonic() < deadline and self.sent < max_records:
            i = self.sent
            try:
                self.producer.produce(
                    self.topic, key=b"k%d" % (i % 50), value=self.value(i), partition=i % PARTITIONS, on_delivery=self._cb(i)
                )
                self.sent += 1
            except BufferError:
                self.producer.poll(0.01)
                continue
            except KafkaException as e:
                self.fatal = e
                return
            if i % 64 == 0:
                self.producer.poll(0)
                time.sleep(0.001)  # keep the producer from starving the broker of the two cores

    def finish(self, timeout):
        remaining = self.producer.flush(timeout)
        return remaining


@pytest.mark.parametrize("idempotent", [True, False], ids=["idempotent", "plain"])
def test_kill9_under_load_loses_no_acknowledged_record(broker_factory, idempotent):
    b = broker_factory(settings={"log.segment.bytes": str(512 * 1024)})
    topic = unique_topic("crash")
    create_topic(b.bootstrap, topic, PARTITIONS)
    load = LoadProducer(b.bootstrap, topic, idempotent)
    deadline = time.monotonic() + 120

    rng = random.Random(17)
    rounds = 3
    for round_ in range(rounds):
        # 1) load until more records are acknowledged, then SIGKILL mid-stream
        target = len(load.acked) + 10_000
        load.pump(lambda: len(load.acked) >= target, deadline)
        assert load.fatal is None, f"round {round_}: producer fatal error: {load.fatal}"
        assert len(load.acked) >= target, f"round {round_}: only {len(load.acked)} acked\n{b.log_tail()}"
        killer_done = threading.Event()
        restart_error = []
        marker_after_kill = []
        kill_delay = rng.uniform(0.05, 0.5)

        def kill_and_restart():
            try:
                time.sleep(kill_delay)  # the producer is still sending: requests are in flight
                b.kill9()
                marker_after_kill.append((b.data_dir / CLEAN_SHUTDOWN_MARKER).exists())
                time.sleep(1.0)  # the producer queues and retries against a dead broker
                b.start()
            except Exception as e:  # noqa: BLE001 - reported by the main thread
                restart_error.append(e)
            finally:
                killer_done.set()

        t = threading.Thread(target=kill_and_restart, daemon=True)
        t.start()
        load.pump(killer_done.is_set, deadline)
        t.join(timeout=60)
        assert not restart_error, f"round {round_}: {restart_error}"
        assert marker_after_kill == [False], "clean-shutdown marker present after kill -9"
    # 2) keep going after the last restart until more records are acknowledged
    acked_at_last_kill = len(load.acked)
    load.pump(lambda: len(load.acked) >= acked_at_last_kill + 10_000, deadline)
    remaining = load.finish(max(5.0, deadline - time.monotonic()))
    assert load.fatal is None, f"producer fatal error: {load.fatal}"
    assert remaining == 0, f"{remaining} records neither delivered nor failed"
    assert len(load.acked) >= acked_at_last_kill + 10_000, (
        f"acked {len(load.acked)}; {len(load.failed)} failed: {list(load.failed.items())[:3]}"
    )
    assert b.starts == rounds + 1

    # 3) every acknowledged record is where its delivery report said, exactly once
    got = ck_consume(b.bootstrap, topic, range(PARTITIONS), timeout=120)
    assert_offsets_dense(got)
    at = {(r.partition, r.offset): r for r in got}
    ids = Counter(int(r.value[:8]) for r in got)
    missing = [(i, po) for i, po in load.acked.items() if po not in at]
    assert not missing, f"{len(missing)} acknowledged records missing, e.g. {missing[:5]}"
    wrong = [(i, po) for i, po in load.acked.items() if int(at[po].value[:8]) != i]
    assert not wrong, f"{len(wrong)} acknowledged offsets hold another record, e.g. {wrong[:5]}"
    for i, (p, _) in load.acked.items():
        assert i % PARTITIONS == p
    unacked_present = [i for i in ids if i not in load.acked]
    assert all(i < load.sent for i in ids), "a record that was never sent"
    if idempotent:
        dups = {i: n for i, n in ids.items() if n > 1}
        assert not dups, f"{len(dups)} records written more than once with idempotence, e.g. {list(dups.items())[:5]}"
    print(
        f"kills={rounds} sent={load.sent} acked={len(load.acked)} failed={len(load.failed)} in_log={len(got)} "
        f"unacked_in_log={len(unacked_present)} duplicates={sum(n - 1 for n in ids.values())}"
    )


# ---- corrupted segments --------------------------------------------------------------------------------


def read_batches(path):
    """[(file_position, base_offset, last_offset, total_size)] of the v2 batches in a .log file,
    up to the first one that does not fit."""
    data = path.read_bytes()
    out = []
    pos = 0
    while pos + 61 <= len(data):
        base, length = struct.unpack_from(">qi", data, pos)
        if length < 49 or pos + 12 + length > len(data):
            break
        last_delta = struct.unpack_from(">i", data, pos + 23)[0]
        out.append((pos, base, base + last_delta, 12 + length))
        pos += 12 + length
    return out


def damage_cut_last_batch(path, batches):
    pos, base, _, size = batches[-1]
    with open(path, "r+b") as f:
        f.truncate(pos + size - 7)
    return base


def damage_flip_middle_batch(path, batches):
    pos, base, _, size = batches[len(batches) // 2]
    with open(path, "r+b") as f:
        f.seek(pos + 61 + (size - 61) // 2)  # inside the records, covered by the CRC
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    return base


def damage_huge_length(path, batches):
    pos, base, _, _ = batches[-3]
    with open(path, "r+b") as f:
        f.seek(pos + 8)
        f.write(struct.pack(">i", 0x7FFFFFF0))
    return base


def damage_zero_tail(path, batches):
    """A torn write: zeroes after the last complete batch. Nothing valid is lost."""
    with open(path, "ab") as f:
        f.write(b"\0" * 4096)
    return batches[-1][2] + 1


def damage_flip_first_batch(path, batches):
    """The very first batch is bad: the whole active segment is truncated."""
    pos, base, _, size = batches[0]
    with open(path, "r+b") as f:
        f.seek(pos + size - 1)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))
    return base


def damage_cut_inside_header(path, batches):
    """The file ends inside the last batch's 61-byte header."""
    pos, base, _, _ = batches[-1]
    with open(path, "r+b") as f:
        f.truncate(pos + 30)
    return base


DAMAGE = {
    "cut-last-batch": damage_cut_last_batch,
    "cut-inside-header": damage_cut_inside_header,
    "flip-first-batch": damage_flip_first_batch,
    "flip-byte-middle-batch": damage_flip_middle_batch,
    "huge-batch-length": damage_huge_length,
    "zero-filled-tail": damage_zero_tail,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_corrupt_active_segment_is_truncated(broker_factory, damage):
    b = broker_factory()
    topic = unique_topic("corrupt")
    create_topic(b.bootstrap, topic, 1)
    records = make_records(2000, 1, "corrupt")
    # small batches so there are many to damage
    ck_produce(b.bootstrap, topic, records, extra={"batch.num.messages": 20, "linger.ms": 0}, compression="none")
    before = ck_consume(b.bootstrap, topic, [0])
    assert_records_equal(records, before)
    b.kill9()
    assert not (b.data_dir / CLEAN_SHUTDOWN_MARKER).exists(), "clean-shutdown marker present after kill -9"

    active = b.segment_files(topic, 0)[-1]
    batches = read_batches(active)
    assert len(batches) >= 10, f"expected many batches in {active}, found {len(batches)}"
    assert batches[-1][2] == len(records) - 1
    size_before = active.stat().st_size
    keep = DAMAGE[damage](active, batches)  # records with offset < keep must survive

    b.start()
    after = ck_consume(b.bootstrap, topic, [0])
    assert [r.offset for r in after] == list(range(keep)), f"served offsets {after[0].offset if after else None}..{after[-1].offset if after else None}, want 0..{keep - 1}"
    assert after == before[:keep]
    log = b.log_text(since_last_start=True)
    warn = [line for line in log.splitlines() if "WARN" in line and "trunc" in line.lower()]
    assert warn, f"no WARN line about the truncation\n{b.log_tail()}"
    if damage != "zero-filled-tail":
        assert active.stat().st_size <= size_before
    # new writes continue at the truncation point
    more = make_records(10, 1, "after-recovery", seed=3)
    delivered = ck_produce(b.bootstrap, topic, more)
    assert [off for _, off in delivered] == list(range(keep, keep + 10))
    final = ck_consume(b.bootstrap, topic, [0])
    assert_offsets_dense(final)
    assert [r.value for r in final] == [r.value for r in before[:keep]] + [r.value for r in more]
    # and that survives a clean restart
    b.restart()
    assert ck_consume(b.bootstrap, topic, [0]) == final


def test_garbage_index_files_are_rebuilt(broker_factory):
    """Indexes are derived data: garbage in .index/.timeindex after a crash must not lose or
    misplace records, and offset/time lookups must still be right."""
    from confluent_kafka import TopicPartition

    from support import ck_consumer

    b = broker_factory(settings={"log.segment.bytes": str(128 * 1024)})
    topic = unique_topic("badindex")
    create_topic(b.bootstrap, topic, 1)
    records = make_records(3000, 1, "badindex")
    ck_produce(b.bootstrap, topic, records, extra={"batch.num.messages": 50})
    before = ck_consume(b.bootstrap, topic, [0])
    b.kill9()
    rng = random.Random(9)
    damaged = 0
    for suffix in (".index", ".timeindex"):
        for f in b.segment_files(topic, 0, suffix):
            size = max(f.stat().st_size, 64)
            f.write_bytes(bytes(rng.getrandbits(8) for _ in range(min(size, 4096))))
            damaged += 1
    assert damaged >= 2
    b.start()
    assert ck_consume(b.bootstrap, topic, [0]) == before
    for off in (0, 1, 777, 1500, 2999):
        got = ck_consume(b.bootstrap, topic, [0], start={0: off}, limit=1)
        assert got[0].offset == off and got[0].value == records[off].value
    c = ck_consumer(b.bootstrap)
    try:
        for off in (0, 1234, 2999):
            (tp,) = c.offsets_for_times([TopicPartition(topic, 0, records[off].timestamp)], timeout=10)
            assert tp.offset == off
    finally:
        c.close()


def test_records_before_damage_unaffected_in_other_partitions(broker_factory):
    """Damage in one partition's segment leaves the other partitions whole."""
    b = broker_factory()
    topic = unique_topic("corrupt-multi")
    create_topic(b.bootstrap, topic, PARTITIONS)
    records = make_records(900, PARTITIONS, "corrupt-multi")
    ck_produce(b.bootstrap, topic, records, extra={"batch.num.messages": 10, "linger.ms": 0})
    before = by_partition(ck_consume(b.bootstrap, topic, range(PARTITIONS)))
    b.kill9()
    active = b.segment_files(topic, 1)[-1]
    keep = damage_flip_middle_batch(active, read_batches(active))
    b.start()
    after = by_partition(ck_consume(b.bootstrap, topic, range(PARTITIONS)))
    assert after[0] == before[0]
    assert after[2] == before[2]
    assert after.get(1, []) == before[1][:keep]


# ---- committed offsets survive kill -9 ---------------------------------------------------------


def test_kill9_keeps_every_acknowledged_offset_commit(broker_factory):
    """A thread commits rising offsets synchronously while the broker is killed: after the restart
    every partition's committed offset is at least the last one a commit acknowledged."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    b = broker_factory(
        settings={"offsets.topic.num.partitions": "5", "group.initial.rebalance.delay.ms": "0"}
    )
    topic = unique_topic("commit-crash")
    create_topic(b.bootstrap, topic, PARTITIONS)
    group = unique_topic("commit-crash-group")
    consumer = Consumer(
        rdkafka_conf(b.bootstrap, **{"group.id": group, "enable.auto.commit": False})
    )
    acked = {p: -1 for p in range(PARTITIONS)}
    stop = threading.Event()
    errors = []

    def commit_loop():
        offset = 0
        while not stop.is_set():
            offset += 1
            offsets = [TopicPartition(topic, p, offset) for p in range(PARTITIONS)]
            try:
                result = consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as e:  # the broker is down: retry with the next offset
                errors.append(str(e))
                time.sleep(0.05)
                continue
            for tp in result:
                if tp.error is None:
                    acked[tp.partition] = max(acked[tp.partition], tp.offset)

    t = threading.Thread(target=commit_loop, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 30
        while min(acked.values()) < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert min(acked.values()) >= 50, f"commits did not get going: {acked} {errors[-3:]}\n{b.log_tail()}"
        b.kill9()
        at_kill = dict(acked)
        stop.set()
        b.start()
        # a commit blocked on the dead broker completes against the restarted one
        t.join(timeout=60)
        assert not t.is_alive(), "commit loop did not stop"
        deadline = time.monotonic() + 30
        while True:
            try:
                committed = consumer.committed(
                    [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10
                )
                break
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        for tp in committed:
            assert tp.offset >= at_kill[tp.partition], (
                f"partition {tp.partition}: committed {tp.offset} < acknowledged {at_kill[tp.partition]}"
            )
    finally:
        stop.set()
        consumer.close()
