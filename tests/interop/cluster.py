"""A replicated cluster of `caudal server` processes, an acknowledged-write load and its checks.

`Cluster` runs N nodes on 127.0.0.1, each a broker and a voter of one controller quorum (the
`--controller-listen`/`--controller-voters` flags). A `Node` is a conftest `Broker` with a node
id and a controller port, so logs, process groups and the session-wide cleanup work as for one
broker. Every wait is bounded; the waits that ask "what does the cluster think" send Metadata v4
to each running node itself (not through a client's cached view) and require the nodes to agree.

Load and checks:

- `AckedProducer`: an idempotent acks=all confluent-kafka producer in a thread, sending numbered
  records round-robin over the partitions at a steady rate; it remembers which were acknowledged
  (with the partition and offset the delivery report named), which failed and why, and when.
- `check_log`: reads every partition from the beginning and asserts that every acknowledged
  record is present exactly once at the offset its delivery report named, nothing was written
  twice (idempotence), offsets are dense, and acknowledged records are in production order.
- `CommittedOffsetsWatcher`: polls a consumer group's committed offsets through the admin API
  and records any partition whose committed offset went backwards (or disappeared).
- `DevCluster`: `caudal dev cluster` as one process (it starts and stops the nodes itself).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import wire
from conftest import _LIVE, Broker, BrokerError, free_port
from support import ck_admin, forget_admin, now_ms, rdkafka_conf

CLUSTER_READY_TIMEOUT_S = 60.0
NODE_READY_TIMEOUT_S = 60.0
PROBE_TIMEOUT_S = 3.0

# Settings every test cluster gets unless the test overrides them: fast failure detection (a
# dead broker is fenced after 3 s, a stuck follower leaves the ISR after 5 s), internal topics
# replicated like user topics.
FAST_FAILOVER = {
    "broker.session.timeout.ms": "3000",
    "broker.heartbeat.interval.ms": "500",
    "replica.lag.time.max.ms": "5000",
    "offsets.topic.replication.factor": "3",
    "offsets.topic.num.partitions": "4",
    "group.initial.rebalance.delay.ms": "300",
}


# ---- Metadata straight from one node ----------------------------------------------------------


@dataclass
class PartitionState:
    error: int
    leader: int
    replicas: list[int]
    isr: list[int]


@dataclass
class NodeView:
    """One node's answer to Metadata v4."""

    node_id: int
    brokers: dict[int, str]  # id -> host:port
    controller: int
    topics: dict[str, tuple[int, dict[int, PartitionState]]]  # name -> (error, partitions)


def probe_metadata(bootstrap: str, topics: list[str] | None, timeout: float = PROBE_TIMEOUT_S) -> tuple:
    """Metadata v4 to exactly one broker (allow_auto_topic_creation=false, so probing for a topic
    a node has not learnt about yet cannot create it). Returns (brokers, controller, topics)."""
    body = (wire.i32(-1) if topics is None else wire.i32(len(topics)) + b"".join(wire.string(t) for t in topics)) + wire.i8(0)
    with wire.Conn(bootstrap, timeout=timeout) as conn:
        r = conn.request(wire.API_METADATA, 4, body)
    r.i32()  # throttle
    brokers = {}
    for _ in range(r.i32()):
        node, host, port, _rack = r.i32(), r.string(), r.i32(), r.string()
        brokers[node] = f"{host}:{port}"
    r.string()  # cluster id
    controller = r.i32()
    out = {}
    for _ in range(r.i32()):
        err, name, _internal = r.i16(), r.string(), r.i8()
        parts = {}
        for _ in range(r.i32()):
            perr, idx, leader = r.i16(), r.i32(), r.i32()
            replicas = [r.i32() for _ in range(r.i32())]
            isr = [r.i32() for _ in range(r.i32())]
            parts[idx] = PartitionState(perr, leader, replicas, isr)
        out[name] = (err, parts)
    return brokers, controller, out


# ---- nodes ------------------------------------------------------------------------------------


class Node(Broker):
    """One node of a cluster: a broker and a controller-quorum voter. Restarts keep its id, ports
    and data directory. `paused` is true between `pause()` and `resume()` (SIGSTOP/SIGCONT)."""

    def __init__(self, cluster: "Cluster", binary: Path, workdir: Path, node_id: int, settings: dict[str, str]):
        super().__init__(binary, workdir, settings, name=f"node-{node_id}")
        self.cluster = cluster
        self.node_id = node_id
        self.controller_port = free_port()
        self.paused = False

    def __repr__(self) -> str:
        return f"node {self.node_id} ({self.bootstrap})"

    @property
    def controller_address(self) -> str:
        return f"{self.host}:{self.controller_port}"

    def command(self) -> list[str]:
        cmd = [
            str(self.binary),
            "server",
            "--node-id",
            str(self.node_id),
            "--data-dir",
            str(self.data_dir),
            "--listen",
            self.bootstrap,
            "--advertise",
            self.bootstrap,
            "--controller-listen",
            self.controller_address,
            "--controller-voters",
            self.cluster.voters,
        ]
        for name, value in self.settings.items():
            cmd += ["--set", f"{name}={value}"]
        return cmd

    def up(self) -> bool:
        """Running and not stopped by SIGSTOP: it can answer requests."""
        return self.alive() and not self.paused

    def wait_ready(self, timeout: float = NODE_READY_TIMEOUT_S) -> None:
        """Ready = it listens, and its own Metadata answer lists every node that is up (itself
        included) and names a controller. Gives up early if the cluster's start was aborted."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            self._check_alive("while starting")
            if self.cluster.aborted.is_set():
                raise BrokerError(f"{self}: start aborted, another node failed (last Metadata: {last})")
            try:
                brokers, controller, _ = probe_metadata(self.bootstrap, [], timeout=2.0)
                want = {n.node_id for n in self.cluster.nodes if n.up()} | {self.node_id}
                last = f"brokers {sorted(brokers)}, controller {controller}"
                if want <= set(brokers) and controller >= 0:
                    return
            except (OSError, ValueError, AssertionError, ConnectionError) as e:
                last = repr(e)
            if time.monotonic() > deadline:
                raise BrokerError(f"{self} not ready within {timeout}s (last Metadata: {last})\n{self.log_tail()}")
            time.sleep(0.2)

    def pause(self) -> None:
        """SIGSTOP the process group: the node stops answering without closing any connection."""
        assert self.alive(), f"{self} is not running"
        os.killpg(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.proc is not None and self.paused:
            try:
                os.killpg(self.proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.paused = False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        self.resume()  # a stopped process would only act on the signal after SIGCONT
        return super().stop(sig, timeout)

    def kill9(self) -> None:
        super().kill9()
        self.paused = False

    def cleanup(self) -> None:
        self.resume()
        super().cleanup()
        self.paused = False


class Cluster:
    """N nodes (ids 1..N), each a broker and a controller voter; see the module docstring."""

    def __init__(self, binary: Path, workdir: Path, size: int = 3, settings: dict[str, str] | None = None):
        self.workdir = workdir
        self.settings = {**FAST_FAILOVER, **(settings or {})}
        self.aborted = threading.Event()
        self.nodes: list[Node] = []
        used: set[int] = set()
        for node_id in range(1, size + 1):
            node = Node(self, binary, workdir / f"node-{node_id}", node_id, self.settings)
            while node.port in used or node.controller_port in used or node.port == node.controller_port:
                node.port, node.controller_port = free_port(), free_port()
            used |= {node.port, node.controller_port}
            self.nodes.append(node)
        self.voters = ",".join(f"{n.node_id}@{n.controller_address}" for n in self.nodes)
        self._tracked: list = []  # producers, watchers, members: closed at cleanup

    # ---- addresses and lookups ----------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def node(self, node_id: int) -> Node:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise KeyError(f"no node {node_id} in {[n.node_id for n in self.nodes]}")

    def up_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.up()]

    def track(self, obj):
        """Closes `obj` (`close()` or `cleanup()`) when the cluster is cleaned up."""
        self._tracked.append(obj)
        return obj

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout: float = CLUSTER_READY_TIMEOUT_S) -> None:
        """Starts every node at once (each waits for a quorum), then waits until a real client
        bootstrapped from all of them sees every broker."""
        self.aborted.clear()
        errors: dict[int, BaseException] = {}

        def run(node: Node) -> None:
            try:
                node.start(timeout)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors[node.node_id] = e
                self.aborted.set()

        threads = [threading.Thread(target=run, args=(n,), name=f"start-{n.name}", daemon=True) for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout + 15)
        self.aborted.clear()
        stuck = [t.name for t in threads if t.is_alive()]
        if errors or stuck:
            detail = "\n".join(f"node {i}: {e}" for i, e in sorted(errors.items()))
            others = "\n".join(n.log_tail() for n in self.nodes if n.node_id not in errors)
            raise BrokerError(f"cluster did not start (stuck: {stuck})\n{detail}\n{others}")
        self.wait_client_sees_brokers({n.node_id for n in self.nodes}, timeout)

    def wait_client_sees_brokers(self, want: set[int], timeout: float = CLUSTER_READY_TIMEOUT_S) -> None:
        """Waits until confluent-kafka's Metadata (bootstrapped from every node) lists exactly
        the brokers `want`."""
        admin = ck_admin(self.bootstrap)
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                md = admin.list_topics(timeout=5)
                last = sorted(md.brokers)
                if set(md.brokers) == want:
                    return
            except Exception as e:  # noqa: BLE001 - retried until the deadline
                last = repr(e)
            if time.monotonic() > deadline:
                raise AssertionError(f"client Metadata never listed brokers {sorted(want)} (last: {last})\n{self.log_tails()}")
            time.sleep(0.2)

    def kill9(self, node: Node) -> None:
        node.kill9()

    def stop(self, node: Node, timeout: float = 30.0) -> int:
        """SIGTERM (a controlled shutdown); returns the exit code."""
        return node.stop(signal.SIGTERM, timeout)

    def pause(self, node: Node) -> None:
        node.pause()

    def resume(self, node: Node) -> None:
        node.resume()

    def restart(self, node: Node, timeout: float = NODE_READY_TIMEOUT_S) -> None:
        """Starts `node` again (SIGTERM first if it is running) and waits until it is ready."""
        if node.alive():
            node.stop(signal.SIGTERM)
        node.start(timeout)

    def cleanup(self) -> None:
        for obj in reversed(self._tracked):
            try:
                (getattr(obj, "close", None) or obj.cleanup)()
            except Exception:  # noqa: BLE001 - cleanup must reach every node
                pass
        for n in self.nodes:
            n.cleanup()
        forget_admin(self.bootstrap)

    # ---- what the cluster thinks ------------------------------------------------------------
    def views(self, topics: list[str] | None = None) -> dict[int, NodeView | str]:
        """Every up node's own Metadata answer (or the error asking it)."""
        out: dict[int, NodeView | str] = {}
        for n in self.up_nodes():
            try:
                brokers, controller, ts = probe_metadata(n.bootstrap, topics)
                out[n.node_id] = NodeView(n.node_id, brokers, controller, ts)
            except (OSError, ValueError, AssertionError, ConnectionError) as e:
                out[n.node_id] = f"error: {e!r}"
        return out

    def _wait_agreement(self, what: str, decide, topics, timeout: float):
        """Polls the up nodes' views until `decide(views)` returns a value other than None."""
        deadline = time.monotonic() + timeout
        views = {}
        while True:
            views = self.views(topics)
            if views and all(isinstance(v, NodeView) for v in views.values()):
                value = decide(views)
                if value is not None:
                    return value
            if time.monotonic() > deadline:
                shown = "\n".join(f"  node {i}: {describe_view(v, topics)}" for i, v in sorted(views.items()))
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; the nodes answered:\n{shown}\n{self.log_tails(40)}")
            time.sleep(0.2)

    def leader_of(self, topic: str, partition: int, timeout: float = 30.0, not_in: set[int] = frozenset()) -> Node:
        """The leader of a partition once every up node names the same one, it is up and it is
        not in `not_in`."""
        up = {n.node_id for n in self.up_nodes()}

        def decide(views):
            leaders = set()
            for v in views.values():
                err, parts = v.topics.get(topic, (None, {}))
                p = parts.get(partition)
                if err != 0 or p is None or p.error != 0:
                    return None
                leaders.add(p.leader)
            if len(leaders) == 1:
                (leader,) = leaders
                if leader in up and leader not in not_in:
                    return self.node(leader)
            return None

        return self._wait_agreement(f"one leader of {topic}-{partition} (not {sorted(not_in)})", decide, [topic], timeout)

    def leaders(self, topic: str, timeout: float = 30.0) -> dict[int, int]:
        """{partition: leader id} once every up node agrees on all of them."""

        def decide(views):
            seen = None
            for v in views.values():
                err, parts = v.topics.get(topic, (None, {}))
                if err != 0 or not parts or any(p.error != 0 or p.leader < 0 for p in parts.values()):
                    return None
                mine = {i: p.leader for i, p in parts.items()}
                if seen is not None and mine != seen:
                    return None
                seen = mine
            return seen

        return self._wait_agreement(f"agreed leaders of {topic}", decide, [topic], timeout)

    def active_controller(self, timeout: float = 30.0, not_in: set[int] = frozenset()) -> Node:
        """The active controller once every up node names the same one, which is up."""
        up = {n.node_id for n in self.up_nodes()}

        def decide(views):
            ids = {v.controller for v in views.values()}
            if len(ids) == 1:
                (c,) = ids
                if c in up and c not in not_in:
                    return self.node(c)
            return None

        return self._wait_agreement(f"one active controller (not {sorted(not_in)})", decide, [], timeout)

    def wait_brokers(self, want: set[int], timeout: float = 30.0) -> None:
        """Waits until every up node's Metadata lists exactly the brokers `want` (a dead broker
        drops out once its session times out and the controller fences it)."""

        def decide(views):
            return all(set(v.brokers) == want for v in views.values()) or None

        self._wait_agreement(f"brokers {sorted(want)}", decide, [], timeout)

    def wait_isr(self, topic: str, n: int, timeout: float = 60.0) -> dict[int, PartitionState]:
        """Waits until every up node reports every partition of `topic` with a leader and an ISR
        of exactly `n` replicas; returns the partitions (as the first node saw them)."""

        def decide(views):
            first = None
            for v in views.values():
                err, parts = v.topics.get(topic, (None, {}))
                if err != 0 or not parts:
                    return None
                if any(p.error != 0 or p.leader < 0 or len(set(p.isr)) != n for p in parts.values()):
                    return None
                first = first or parts
            return first

        return self._wait_agreement(f"ISR of {n} on every partition of {topic}", decide, [topic], timeout)

    # ---- topics -------------------------------------------------------------------------------
    def create_topic(self, topic: str, partitions: int, replication_factor: int = 3, config: dict | None = None,
                     timeout: float = 30.0) -> dict[int, PartitionState]:
        """CreateTopics through confluent-kafka, then waits until every up node has every
        partition with a full ISR."""
        from confluent_kafka.admin import NewTopic

        fs = ck_admin(self.bootstrap).create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor, config=config or {})],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        fs[topic].result(timeout=timeout + 5)
        return self.wait_isr(topic, replication_factor, timeout)

    # ---- replicas on disk ---------------------------------------------------------------------
    def wait_replicas_identical(self, topic: str, ends: dict[int, int], timeout: float = 30.0) -> None:
        """Waits until every node holds, for every partition, the same batches (base offset, last
        offset, CRC) covering offsets 0..ends[p]-1 in its segment files: followers store the
        leader's batches as they are, and a replica that was leader of a divergent history (a
        killed or paused leader's unreplicated writes) has truncated it."""
        deadline = time.monotonic() + timeout
        while True:
            problems = []
            for p, end in sorted(ends.items()):
                copies = {n.node_id: replica_batches(n, topic, p, end) for n in self.nodes}
                for node_id, batches in copies.items():
                    covered = batches and batches[0][0] == 0 and batches[-1][1] == end - 1 and all(
                        b[0] == a[1] + 1 for a, b in zip(batches, batches[1:]))
                    if end > 0 and not covered:
                        problems.append(f"partition {p} on node {node_id}: batches do not cover 0..{end - 1}: "
                                        f"{batches[:2]}..{batches[-2:]} ({len(batches)} batches)")
                reference = copies[self.nodes[0].node_id]
                for node_id, batches in copies.items():
                    if batches != reference:
                        i = next((i for i, (a, b) in enumerate(zip(batches, reference)) if a != b),
                                 min(len(batches), len(reference)))
                        problems.append(f"partition {p}: node {node_id} differs from node {self.nodes[0].node_id} at "
                                        f"batch {i}: {batches[i:i + 1]} vs {reference[i:i + 1]}")
            if not problems:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"replicas of {topic} differ after {timeout}s:\n" + "\n".join(problems[:20]))
            time.sleep(0.5)

    # ---- logs ---------------------------------------------------------------------------------
    def log_tails(self, lines: int = 60) -> str:
        return "\n".join(n.log_tail(lines) for n in self.nodes)


def replica_batches(node: Node, topic: str, partition: int, end: int) -> list[tuple[int, int, int]]:
    """(base offset, last offset, CRC) of the v2 batches starting below `end` in a node's segment
    files of one partition, in order; reading a file stops at the first incomplete batch."""
    out = []
    for path in node.segment_files(topic, partition):
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # a segment deleted or renamed meanwhile: read again later
            continue
        pos = 0
        while pos + 61 <= len(data):
            base, length = struct.unpack_from(">qi", data, pos)
            if length < 49 or pos + 12 + length > len(data):
                break
            crc = struct.unpack_from(">I", data, pos + 17)[0]
            last_delta = struct.unpack_from(">i", data, pos + 23)[0]
            if base < end:
                out.append((base, base + last_delta, crc))
            pos += 12 + length
    return out


def describe_view(v: NodeView | str, topics: list[str] | None) -> str:
    if isinstance(v, str):
        return v
    parts = []
    for name, (err, ps) in sorted(v.topics.items()):
        if topics and name not in topics:
            continue
        cells = ", ".join(f"{i}: L{p.leader} R{p.replicas} ISR{p.isr}" + (f" err {p.error}" if p.error else "")
                          for i, p in sorted(ps.items()))
        parts.append(f"{name} (err {err}) [{cells}]")
    return f"brokers {sorted(v.brokers)} controller {v.controller} " + "; ".join(parts)


# ---- acknowledged-write load ------------------------------------------------------------------


@dataclass
class Failure:
    seq: int
    name: str
    code: int
    retriable: bool
    text: str


class AckedProducer:
    """An idempotent acks=all producer in a background thread: record `seq` goes to partition
    `seq % partitions` with key `k<seq>` and value `<seq:010d>|...` (printable, so consumer-group
    members can report it), at about `rate` records per second.

    `acked[seq] = (partition, offset)` for every record whose delivery report had no error,
    `failed` lists the others, `client_errors` what the client's error callback reported (broker
    connections going down and the like), `fatal` a fatal client error (the idempotent producer
    stops). Use as a context manager or call `close()`; `stop()` flushes and reports leftovers.
    """

    def __init__(self, bootstrap: str, topic: str, partitions: int, rate: float = 200.0, extra: dict | None = None):
        from confluent_kafka import Producer

        self.topic = topic
        self.partitions = partitions
        self.rate = rate
        self.lock = threading.Lock()
        self.acked: dict[int, tuple[int, int]] = {}
        self.ack_times: dict[int, float] = {}  # seq -> time.monotonic() of its delivery report
        self.failed: list[Failure] = []
        self.client_errors: list[tuple[float, str, int, bool]] = []
        self.fatal = None
        self.sent = 0
        self.unflushed: int | None = None
        self._stop = threading.Event()
        conf = {
            **rdkafka_conf(bootstrap),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 60000,
            # a node that stops answering (SIGSTOP) must not hold requests for a minute
            "request.timeout.ms": 6000,
            "socket.timeout.ms": 6000,
            "retry.backoff.ms": 100,
            "reconnect.backoff.ms": 100,
            "reconnect.backoff.max.ms": 1000,
            "error_cb": self._on_error,
        }
        conf.update(extra or {})
        self.producer = Producer(conf)
        self.thread = threading.Thread(target=self._run, name=f"acked-producer-{topic}", daemon=True)

    @staticmethod
    def value(seq: int) -> bytes:
        return b"%010d|" % seq + b"v" * (seq % 37)

    @staticmethod
    def seq_of(value: bytes | None) -> int | None:
        if value is None or len(value) < 11 or value[10:11] != b"|" or not value[:10].isdigit():
            return None
        return int(value[:10])

    # ---- thread -------------------------------------------------------------------------------
    def start(self) -> "AckedProducer":
        self.thread.start()
        return self

    def __enter__(self) -> "AckedProducer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _on_error(self, err) -> None:
        with self.lock:
            self.client_errors.append((time.monotonic(), err.name(), err.code(), err.fatal()))
            if err.fatal():
                self.fatal = err

    def _report(self, seq: int):
        def cb(err, msg):
            t = time.monotonic()
            with self.lock:
                if err is None:
                    self.acked[seq] = (msg.partition(), msg.offset())
                    self.ack_times[seq] = t
                else:
                    self.failed.append(Failure(seq, err.name(), err.code(), err.retriable(), err.str()))
                    if err.fatal():
                        self.fatal = err

        return cb

    def _run(self) -> None:
        from confluent_kafka import KafkaException

        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set() and self.fatal is None:
            now = time.monotonic()
            if now < next_at:
                self.producer.poll(min(next_at - now, 0.05))
                continue
            seq = self.sent
            try:
                self.producer.produce(
                    self.topic,
                    key=b"k%d" % seq,
                    value=self.value(seq),
                    partition=seq % self.partitions,
                    on_delivery=self._report(seq),
                )
            except BufferError:
                self.producer.poll(0.05)
                continue
            except KafkaException as e:
                with self.lock:
                    self.fatal = e.args[0]
                break
            self.sent += 1
            next_at = max(next_at + interval, now - 1.0)  # no burst after a stall
            self.producer.poll(0)

    def stop(self, flush_timeout: float = 75.0) -> int:
        """Stops producing, waits for every outstanding delivery report (bounded by
        message.timeout.ms); returns how many records got none."""
        self._stop.set()
        self.thread.join(timeout=10)
        if self.unflushed is None:
            self.unflushed = self.producer.flush(flush_timeout)
        return self.unflushed

    def close(self) -> None:
        if self.unflushed is None:
            self._stop.set()
            self.thread.join(timeout=10)
            self.unflushed = self.producer.flush(0)

    # ---- queries ------------------------------------------------------------------------------
    def snapshot(self) -> tuple[dict[int, tuple[int, int]], list[Failure]]:
        with self.lock:
            return dict(self.acked), list(self.failed)

    def acked_from(self, first_seq: int) -> dict[int, int]:
        """{partition: number of acknowledged records with seq >= first_seq}."""
        out: Counter = Counter()
        with self.lock:
            for seq, (p, _) in self.acked.items():
                if seq >= first_seq:
                    out[p] += 1
        return out

    def wait_acked_from(self, first_seq: int, per_partition: int, timeout: float, what: str = "", cluster=None) -> float:
        """Waits until every partition has `per_partition` acknowledged records sent as `first_seq`
        or later (so: produced after some event); returns the seconds it took."""
        start = time.monotonic()
        deadline = start + timeout
        while True:
            counts = self.acked_from(first_seq)
            if all(counts.get(p, 0) >= per_partition for p in range(self.partitions)):
                return time.monotonic() - start
            if self.fatal is not None:
                raise AssertionError(f"producer fatal error {self.fatal} {what}")
            if not self.thread.is_alive() and self.unflushed is None:
                raise AssertionError(f"producer thread ended {what}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what}: within {timeout}s only {dict(counts)} records sent from seq {first_seq} were acknowledged "
                    f"(want {per_partition} on each of {self.partitions} partitions); sent {self.sent}, "
                    f"{self.summary()}" + ("\n" + cluster.log_tails(40) if cluster is not None else "")
                )
            time.sleep(0.05)

    def non_retriable_failures(self) -> list[Failure]:
        with self.lock:
            return [f for f in self.failed if not f.retriable]

    def summary(self) -> str:
        with self.lock:
            failed = Counter(f.name for f in self.failed)
            errors = Counter(name for _, name, _, _ in self.client_errors)
            return (
                f"sent={self.sent} acked={len(self.acked)} failed={dict(failed)} client_errors={dict(errors)} "
                f"fatal={self.fatal}"
            )


# ---- the log checker --------------------------------------------------------------------------


@dataclass
class LogRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class LogCheck:
    records: list[LogRecord]
    high_watermarks: dict[int, int]
    unacked_present: int = 0
    stats: dict = field(default_factory=dict)

    def expected_values(self) -> dict[tuple[int, int], str]:
        """{(partition, offset): value as text} of every record, as GroupLog wants it."""
        return {(r.partition, r.offset): r.value.decode("utf-8", errors="replace") for r in self.records}


def read_partitions(bootstrap: str, topic: str, partitions: int, min_end: dict[int, int], timeout: float = 120.0):
    """Every record of every partition from offset 0 up to its high watermark, which must reach
    `min_end[p]` first (a new leader may briefly report an older high watermark). Returns
    ([LogRecord] in offset order per partition, {partition: high watermark})."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    deadline = time.monotonic() + timeout
    c = Consumer(
        {
            **rdkafka_conf(bootstrap),
            "group.id": f"check-{topic}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "check.crcs": True,
            "fetch.wait.max.ms": 100,
            "socket.timeout.ms": 10000,
        }
    )
    try:
        ends: dict[int, int] = {}
        last_error = None
        for p in range(partitions):
            while True:
                try:
                    lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=5, cached=False)
                    if lo != 0:
                        raise AssertionError(f"partition {p}: log start offset {lo}, want 0 (nothing was deleted)")
                    if hi >= min_end.get(p, 0):
                        ends[p] = hi
                        break
                    last_error = f"high watermark {hi} < {min_end[p]} (one past the last acknowledged offset)"
                except AssertionError:
                    raise
                except Exception as e:  # noqa: BLE001 - retried until the deadline
                    last_error = repr(e)
                if time.monotonic() > deadline:
                    raise AssertionError(f"partition {p}: {last_error}")
                time.sleep(0.2)
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions) if ends[p] > 0])
        out: dict[int, list[LogRecord]] = {p: [] for p in range(partitions)}
        done = {p for p in range(partitions) if ends[p] == 0}
        errors: Counter = Counter()
        while len(done) < partitions:
            if time.monotonic() > deadline:
                got = {p: (out[p][-1].offset if out[p] else None) for p in range(partitions)}
                raise AssertionError(f"reading {topic} timed out: last offsets {got}, ends {ends}, errors {dict(errors)}")
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().fatal():
                    raise AssertionError(f"consumer fatal error: {msg.error()}")
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    errors[msg.error().name()] += 1
                continue
            p = msg.partition()
            if msg.offset() >= ends[p]:
                continue
            out[p].append(LogRecord(p, msg.offset(), msg.key(), msg.value()))
            if msg.offset() == ends[p] - 1:
                done.add(p)
        return [r for p in range(partitions) for r in out[p]], ends
    finally:
        c.close()


def check_log(bootstrap: str, topic: str, producer: AckedProducer, timeout: float = 120.0) -> LogCheck:
    """Reads the whole topic (every partition from offset 0 to a high watermark covering every
    acknowledged offset) and asserts `verify_log` finds nothing wrong with it against what
    `producer` (stopped) saw acknowledged."""
    acked, _ = producer.snapshot()
    min_end: dict[int, int] = {}
    for p, off in acked.values():
        min_end[p] = max(min_end.get(p, 0), off + 1)
    records, ends = read_partitions(bootstrap, topic, producer.partitions, min_end, timeout)
    problems, unacked_present = verify_log(records, ends, acked, producer.sent, producer.partitions)
    assert not problems, f"log check of {topic} failed ({producer.summary()}):\n" + "\n".join(problems)
    return LogCheck(
        records,
        ends,
        unacked_present,
        {"records": len(records), "acked": len(acked), "unacked_present": unacked_present, "ends": ends},
    )


def verify_log(
    records: list[LogRecord], ends: dict[int, int], acked: dict[int, tuple[int, int]], sent: int, partitions: int
) -> tuple[list[str], int]:
    """The problems of a topic's log (`records` in offset order per partition, read up to `ends`)
    written by an `AckedProducer` that sent records 0..sent-1 and got `acked` reports:

    - offsets are dense from 0 up to the end in every partition;
    - every record is one the producer sent, in the partition it was sent to;
    - no record is in the log twice (the producer is idempotent: not even unacknowledged ones);
    - every acknowledged record is at the partition and offset its delivery report named;
    - acknowledged records of a partition are in the order they were produced.

    Returns (problems, how many unacknowledged records are in the log)."""
    problems: list[str] = []
    by_part: dict[int, list[LogRecord]] = defaultdict(list)
    for r in records:
        by_part[r.partition].append(r)
    for p in range(partitions):
        offsets = [r.offset for r in by_part[p]]
        if offsets != list(range(ends.get(p, 0))):
            gap = next((i for i, o in enumerate(offsets) if o != i), len(offsets))
            found = offsets[gap] if gap < len(offsets) else "nothing"
            problems.append(f"partition {p}: offsets not dense up to {ends.get(p, 0)}: offset {gap} missing, found {found} "
                            f"({len(offsets)} records)")

    at: dict[tuple[int, int], int] = {}
    where: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for r in records:
        seq = AckedProducer.seq_of(r.value)
        if seq is None or seq >= sent or r.key != b"k%d" % seq:
            shown = None if r.value is None else r.value[:40]
            problems.append(f"{r.partition}@{r.offset}: a record that was never produced: key {r.key!r} value {shown!r}")
            continue
        if seq % partitions != r.partition:
            problems.append(f"{r.partition}@{r.offset}: record {seq} belongs to partition {seq % partitions}")
        at[(r.partition, r.offset)] = seq
        where[seq].append((r.partition, r.offset))

    dups = {seq: locs for seq, locs in where.items() if len(locs) > 1}
    if dups:
        first = sorted(dups.items())[:5]
        problems.append(f"{len(dups)} records written more than once (idempotent producer), e.g. "
                        + "; ".join(f"seq {s} at {locs}" for s, locs in first))

    missing = sorted(seq for seq in acked if seq not in where)
    if missing:
        problems.append(f"{len(missing)} acknowledged records missing from the log, first {missing[:10]} "
                        f"(acknowledged at {[acked[s] for s in missing[:10]]})")
    moved = sorted(seq for seq, po in acked.items() if seq in where and at.get(po) != seq)
    if moved:
        problems.append(f"{len(moved)} acknowledged records not at the offset their delivery report named, e.g. "
                        + "; ".join(f"seq {s}: reported {acked[s]}, found at {where[s]}, there now {at.get(acked[s])}"
                                    for s in moved[:5]))

    for p in range(partitions):
        order = [(r.offset, at[(p, r.offset)]) for r in by_part[p] if at.get((p, r.offset)) in acked]
        bad = next((i for i in range(1, len(order)) if order[i][1] <= order[i - 1][1]), None)
        if bad is not None:
            problems.append(f"partition {p}: acknowledged records out of production order: offset {order[bad - 1][0]} "
                            f"holds record {order[bad - 1][1]}, offset {order[bad][0]} record {order[bad][1]}")

    return problems, sum(1 for seq in where if seq not in acked)


# ---- committed group offsets ------------------------------------------------------------------


class CommittedOffsetsWatcher:
    """Polls a group's committed offsets for `topic` (kafka-python admin OffsetFetch) every
    `interval` seconds in a thread. `violations` lists every partition whose committed offset went
    below one seen earlier, or vanished after one was seen; failed polls (coordinator moving) are
    counted in `errors`."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int, interval: float = 0.5):
        self.group = group
        self.topic = topic
        self.partitions = partitions
        self.interval = interval
        self.bootstrap = bootstrap
        # kafka-python, not librdkafka: librdkafka's admin OffsetFetch handler dereferences the
        # (absent) consumer-group handle when a coordinator answers NOT_COORDINATOR while it moves,
        # and crashes the whole test process.
        self.admin = None
        self.lock = threading.Lock()
        self.latest: dict[int, int] = {}
        self.samples = 0
        self.errors: Counter = Counter()
        self.violations: list[str] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"offsets-{group}", daemon=True)

    def start(self) -> "CommittedOffsetsWatcher":
        self.thread.start()
        return self

    def poll_once(self) -> dict[int, int] | None:
        from kafka.admin import KafkaAdminClient
        from kafka.structs import TopicPartition

        try:
            if self.admin is None:
                self.admin = KafkaAdminClient(bootstrap_servers=self.bootstrap.split(","), request_timeout_ms=5000)
            res = self.admin.list_group_offsets(
                {self.group: [TopicPartition(self.topic, p) for p in range(self.partitions)]}
            )[self.group]
        except Exception as e:  # noqa: BLE001 - the coordinator may be moving
            self.errors[type(e).__name__] += 1
            # A client whose coordinator went away may keep asking the old one: start afresh.
            admin, self.admin = self.admin, None
            if admin is not None:
                try:
                    admin.close()
                except Exception:  # noqa: BLE001 - closing a broken client
                    pass
            return None
        return {tp.partition: meta.offset for tp, meta in res.items()}

    def _observe(self, offsets: dict[int, int]) -> None:
        t = now_ms()
        with self.lock:
            self.samples += 1
            for p, o in offsets.items():
                before = self.latest.get(p)
                if before is not None and o < before:
                    shown = "none" if o < 0 else o
                    self.violations.append(f"t={t}: partition {p} committed offset went from {before} to {shown}")
                if o >= 0 and (before is None or o > before):
                    self.latest[p] = o

    def _run(self) -> None:
        while not self._stop.is_set():
            offsets = self.poll_once()
            if offsets is not None:
                self._observe(offsets)
            self._stop.wait(self.interval)

    def snapshot(self) -> dict[int, int]:
        with self.lock:
            return dict(self.latest)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=20)


# ---- caudal dev cluster -----------------------------------------------------------------------


def free_port_block(count: int, spread: int = 100, attempts: int = 50) -> int:
    """A base port P with P..P+count-1 and P+spread..P+spread+count-1 all free (the layout of
    `caudal dev cluster`)."""
    import random

    rng = random.Random()
    for _ in range(attempts):
        base = rng.randrange(20000, 60000 - spread - count)
        socks = []
        try:
            for port in [base + i for i in range(count)] + [base + spread + i for i in range(count)]:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free block of ports")


class DevCluster:
    """`caudal dev cluster --nodes N --data-dir D --base-port P` in its own process group (so the
    nodes it spawns are in it too); output in D/dev-cluster.out."""

    def __init__(self, binary: Path, workdir: Path, nodes: int = 3, sets: dict[str, str] | None = None):
        self.binary = binary
        self.workdir = workdir
        self.data_dir = workdir / "dev"
        self.nodes = nodes
        self.sets = dict(sets or {})
        self.base_port = free_port_block(nodes)
        self.out_path = workdir / "dev-cluster.out"
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.base_port + i}" for i in range(self.nodes))

    def command(self) -> list[str]:
        cmd = [str(self.binary), "dev", "cluster", "--nodes", str(self.nodes), "--data-dir", str(self.data_dir),
               "--base-port", str(self.base_port)]
        for name, value in self.sets.items():
            cmd += ["--set", f"{name}={value}"]
        return cmd

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAUDAL_")}
        env.setdefault("RUST_LOG", "info")
        env["NO_COLOR"] = "1"
        with open(self.out_path, "ab") as out:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=self.workdir, env=env, start_new_session=True)
        _LIVE.add(self)

    def group_alive(self) -> bool:
        """Whether any process of its process group (the command or a node it spawned) is still
        running (zombies do not count)."""
        return self.proc is not None and _group_has_live_members(self.proc.pid)

    def output(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def node_logs(self, lines: int = 40) -> str:
        parts = [f"--- {self.out_path} ---\n{self.output()[-4000:]}"]
        for i in range(1, self.nodes + 1):
            log = self.data_dir / f"node-{i}.log"
            text = log.read_text(errors="replace").splitlines() if log.exists() else ["(no log)"]
            parts.append(f"--- {log} (last {lines} lines) ---\n" + "\n".join(text[-lines:]))
        return "\n".join(parts)

    def cleanup(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        forget_admin(self.bootstrap)
        _LIVE.discard(self)


def _group_has_live_members(pgid: int) -> bool:
    """Whether /proc lists a process (not a zombie) in process group `pgid`."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) >= 3 and int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def parse_table(text: str, header_first: str) -> list[list[str]]:
    """The rows (split on whitespace) of the table whose header line starts with `header_first`,
    up to the first blank line."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.split()[:1] == [header_first]:
            rows = []
            for row in lines[i + 1 :]:
                if not row.strip():
                    break
                rows.append(row.split())
            return rows
    raise AssertionError(f"no table headed {header_first!r} in:\n{text}")


def field_value(text: str, label: str) -> str:
    m = re.search(rf"^{re.escape(label)}:\s*(.*)$", text, re.M)
    if not m:
        raise AssertionError(f"no {label!r} line in:\n{text}")
    return m.group(1).strip()
