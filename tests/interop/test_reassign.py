"""Leader elections and partition reassignments on a three-node cluster, through the `caudal`
CLI, confluent-kafka's `AdminClient.elect_leaders` and kafkajs's reassignment admin calls.

- A node killed with SIGKILL and restarted comes back as a follower of the partitions it
  preferred-led; a preferred leader election (`caudal cluster rebalance-leaders`, then
  confluent-kafka) hands leadership back to each partition's first replica, and a second one
  reports ELECTION_NOT_NEEDED.
- A partition of an RF-2 topic with records in it moves to another pair of brokers: while the
  new replica cannot catch up the reassignment is listed with its adding and removing replicas
  and can be cancelled; once it completes the replicas are the target, every record is
  readable and the removed broker no longer has the partition's directory.

Every wait is bounded.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

from cluster import NodeView
from conftest import REPO_ROOT
from support import Record, ck_admin, ck_consume, ck_produce, make_records, unique_topic

TIMEOUT = 60
JS_DIR = REPO_ROOT / "tests/interop/js"


def caudal(bin_, *args, timeout=TIMEOUT):
    return subprocess.run(
        [str(bin_), *map(str, args)],
        capture_output=True,
        timeout=timeout,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "RUST_LOG": "warn"},
    )


def ok(res) -> str:
    assert res.returncode == 0, (
        f"exit {res.returncode}\nstdout: {res.stdout.decode(errors='replace')}\n"
        f"stderr: {res.stderr.decode(errors='replace')}"
    )
    return res.stdout.decode()


def rows(text: str, first: str) -> list[list[str]]:
    """The rows of the table whose header starts with `first`, split on whitespace runs of two
    or more (cells may contain single spaces)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    out = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        out.append(re.split(r"\s{2,}", line.strip()))
    return out


def reassign_js(command: str, request: dict, timeout: float = 120) -> dict:
    if not (JS_DIR / "node_modules/kafkajs").exists():
        raise AssertionError("kafkajs not installed: run scripts/install-test-deps.sh")
    res = subprocess.run(
        ["node", str(JS_DIR / "reassign.js"), command],
        input=json.dumps(request).encode(),
        capture_output=True,
        timeout=timeout,
        cwd=JS_DIR,
    )
    assert res.returncode == 0, f"kafkajs {command} exited {res.returncode}: {res.stderr.decode(errors='replace')[-3000:]}"
    return json.loads(res.stdout)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def agreed_partitions(cluster, topic: str) -> dict | None:
    """{partition: PartitionState} when every up node answers the same replicas, leader and ISR
    for every partition of `topic`, else None."""
    views = cluster.views([topic])
    seen = None
    for v in views.values():
        if not isinstance(v, NodeView):
            return None
        err, parts = v.topics.get(topic, (None, {}))
        if err != 0 or not parts or any(p.error != 0 for p in parts.values()):
            return None
        mine = {i: (p.leader, p.replicas, sorted(p.isr)) for i, p in parts.items()}
        if seen is not None and mine != seen[0]:
            return None
        seen = (mine, parts)
    return seen[1] if seen else None


def preferred_leaders_everywhere(cluster, topic: str):
    parts = agreed_partitions(cluster, topic)
    if parts and all(p.leader == p.replicas[0] for p in parts.values()):
        return parts
    return None


def test_preferred_leader_election_after_a_restart(cluster_factory, caudal_bin):
    cluster = cluster_factory(3)
    topic = unique_topic("elect")
    partitions = 6
    cluster.create_topic(topic, partitions, replication_factor=3)
    before = wait_for(lambda: preferred_leaders_everywhere(cluster, topic), 30, "preferred leaders at creation")
    victim = cluster.node(before[0].replicas[0])
    preferred_by_victim = sorted(i for i, p in before.items() if p.replicas[0] == victim.node_id)
    assert preferred_by_victim

    cluster.kill9(victim)
    for p in preferred_by_victim:
        cluster.leader_of(topic, p, timeout=30, not_in={victim.node_id})
    cluster.restart(victim)
    cluster.wait_isr(topic, 3, timeout=60)
    after_restart = wait_for(lambda: agreed_partitions(cluster, topic), 30, "agreed metadata after the restart")
    for p in preferred_by_victim:
        assert after_restart[p].leader != victim.node_id, f"partition {p}: {after_restart[p]}"

    b = cluster.bootstrap
    text = ok(caudal(caudal_bin, "cluster", "rebalance-leaders", "--topic", topic, "-b", b))
    results = {int(r[1]): r[2] for r in rows(text, "TOPIC") if r[0] == topic}
    assert set(results) == set(range(partitions)), text
    for p in range(partitions):
        assert results[p] == ("elected" if p in preferred_by_victim else "not needed"), text
    assert f"{len(preferred_by_victim)} elected, {partitions - len(preferred_by_victim)} not needed, 0 failed." in text
    wait_for(lambda: preferred_leaders_everywhere(cluster, topic), 30, "leadership back on the first replicas")

    again = ok(caudal(caudal_bin, "cluster", "rebalance-leaders", "--topic", topic, "-b", b))
    assert all(r[2] == "not needed" for r in rows(again, "TOPIC") if r[0] == topic), again
    assert f"0 elected, {partitions} not needed, 0 failed." in again

    # The same through confluent-kafka (librdkafka's ElectLeaders), after another restart.
    from confluent_kafka import ElectionType, TopicPartition

    second = cluster.node(next(n for n in (1, 2, 3) if n != victim.node_id))
    preferred_by_second = sorted(i for i, p in before.items() if p.replicas[0] == second.node_id)
    cluster.kill9(second)
    for p in preferred_by_second:
        cluster.leader_of(topic, p, timeout=30, not_in={second.node_id})
    cluster.restart(second)
    cluster.wait_isr(topic, 3, timeout=60)
    admin = ck_admin(b)
    # A null partition list: every partition; only those that needed an election are reported.
    # (No timeout keywords: confluent-kafka 2.16's binding rejects them with a SystemError.)
    elected = admin.elect_leaders(ElectionType.PREFERRED, None).result(timeout=60)
    reported = {(tp.topic, tp.partition): err for tp, err in elected.items() if tp.topic == topic}
    assert set(reported) == {(topic, p) for p in preferred_by_second}, elected
    assert all(err is None for err in reported.values()), reported
    wait_for(lambda: preferred_leaders_everywhere(cluster, topic), 30, "leadership back after confluent-kafka's election")
    named = [TopicPartition(topic, p) for p in range(partitions)]
    answer = admin.elect_leaders(ElectionType.PREFERRED, named).result(timeout=60)
    codes = {tp.partition: err for tp, err in answer.items()}
    assert set(codes) == set(range(partitions)), answer
    for p, err in codes.items():
        # A KafkaException wrapping the KafkaError.
        error = err.args[0] if err is not None and hasattr(err, "args") and err.args else err
        assert error is not None and error.name() == "ELECTION_NOT_NEEDED", (p, err)


def test_reassign_a_partition_to_other_brokers(cluster_factory, caudal_bin):
    cluster = cluster_factory(3)
    b = cluster.bootstrap
    controller = cluster.active_controller()
    # The broker that gains the replica is paused for a while: not the active controller.
    new = next(n for n in (3, 2, 1) if n != controller.node_id)
    removed, kept = [n for n in (1, 2, 3) if n != new]
    topic = unique_topic("reassign")
    from confluent_kafka.admin import NewTopic

    futures = ck_admin(b).create_topics(
        [NewTopic(topic, num_partitions=1, replica_assignment=[[removed, kept]])],
        operation_timeout=30,
        request_timeout=30,
    )
    futures[topic].result(timeout=40)
    cluster.wait_isr(topic, 2, timeout=60)
    records = make_records(300, 1, "reassign")
    ck_produce(b, topic, records)

    none_yet = ok(caudal(caudal_bin, "topic", "reassign", "--list", topic, "-b", b))
    assert "No partition reassignment is in progress." in none_yet
    refused = caudal(caudal_bin, "topic", "reassign", topic, "--partition", 0, "--cancel", "-b", b)
    assert refused.returncode != 0
    assert "NO_REASSIGNMENT_IN_PROGRESS" in refused.stdout.decode(), refused

    # The new replica cannot catch up while its broker is stopped: the move stays in progress.
    cluster.pause(cluster.node(new))
    # Bootstrap from the running brokers only while it is stopped.
    b = ",".join(n.bootstrap for n in cluster.up_nodes())
    reassign_js("alter", {"brokers": b.split(","), "topic": topic, "partition": 0, "replicas": [kept, new]})
    listed = ok(caudal(caudal_bin, "topic", "reassign", "--list", topic, "-b", b))
    assert rows(listed, "TOPIC") == [[topic, "0", f"[{kept},{new},{removed}]", f"[{new}]", f"[{removed}]"]], listed
    js_listed = reassign_js("list", {"brokers": b.split(","), "topic": topic, "partitions": [0]})
    (ongoing,) = js_listed["topics"]
    assert ongoing["name"] == topic
    assert ongoing["partitions"] == [
        {"partition": 0, "replicas": [kept, new, removed], "addingReplicas": [new], "removingReplicas": [removed]}
    ], js_listed

    cancelled = ok(caudal(caudal_bin, "topic", "reassign", topic, "--partition", 0, "--cancel", "-b", b))
    assert f"{topic}-0: reassignment cancelled" in cancelled
    assert "No partition reassignment is in progress." in ok(caudal(caudal_bin, "topic", "reassign", "--list", "-b", b))
    wait_for(
        # The original replicas, in the order of the merged list (as Kafka reverts them).
        lambda: (parts := agreed_partitions(cluster, topic)) and sorted(parts[0].replicas) == sorted([removed, kept]),
        30,
        "the original replicas back after the cancel",
    )

    started = ok(caudal(caudal_bin, "topic", "reassign", topic, "--partition", 0, "--replicas", f"{kept},{new}", "-b", b))
    assert f"{topic}-0: reassigning to [{kept},{new}]" in started
    more = [Record(0, r.key, r.value + b"+", r.headers, r.timestamp) for r in make_records(100, 1, "during")]
    ck_produce(b, topic, more)
    cluster.resume(cluster.node(new))
    b = cluster.bootstrap

    def moved():
        parts = agreed_partitions(cluster, topic)
        if parts and parts[0].replicas == [kept, new] and sorted(parts[0].isr) == sorted([kept, new]):
            return parts
        return None

    done = wait_for(moved, 90, f"replicas [{kept},{new}] with both in the ISR")
    assert done[0].leader in (kept, new)
    assert "No partition reassignment is in progress." in ok(caudal(caudal_bin, "topic", "reassign", "--list", "-b", b))
    assert reassign_js("list", {"brokers": b.split(",")})["topics"] == []

    got = ck_consume(b, topic, [0], timeout=60)
    assert [r.value for r in got] == [r.value for r in records + more]

    # The new replica holds the partition from the leader; the removed broker deletes its copy.
    wait_for(lambda: not cluster.node(removed).partition_dir(topic, 0).exists(), 30,
             f"node {removed} to delete {topic}-0")
    assert cluster.node(new).partition_dir(topic, 0).exists()
    again = caudal(caudal_bin, "topic", "reassign", topic, "--partition", 0, "--cancel", "-b", b)
    assert again.returncode != 0 and "NO_REASSIGNMENT_IN_PROGRESS" in again.stdout.decode(), again
