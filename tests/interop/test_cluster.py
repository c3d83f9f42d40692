"""Replicated clusters: three `caudal server` nodes (each a broker and a controller voter) under
real clients, with nodes killed, paused and restarted while an idempotent acks=all producer runs.

The invariant every failure test ends with (`cluster.check_log`): every acknowledged record is in
the log exactly once, at the offset its delivery report named, in production order, with dense
offsets and nothing written twice; and every replica holds the same batches
(`Cluster.wait_replicas_identical`). Clusters use `cluster.FAST_FAILOVER`: a dead broker is fenced
after 3 s, a stuck follower leaves the ISR after 5 s.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import uuid
from collections import Counter

import pytest

from cluster import (
    FAST_FAILOVER,
    AckedProducer,
    CommittedOffsetsWatcher,
    DevCluster,
    LogCheck,
    LogRecord,
    check_log,
    field_value,
    parse_table,
    probe_metadata,
    verify_log,
)
from support import (
    GroupLog,
    GroupMember,
    assert_records_equal,
    ck_admin,
    ck_consume,
    ck_produce,
    make_records,
    unique_topic,
    wait_until,
)

SESSION_S = int(FAST_FAILOVER["broker.session.timeout.ms"]) / 1000
# After a node fails, records produced from then on are acknowledged on every partition within
# this many seconds: fencing (3 s), election, the client's metadata refresh and its 6 s request
# timeout towards a node that stopped answering.
FAILOVER_S = 20.0
# A node that stops answering (SIGSTOP) keeps its connections open: the client first waits out its
# request timeout towards it, and may reconnect to it once before its metadata names a new leader.
PAUSED_FAILOVER_S = 30.0
CLI_TIMEOUT_S = 30


def caudal(bin_, *args, timeout=CLI_TIMEOUT_S) -> str:
    res = subprocess.run(
        [str(bin_), *map(str, args)],
        capture_output=True,
        timeout=timeout,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "RUST_LOG": "warn"},
    )
    assert res.returncode == 0, (
        f"caudal {' '.join(map(str, args))}: exit {res.returncode}\nstdout: {res.stdout.decode(errors='replace')}\n"
        f"stderr: {res.stderr.decode(errors='replace')}"
    )
    return res.stdout.decode()


def node_list(cell: str) -> list[int]:
    """`[1,2,3]` as printed by `caudal topic describe`."""
    assert cell.startswith("[") and cell.endswith("]"), cell
    return [int(x) for x in cell[1:-1].split(",") if x]


def roundtrip(bootstrap: str, topic: str, partitions: int, tag: str, n: int = 300) -> None:
    records = make_records(n, partitions, tag)
    ck_produce(bootstrap, topic, records, timeout=60)
    assert_records_equal(records, ck_consume(bootstrap, topic, range(partitions), timeout=60))


def finish_load(load: AckedProducer, what: str, allow_failures: bool = True) -> None:
    """Stops the producer; every record got a delivery report, no fatal error, and failures (if
    allowed at all) only retriable ones."""
    left = load.stop()
    assert left == 0, f"{what}: {left} records without a delivery report ({load.summary()})"
    assert load.fatal is None, f"{what}: producer fatal error {load.fatal}"
    if allow_failures:
        bad = load.non_retriable_failures()
        assert not bad, f"{what}: non-retriable delivery errors: {bad[:5]}"
    else:
        assert not load.failed, f"{what}: delivery errors: {load.failed[:5]} ({load.summary()})"


def check_topic(c, topic: str, load: AckedProducer) -> LogCheck:
    """`check_log` through the cluster, then every replica holds the same batches."""
    result = check_log(c.bootstrap, topic, load)
    c.wait_replicas_identical(topic, result.high_watermarks)
    return result


# ---- the checker itself -------------------------------------------------------------------------


def test_log_checker_flags_loss_duplicates_gaps_misplacement_and_reordering():
    """`verify_log` on hand-made logs: a clean one passes, each kind of damage is reported."""

    def rec(p, off, seq):
        return LogRecord(p, off, b"k%d" % seq, AckedProducer.value(seq))

    # partition 0 holds records 0, 2, 4; partition 1 holds 1, 3, 5; all acknowledged
    clean = [rec(0, 0, 0), rec(0, 1, 2), rec(0, 2, 4), rec(1, 0, 1), rec(1, 1, 3), rec(1, 2, 5)]
    acked = {0: (0, 0), 2: (0, 1), 4: (0, 2), 1: (1, 0), 3: (1, 1), 5: (1, 2)}
    ends = {0: 3, 1: 3}
    assert verify_log(clean, ends, acked, 6, 2) == ([], 0)
    # an unacknowledged record in the log is fine
    assert verify_log(clean, ends, {k: v for k, v in acked.items() if k != 5}, 6, 2) == ([], 1)

    def problems(records, ends=ends, acked=acked, sent=6):
        found, _ = verify_log(records, ends, acked, sent, 2)
        assert found, "damage not reported"
        return "\n".join(found)

    lost = [r for r in clean if (r.partition, r.offset) != (1, 2)]
    assert "1 acknowledged records missing" in problems(lost, ends={0: 3, 1: 2})
    assert "offsets not dense" in problems(lost)  # the log claims an end it does not have
    dup = clean + [rec(1, 3, 3)]
    assert "written more than once" in problems(dup, ends={0: 3, 1: 4})
    gap = [r if (r.partition, r.offset) != (0, 2) else rec(0, 3, 4) for r in clean]
    assert "offsets not dense" in problems(gap, ends={0: 4, 1: 3})
    moved = {**acked, 4: (0, 1), 2: (0, 2)}
    assert "not at the offset their delivery report named" in problems(clean, acked=moved)
    swapped = [rec(0, 0, 0), rec(0, 1, 4), rec(0, 2, 2)] + clean[3:]
    assert "out of production order" in problems(swapped, acked={**acked, 4: (0, 1), 2: (0, 2)})
    foreign = clean + [LogRecord(0, 3, b"other", b"not ours")]
    assert "never produced" in problems(foreign, ends={0: 4, 1: 3})
    wrong_partition = clean + [rec(0, 3, 7)]
    assert "belongs to partition 1" in problems(wrong_partition, ends={0: 4, 1: 3}, sent=8)


# ---- placement and the tools --------------------------------------------------------------------


def test_replicas_spread_evenly_and_tools_show_the_cluster(cluster_factory, caudal_bin):
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    c = cluster_factory()
    ids = [n.node_id for n in c.nodes]
    topic = unique_topic("placement")
    parts = c.create_topic(topic, 6, 3)

    # three distinct replicas everywhere, all in sync, the first replica leads; leaders 2/2/2
    for p, st in sorted(parts.items()):
        assert sorted(st.replicas) == ids, f"partition {p}: replicas {st.replicas}"
        assert sorted(st.isr) == ids, f"partition {p}: ISR {st.isr}"
        assert st.leader == st.replicas[0], f"partition {p}: leader {st.leader} is not the first replica {st.replicas}"
    assert Counter(st.leader for st in parts.values()) == {i: 2 for i in ids}, {p: st.leader for p, st in parts.items()}

    # a client bootstrapped from all nodes sees the same, and the same controller as the nodes
    controller = c.active_controller()
    md = ck_admin(c.bootstrap).list_topics(timeout=10)
    assert sorted(md.brokers) == ids
    assert {i: f"{b.host}:{b.port}" for i, b in md.brokers.items()} == {n.node_id: n.bootstrap for n in c.nodes}
    assert md.controller_id == controller.node_id
    for p, pm in md.topics[topic].partitions.items():
        assert (pm.leader, list(pm.replicas), sorted(pm.isrs)) == (parts[p].leader, parts[p].replicas, ids)
    desc = ck_admin(c.bootstrap).describe_cluster(request_timeout=10).result(timeout=15)
    assert desc.controller.id == controller.node_id
    assert sorted(n.id for n in desc.nodes) == ids

    # caudal topic describe
    out = caudal(caudal_bin, "topic", "describe", topic, "-b", c.bootstrap)
    assert field_value(out, "Partitions") == "6", out
    assert field_value(out, "Replication factor") == "3", out
    rows = parse_table(out, "PARTITION")
    assert sorted(int(r[0]) for r in rows) == list(range(6)), out
    for r in rows:
        p = int(r[0])
        assert int(r[1]) == parts[p].leader, out
        assert node_list(r[3]) == parts[p].replicas, out
        assert sorted(node_list(r[4])) == ids, out

    # caudal cluster info: brokers, controller, leaders per broker (every topic), all healthy
    info = caudal(caudal_bin, "cluster", "info", "-b", c.bootstrap)
    assert field_value(info, "Controller") == str(controller.node_id), info
    assert field_value(info, "Brokers") == "3", info
    md = ck_admin(c.bootstrap).list_topics(timeout=10)
    leads = Counter(pm.leader for t in md.topics.values() for pm in t.partitions.values())
    brokers = {int(r[0]): r for r in parse_table(info, "BROKER")}
    assert sorted(brokers) == ids, info
    for n in c.nodes:
        row = brokers[n.node_id]
        assert row[1] == n.bootstrap, info
        assert int(row[3]) == leads[n.node_id], f"broker {n.node_id} leads {leads[n.node_id]}\n{info}"
    assert "fully replicated and online" in info, info

    # a replication factor above the number of brokers
    bad = unique_topic("rf4")
    fs = ck_admin(c.bootstrap).create_topics([NewTopic(bad, num_partitions=1, replication_factor=4)], request_timeout=20)
    with pytest.raises(KafkaException) as e:
        fs[bad].result(timeout=25)
    assert e.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR, e.value
    assert bad not in ck_admin(c.bootstrap).list_topics(timeout=10).topics


# ---- kill -9 under load -------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["leader", "follower", "controller"])
def test_kill9_under_acked_load(cluster_factory, caudal_bin, role):
    """kill -9 one node while an idempotent acks=all producer runs: the partition leader of
    partition 0, a node that leads no partition of the topic, or the active controller. Records
    produced after the kill are acknowledged on every partition within seconds, the victim leaves
    every ISR, and after a restart it rejoins them; nothing acknowledged is lost or doubled."""
    c = cluster_factory()
    all_ids = {n.node_id for n in c.nodes}
    partitions = 2 if role == "follower" else 3  # with 2 partitions one node leads none
    topic = unique_topic(f"kill-{role}")
    c.create_topic(topic, partitions, 3, config={"min.insync.replicas": "2"})
    leaders = c.leaders(topic)
    if role == "leader":
        victim = c.node(leaders[0])
    elif role == "follower":
        idle = [n for n in c.nodes if n.node_id not in leaders.values()]
        assert idle, f"every node leads a partition of a {partitions}-partition topic: {leaders}"
        victim = idle[0]
    else:
        victim = c.active_controller()

    load = c.track(AckedProducer(c.bootstrap, topic, partitions)).start()
    load.wait_acked_from(0, 50, 30, "warm-up", c)
    mark = load.sent
    c.kill9(victim)
    took = load.wait_acked_from(mark, 20, FAILOVER_S, f"after kill -9 of the {role} {victim}", c)
    c.wait_isr(topic, 2, 30)  # the victim left every ISR

    if role == "leader":
        new = c.leader_of(topic, 0, not_in={victim.node_id})
        print(f"partition 0: leader {victim.node_id} -> {new.node_id}")
    elif role == "follower":
        assert c.leaders(topic) == leaders, "a follower's death moved leadership"
        info = caudal(caudal_bin, "cluster", "info", "-b", c.bootstrap)
        rows = [r for r in parse_table(info, "TOPIC") if r[0] == topic]
        assert sorted(int(r[1]) for r in rows) == list(range(partitions)), info
        for r in rows:
            assert r[-1] == "under-replicated", info
            assert victim.node_id not in node_list(f"[{r[4]}]"), info
    else:
        new = c.active_controller(not_in={victim.node_id})
        print(f"controller {victim.node_id} -> {new.node_id}")
        # the new controller fenced the dead node, and new topics work without it
        c.wait_brokers(all_ids - {victim.node_id})
        c.wait_client_sees_brokers(all_ids - {victim.node_id}, 30)
        t2 = unique_topic("after-controller-rf2")
        c.create_topic(t2, 2, 2)
        roundtrip(c.bootstrap, t2, 2, "rf2")

    mark = load.sent
    c.restart(victim)
    c.wait_isr(topic, 3, 60)
    load.wait_acked_from(mark, 50, 30, f"after the restart of {victim}", c)
    if role == "controller":
        t3 = unique_topic("after-controller-rf3")
        c.create_topic(t3, 3, 3)
        roundtrip(c.bootstrap, t3, 3, "rf3")

    finish_load(load, f"kill -9 of the {role}")
    check = check_topic(c, topic, load)
    print(f"{role}: acks resumed {took:.1f}s after the kill; {load.summary()}; {check.stats}")


# ---- a paused leader ------------------------------------------------------------------------------


def test_paused_leader_is_replaced_and_rejoins_without_its_writes(cluster_factory):
    """SIGSTOP the leader of partition 0 (its connections stay open, it just stops answering):
    another replica takes over and records produced meanwhile are acknowledged while it is still
    stopped; after 2x the session timeout it gets SIGCONT, rejoins as a follower (ISR 3) and
    whatever it appended as a stale leader is gone: the log check passes and every replica holds
    the same batches."""
    c = cluster_factory()
    topic = unique_topic("zombie")
    partitions = 3
    c.create_topic(topic, partitions, 3, config={"min.insync.replicas": "2"})
    zombie = c.leader_of(topic, 0)
    was_controller = c.active_controller().node_id == zombie.node_id

    load = c.track(AckedProducer(c.bootstrap, topic, partitions)).start()
    load.wait_acked_from(0, 50, 30, "warm-up", c)
    mark = load.sent
    paused_at = time.monotonic()
    c.pause(zombie)
    new = c.leader_of(topic, 0, timeout=PAUSED_FAILOVER_S, not_in={zombie.node_id})
    took = load.wait_acked_from(mark, 20, PAUSED_FAILOVER_S, f"while {zombie} is stopped", c)
    assert zombie.paused and zombie.alive()
    time.sleep(max(0.0, paused_at + 2 * SESSION_S - time.monotonic()))
    c.resume(zombie)
    print(f"partition 0: leader {zombie.node_id} -> {new.node_id} (the paused node was the active controller: "
          f"{was_controller}); acks resumed {took:.1f}s after SIGSTOP; paused {time.monotonic() - paused_at:.1f}s")

    mark = load.sent
    c.wait_isr(topic, 3, 60)
    load.wait_acked_from(mark, 50, 30, f"after SIGCONT of {zombie}", c)
    finish_load(load, "pause of the leader")
    check = check_topic(c, topic, load)
    print(f"{load.summary()}; {check.stats}")


# ---- rolling restart --------------------------------------------------------------------------------


def test_rolling_restart_under_load_with_a_consumer_group(cluster_factory, tmp_path):
    """SIGTERM each node in turn (exit code 0), restart it and wait for ISR 3 (the topic and
    __consumer_offsets) before the next, while an idempotent producer and a consumer group run.
    Every record is acknowledged (only retriable errors along the way, none surfacing as a
    failed delivery), records produced while a node is down are acknowledged within seconds, the
    group's committed offsets never go backwards, and the group processes every record with no
    skip and no redelivery after an acknowledged commit."""
    c = cluster_factory()
    partitions = 4
    topic = unique_topic("rolling")
    group = f"rolling-{uuid.uuid4().hex[:8]}"
    c.create_topic(topic, partitions, 3, config={"min.insync.replicas": "2"})

    load = c.track(AckedProducer(c.bootstrap, topic, partitions)).start()
    member = c.track(
        GroupMember(
            "m1",
            "ck",
            {"bootstrap": c.bootstrap, "topic": topic, "group": group, "session_timeout_ms": 6000,
             "heartbeat_interval_ms": 500},
            tmp_path,
        ).start()
    )
    watcher = c.track(CommittedOffsetsWatcher(c.bootstrap, group, topic, partitions)).start()
    wait_until(lambda: len(watcher.snapshot()) == partitions, 60, "the group committing on every partition", [member])
    c.wait_isr("__consumer_offsets", 3, 60)

    downtime = {}
    for node in list(c.nodes):
        mark = load.sent
        code = c.stop(node)
        assert code == 0, f"{node} exited {code} on SIGTERM\n{node.log_tail()}"
        downtime[node.node_id] = load.wait_acked_from(mark, 20, FAILOVER_S, f"while {node} is stopped", c)
        c.restart(node)
        c.wait_isr(topic, 3, 60)
        c.wait_isr("__consumer_offsets", 3, 60)
        assert member.alive(), f"group member exited\n{member.report()}"
        assert not watcher.violations, watcher.violations
    load.wait_acked_from(load.sent, 20, 30, "after the rolling restart", c)

    finish_load(load, "rolling restart", allow_failures=False)
    errors = Counter(name for _, name, _, fatal in load.client_errors)
    check = check_topic(c, topic, load)

    # the group catches up with the end of every partition, its offsets only ever went forward
    wait_until(lambda: watcher.snapshot() == check.high_watermarks, 60,
               f"committed offsets {check.high_watermarks} (watcher saw {watcher.snapshot()}, "
               f"{watcher.samples} polls, failed {dict(watcher.errors)})", [member], interval=0.3)
    watcher.close()
    assert not watcher.violations, "\n".join(watcher.violations)
    assert member.terminate() == 0, member.report()
    problems = GroupLog([member]).violations(check.expected_values())
    assert not problems, f"{len(problems)} group problems:\n" + "\n".join(problems[:30])
    print(f"acks resumed after each stop: {downtime}; client errors {dict(errors)}; offset polls {watcher.samples} "
          f"(failed {dict(watcher.errors)}); {load.summary()}; {check.stats}")


# ---- caudal dev cluster -------------------------------------------------------------------------------


def test_dev_cluster_starts_serves_and_stops(caudal_bin, tmp_path):
    """`caudal dev cluster --nodes 3`: three nodes on base..base+2 (controllers on +100) agree on
    three brokers and a controller; a replicated topic takes records and gives them back; SIGTERM
    to the command stops every node (exit 0, no process of its group left, ports closed)."""
    dev = DevCluster(caudal_bin, tmp_path, 3, sets={k: FAST_FAILOVER[k] for k in (
        "broker.session.timeout.ms", "broker.heartbeat.interval.ms", "offsets.topic.replication.factor")})
    addresses = dev.bootstrap.split(",")
    try:
        dev.start()

        def agreed():
            if dev.proc.poll() is not None:
                raise AssertionError(f"caudal dev cluster exited {dev.proc.returncode}")
            seen = []
            for a in addresses:
                try:
                    brokers, controller, _ = probe_metadata(a, [])
                except (OSError, ValueError, AssertionError):
                    return None
                seen.append((sorted(brokers), controller))
            ok = all(b == [1, 2, 3] and ctl == seen[0][1] and ctl in (1, 2, 3) for b, ctl in seen)
            return seen if ok else None

        wait_until(agreed, 60, "three nodes agreeing on three brokers and a controller")
        assert f"bootstrap servers: {dev.bootstrap}" in dev.output(), dev.output()

        topic = unique_topic("dev")
        from confluent_kafka.admin import NewTopic

        fs = ck_admin(dev.bootstrap).create_topics([NewTopic(topic, num_partitions=3, replication_factor=3)],
                                                   request_timeout=30)
        fs[topic].result(timeout=35)

        def replicated():
            for a in addresses:
                _, _, topics = probe_metadata(a, [topic])
                err, parts = topics.get(topic, (None, {}))
                if err != 0 or len(parts) != 3 or any(p.leader < 0 or len(p.isr) != 3 for p in parts.values()):
                    return False
            return True

        wait_until(replicated, 30, f"{topic} with 3 in-sync replicas on every node")
        roundtrip(dev.bootstrap, topic, 3, "dev")

        dev.proc.send_signal(signal.SIGTERM)
        code = dev.proc.wait(timeout=45)
        assert code == 0, f"caudal dev cluster exited {code}"
        wait_until(lambda: not dev.group_alive(), 10, "every node of the dev cluster to exit")
        for a in addresses:
            host, port = a.rsplit(":", 1)
            with pytest.raises(OSError):
                socket.create_connection((host, int(port)), timeout=1).close()
        for i in (1, 2, 3):
            assert (dev.data_dir / f"node-{i}.log").is_file()
            assert (dev.data_dir / f"node-{i}").is_dir()
    except BaseException:
        print(dev.node_logs(60))
        raise
    finally:
        dev.cleanup()
