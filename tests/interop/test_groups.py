"""Consumer groups with real clients: confluent-kafka (librdkafka), kafka-python and kafkajs, each
member in its own process (support.GroupMember), alone and mixed in one group.

What is proved, with the exact records and offsets every member reports (support.GroupLog):
- members of one group share a 6-partition topic: every partition has exactly one owner, every
  member gets some, the broker's DescribeGroups shows the assignment the clients report, and each
  record is processed by exactly one member;
- a fourth member joining triggers a rebalance and gets partitions (cooperative-sticky moves only
  the partitions it takes);
- a member killed with SIGKILL (no LeaveGroup) is noticed within the session timeout; the others
  take over its partitions at the committed offset, and nothing is skipped: a record is processed
  twice only if the first processing was never covered by an acknowledged commit;
- a second group reads every record independently;
- a cleanly stopped member resumes at its committed offset; committed offsets and group metadata
  survive a broker restart (default 50 `__consumer_offsets` partitions);
- static membership: a restarted static member gets its partitions back without a rebalance, a
  second process with the same group.instance.id fences the first;
- bad commits (unknown topic, metadata over offset.metadata.max.bytes) fail per partition with
  Kafka's errors and leave other partitions and groups alone;
- the admin APIs of confluent-kafka, kafka-python and kafkajs for groups and their offsets.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from conftest import Broker, _test_failed
from support import (
    MEMBER_EXIT_FATAL,
    GroupLog,
    GroupMember,
    Record,
    ck_admin,
    ck_produce,
    create_topic,
    js_group_admin,
    kill_leftover_members,
    now_ms,
    rdkafka_conf,
    unique_topic,
    wait_until,
)

PARTITIONS = 6
SESSION_TIMEOUT_MS = 6000  # group.min.session.timeout.ms, the smallest the broker accepts
HEARTBEAT_MS = 500
GROUP_SETTINGS = {
    "group.initial.rebalance.delay.ms": "300",
    "offsets.topic.num.partitions": "4",
}
SETTLE_TIMEOUT_S = 45
CONSUME_TIMEOUT_S = 60

# ---- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def group_broker(caudal_bin, tmp_path_factory, request):
    """One broker for the module: short initial rebalance delay, 4 __consumer_offsets partitions.
    Tests use unique topics and group ids."""
    b = Broker(caudal_bin, tmp_path_factory.mktemp("groups"), GROUP_SETTINGS)
    try:
        b.start()
        yield b
    finally:
        b.cleanup()
        if request.session.testsfailed:
            print(b.log_tail(120))


@pytest.fixture
def members(tmp_path, request):
    """`members(name, client, **conf)` starts a GroupMember; every member is killed at teardown,
    and on failure each one's recent events and client log are printed."""
    started: list[GroupMember] = []

    def make(name: str, client: str, **conf) -> GroupMember:
        m = GroupMember(name, client, conf, tmp_path)
        started.append(m)
        return m.start()

    yield make
    for m in started:
        m.cleanup()
    if _test_failed(request):
        for m in started:
            print(m.report(60))
    kill_leftover_members()


# ---- helpers ------------------------------------------------------------------------------------


def unique_group(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def produce_values(bootstrap: str, topic: str, n: int, tag: str, partitions: int = PARTITIONS) -> dict:
    """Produces `n` records round-robin over the partitions; returns {(partition, offset): value}."""
    records = [Record(i % partitions, f"k{i}".encode(), f"{tag}-{i}".encode()) for i in range(n)]
    placed = ck_produce(bootstrap, topic, records)
    return {(p, o): r.value.decode() for r, (p, o) in zip(records, placed)}


def end_offsets(expected: dict) -> dict[int, int]:
    ends: dict[int, int] = {}
    for p, o in expected:
        ends[p] = max(ends.get(p, 0), o + 1)
    return ends


class BackgroundProducer(threading.Thread):
    """Produces `chunks` chunks of `per_chunk` records, `pause` seconds apart."""

    def __init__(self, bootstrap: str, topic: str, tag: str, chunks: int, per_chunk: int, pause: float):
        super().__init__(name=f"producer-{tag}", daemon=True)
        self.args = (bootstrap, topic, tag, chunks, per_chunk, pause)
        self.produced: dict = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        bootstrap, topic, tag, chunks, per_chunk, pause = self.args
        try:
            for c in range(chunks):
                records = [
                    Record(i % PARTITIONS, f"k{i}".encode(), f"{tag}-{i}".encode())
                    for i in range(c * per_chunk, (c + 1) * per_chunk)
                ]
                placed = ck_produce(bootstrap, topic, records, timeout=60)
                self.produced.update({(p, o): r.value.decode() for r, (p, o) in zip(records, placed)})
                time.sleep(pause)
        except BaseException as e:  # noqa: BLE001 - reported by result()
            self.error = e

    def result(self, timeout: float = 90) -> dict:
        self.join(timeout)
        assert not self.is_alive(), f"background producer still running after {timeout}s"
        if self.error is not None:
            raise AssertionError(f"background producer failed: {self.error!r}")
        return self.produced


def describe(bootstrap: str, group: str):
    futures = ck_admin(bootstrap).describe_consumer_groups([group], request_timeout=10)
    return futures[group].result(timeout=15)


def group_offsets(bootstrap: str, group: str) -> dict[tuple[str, int], tuple[int, str | None]]:
    """confluent-kafka AdminClient.list_consumer_group_offsets: {(topic, partition): (offset, metadata)}."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    futures = ck_admin(bootstrap).list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=10)
    res = futures[group].result(timeout=15)
    out = {}
    for tp in res.topic_partitions:
        assert tp.error is None, f"{group} {tp}: {tp.error}"
        out[(tp.topic, tp.partition)] = (tp.offset, tp.metadata)
    return out


def committed_of(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    return {p: o for (t, p), (o, _) in group_offsets(bootstrap, group).items() if t == topic}


def broker_assignment(desc, topic: str) -> dict[str, set[int]]:
    """{client.id: partitions of `topic`} from a DescribeGroups answer."""
    return {
        m.client_id: {tp.partition for tp in m.assignment.topic_partitions if tp.topic == topic} for m in desc.members
    }


def wait_settled(bootstrap: str, group: str, topic: str, live: list[GroupMember], timeout: float = SETTLE_TIMEOUT_S):
    """Waits until the live members' own assignments partition the topic (each member some,
    every partition exactly once) and the broker describes the group as Stable with exactly those
    members and assignments. Returns {member name: partitions}."""
    from confluent_kafka import ConsumerGroupState

    def check():
        for m in live:
            if not m.alive():
                raise AssertionError(f"member {m.name} exited\n{m.report()}")
        own = {m.name: m.assignment() for m in live}
        if sorted(p for s in own.values() for p in s) != list(range(PARTITIONS)) or not all(own.values()):
            return None
        desc = describe(bootstrap, group)
        if desc.state != ConsumerGroupState.STABLE or broker_assignment(desc, topic) != own:
            return None
        return own

    return wait_until(check, timeout, f"group {group} to settle with {[m.name for m in live]}", live, interval=0.2)


def wait_consumed(group_members: list[GroupMember], expected: dict, timeout: float = CONSUME_TIMEOUT_S, initial=None):
    """Waits until every expected record was delivered to some member and acknowledged commits
    reach every partition's end."""
    ends = end_offsets(expected)

    def check():
        log = GroupLog(group_members, initial)
        delivered = log.by_record()
        if any(k not in delivered for k in expected):
            return None
        committed = log.committed()
        return all(committed.get(p, 0) >= e for p, e in ends.items())

    wait_until(check, timeout, f"{len(expected)} records consumed and committed", group_members, interval=0.2)


def assert_clean(log: GroupLog, expected: dict, exactly_once=()) -> None:
    problems = log.violations(expected, exactly_once)
    assert not problems, f"{len(problems)} delivery problems:\n" + "\n".join(problems[:30])


def first_takeover_ms(survivors: list[GroupMember], partitions: set[int], since_ms: int) -> int:
    """When the last of `partitions` was assigned to a survivor after `since_ms`."""
    got: dict[int, int] = {}
    for m in survivors:
        for e in m.rebalance_events(since_ms):
            if e["ev"] in ("assigned", "assignment"):
                for p in e["partitions"]:
                    if p in partitions and p not in got:
                        got[p] = e["t"]
    assert set(got) == partitions, f"partitions {partitions - set(got)} never reassigned"
    return max(got.values())


# ---- 1-3, 6: shared partitions, a fourth member, a killed member ---------------------------------

# clients of the three first members, the fourth member, member options, expected protocol
SCENARIOS = {
    "confluent-eager": (["ck", "ck", "ck"], "ck", {}, "range"),
    "confluent-cooperative": (["ck", "ck", "ck"], "ck", {"strategy": "cooperative-sticky"}, "cooperative-sticky"),
    "kafka-python": (["kp", "kp", "kp"], "kp", {}, "range"),
    "kafkajs": (["js", "js", "js"], "js", {}, "RoundRobinAssigner"),
    # kafkajs only speaks round-robin: it publishes it as "roundrobin", the one protocol all
    # three clients support, so the broker must select it
    "mixed": (["ck", "kp", "js"], "js", {"protocol_name": "roundrobin"}, "roundrobin"),
}


def member_conf(client: str, base: dict, options: dict) -> dict:
    conf = dict(base)
    if client == "ck" and "strategy" in options:
        conf["strategy"] = options["strategy"]
    if client == "js" and "protocol_name" in options:
        conf["protocol_name"] = options["protocol_name"]
    return conf


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_group_shares_partitions_and_survives_a_killed_member(group_broker, members, scenario):
    clients, fourth, options, protocol = SCENARIOS[scenario]
    bootstrap = group_broker.bootstrap
    topic = unique_topic(f"grp-{scenario}")
    create_topic(bootstrap, topic, PARTITIONS)
    group = unique_group(scenario)
    base = dict(
        bootstrap=bootstrap,
        topic=topic,
        group=group,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_MS,
        process_delay_ms=20,
        max_records=50,
    )
    first = [members(f"{c}{i}", c, **member_conf(c, base, options)) for i, c in enumerate(clients)]

    # 1. three members share the six partitions; each record is processed by one member
    own = wait_settled(bootstrap, group, topic, first)
    assert describe(bootstrap, group).partition_assignor == protocol
    phase_a = produce_values(bootstrap, topic, 600, "a")
    wait_consumed(first, phase_a)
    log = GroupLog(first)
    assert_clean(log, phase_a, exactly_once=phase_a)
    for m in first:
        assert {d.partition for d in log.deliveries if d.member == m.name} == own[m.name], m.name
    assert committed_of(bootstrap, group, topic) == end_offsets(phase_a)

    # 2. a fourth member joins: the group rebalances and it gets partitions
    joined_ms = now_ms()
    newcomer = members(f"{fourth}3", fourth, **member_conf(fourth, base, options))
    four = first + [newcomer]
    own4 = wait_settled(bootstrap, group, topic, four)
    assert own4[newcomer.name], own4
    if scenario == "confluent-cooperative":
        # incremental: only the partitions the newcomer takes are revoked from their owners
        revoked = {m.name: set() for m in first}
        for m in first:
            for e in m.rebalance_events(joined_ms):
                if e["ev"] in ("revoked", "lost"):
                    revoked[m.name] |= set(e["partitions"])
        assert set().union(*revoked.values()) == own4[newcomer.name], (revoked, own4)
        for m in first:
            assert own4[m.name] == own[m.name] - revoked[m.name], (m.name, own, own4)
    phase_b = produce_values(bootstrap, topic, 600, "b")
    expected = {**phase_a, **phase_b}
    wait_consumed(four, expected)
    log = GroupLog(four)
    assert_clean(log, expected, exactly_once=expected)
    for m in four:
        got = {d.partition for d in log.deliveries if d.member == m.name and d.value.startswith("b-")}
        assert got == own4[m.name], (m.name, got, own4[m.name])

    # 3. kill one member (SIGKILL: no LeaveGroup) while records flow; the others take over its
    #    partitions once its session times out and continue from the committed offsets
    victim = first[1]
    producer = BackgroundProducer(bootstrap, topic, "c", chunks=12, per_chunk=100, pause=0.4)
    producer.start()
    wait_until(
        lambda: any(r[2].startswith("c-") for e in victim.events("records") for r in e["records"]),
        30,
        f"{victim.name} to process records of the running load",
        [victim],
        interval=0.05,
    )
    victim.kill()
    survivors = [m for m in four if m is not victim]
    own3 = wait_settled(bootstrap, group, topic, survivors, timeout=SESSION_TIMEOUT_MS / 1000 + 30)
    took_s = (first_takeover_ms(survivors, own4[victim.name], victim.killed_at_ms) - victim.killed_at_ms) / 1000
    # only the session timeout can have told the broker (a killed client sends no LeaveGroup)
    assert SESSION_TIMEOUT_MS / 1000 - 2 * HEARTBEAT_MS / 1000 - 1 <= took_s <= SESSION_TIMEOUT_MS / 1000 + 6, took_s
    if scenario == "confluent-cooperative":
        for m in survivors:
            revoked = [e for e in m.rebalance_events(victim.killed_at_ms) if e["ev"] in ("revoked", "lost")]
            assert not revoked, f"{m.name} revoked {revoked} when only the dead member's partitions moved"
            assert own3[m.name] >= own4[m.name], (m.name, own4, own3)
    phase_c = producer.result()
    expected = {**phase_a, **phase_b, **phase_c}
    wait_consumed(four, expected)
    log = GroupLog(four)
    assert_clean(log, expected, exactly_once={**phase_a, **phase_b})
    # duplicates, if any, are the victim's processed-but-uncommitted records or records of a
    # commit the client saw fail
    dup_keys = [k for k, ds in log.by_record().items() if len(ds) > 1]
    for k in dup_keys:
        assert any(d.confirmed_ms is None for d in log.by_record()[k]), k
    print(f"{scenario}: takeover after {took_s:.1f}s, {len(dup_keys)} records processed twice after the kill")
    assert committed_of(bootstrap, group, topic) == end_offsets(expected)


# ---- 4: a second group reads everything independently ---------------------------------------------


def test_second_group_reads_every_record_independently(group_broker, members):
    bootstrap = group_broker.bootstrap
    topic = unique_topic("grp-two")
    create_topic(bootstrap, topic, PARTITIONS)
    g1, g2 = unique_group("first"), unique_group("second")
    base = dict(bootstrap=bootstrap, topic=topic, session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=HEARTBEAT_MS)
    phase_a = produce_values(bootstrap, topic, 600, "a")

    a = [members("g1-ck0", "ck", group=g1, **base), members("g1-ck1", "ck", group=g1, **base)]
    wait_settled(bootstrap, g1, topic, a)
    wait_consumed(a, phase_a)
    assert committed_of(bootstrap, g1, topic) == end_offsets(phase_a)
    # the second group starts after the first committed everything: it still reads from 0
    assert committed_of(bootstrap, g2, topic) == {}
    b = [
        members("g2-kp0", "kp", group=g2, **base),
        members("g2-js1", "js", group=g2, protocol_name="roundrobin", **base),
    ]
    wait_settled(bootstrap, g2, topic, b)
    wait_consumed(b, phase_a)
    # both groups live: new records reach both
    phase_b = produce_values(bootstrap, topic, 600, "b")
    expected = {**phase_a, **phase_b}
    wait_consumed(a, expected)
    wait_consumed(b, expected)
    assert_clean(GroupLog(a), expected, exactly_once=expected)
    assert_clean(GroupLog(b), expected, exactly_once=expected)
    assert committed_of(bootstrap, g1, topic) == end_offsets(expected)
    assert committed_of(bootstrap, g2, topic) == end_offsets(expected)


# ---- 5: clean stop and restart of members, then of the broker --------------------------------------


def test_members_resume_at_committed_offsets_across_member_and_broker_restarts(broker_factory, members):
    # default offsets.topic.num.partitions (50)
    broker = broker_factory(settings={"group.initial.rebalance.delay.ms": "0"})
    bootstrap = broker.bootstrap
    topic = unique_topic("grp-restart")
    create_topic(bootstrap, topic, PARTITIONS)
    groups = {c: unique_group(f"restart-{c}") for c in ("ck", "kp", "js")}
    live_group = unique_group("restart-live")
    base = dict(bootstrap=bootstrap, topic=topic, session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=HEARTBEAT_MS)
    runs: dict[str, list[GroupMember]] = {c: [] for c in groups}

    def start_run(n: int) -> None:
        for c, g in groups.items():
            runs[c].append(members(f"{c}-run{n}", c, group=g, **base))

    def stop_run() -> None:
        for c in groups:
            m = runs[c][-1]
            assert m.terminate() == 0, m.report()
            assert m.events("closed"), m.report()

    def wait_empty(group: str) -> None:
        from confluent_kafka import ConsumerGroupState

        wait_until(lambda: describe(bootstrap, group).state == ConsumerGroupState.EMPTY, 20, f"{group} Empty")

    # first run reads everything, commits, closes cleanly (LeaveGroup: the group is Empty at once)
    phase_a = produce_values(bootstrap, topic, 300, "a")
    start_run(1)
    live = members("live-ck", "ck", group=live_group, **base)
    for c in groups:
        wait_consumed(runs[c], phase_a)
    wait_consumed([live], phase_a)
    stop_run()
    for g in groups.values():
        wait_empty(g)
        assert committed_of(bootstrap, g, topic) == end_offsets(phase_a)

    # a restarted member resumes at the committed offset: only the new records, no re-delivery
    phase_b = produce_values(bootstrap, topic, 300, "b")
    expected = {**phase_a, **phase_b}
    start_run(2)
    for c in groups:
        wait_consumed(runs[c], expected)
        assert_clean(GroupLog(runs[c]), expected, exactly_once=expected)
        assert {d.value[0] for d in GroupLog(runs[c][1:]).deliveries} == {"b"}, c
    wait_consumed([live], expected)
    stop_run()
    for g in groups.values():
        wait_empty(g)

    # what the clients see before the broker restart
    before = {g: group_offsets(bootstrap, g) for g in [*groups.values(), live_group]}
    assert all(committed_of(bootstrap, g, topic) == end_offsets(expected) for g in groups.values())
    live_desc = describe(bootstrap, live_group)
    live_member_ids = sorted(m.member_id for m in live_desc.members)
    assert len(live_member_ids) == 1
    kp_before = kp_group_offsets(bootstrap, groups["kp"])
    js_before = js_group_offsets(bootstrap, groups["js"], topic)
    ck_before = ck_committed(bootstrap, groups["ck"], topic)
    assert ck_before == end_offsets(expected) and kp_before == ck_before and js_before == ck_before

    broker.restart()

    # committed offsets and group metadata are still there
    after = {g: group_offsets(bootstrap, g) for g in before}
    assert after == before
    assert kp_group_offsets(bootstrap, groups["kp"]) == kp_before
    assert js_group_offsets(bootstrap, groups["js"], topic) == js_before
    assert ck_committed(bootstrap, groups["ck"], topic) == ck_before
    listed = list_groups(bootstrap)
    from confluent_kafka import ConsumerGroupState

    for g in groups.values():
        assert listed.get(g) == ConsumerGroupState.EMPTY, (g, listed.get(g))
    # the live member kept its membership: same member id, Stable, same assignment
    def live_restored():
        d = describe(bootstrap, live_group)
        return d if d.state == ConsumerGroupState.STABLE else None

    d = wait_until(live_restored, SESSION_TIMEOUT_MS / 1000 + 10, f"{live_group} Stable after the restart", [live])
    assert sorted(m.member_id for m in d.members) == live_member_ids
    assert broker_assignment(d, topic) == {live.name: set(range(PARTITIONS))}
    md = ck_admin(bootstrap).list_topics(topic="__consumer_offsets", timeout=10)
    assert len(md.topics["__consumer_offsets"].partitions) == 50

    # new records after the restart: the live member and restarted members get exactly those
    phase_c = produce_values(bootstrap, topic, 300, "c")
    expected = {**expected, **phase_c}
    start_run(3)
    for c in groups:
        wait_consumed(runs[c], expected)
        assert_clean(GroupLog(runs[c]), expected, exactly_once=expected)
        assert {d.value[0] for d in GroupLog(runs[c][2:]).deliveries} == {"c"}, c
    wait_consumed([live], expected)
    assert_clean(GroupLog([live]), expected, exactly_once={**phase_a, **phase_b})
    for g in [*groups.values(), live_group]:
        assert committed_of(bootstrap, g, topic) == end_offsets(expected), g


def kp_group_offsets(bootstrap: str, group: str) -> dict[int, int]:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    try:
        res = admin.list_group_offsets(group)[group]
        return {tp.partition: om.offset for tp, om in res.items()}
    finally:
        admin.close()


def js_group_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    res = js_group_admin(bootstrap, "fetchOffsets", groupId=group, topics=[topic])
    (t,) = res
    assert t["topic"] == topic
    return {p["partition"]: int(p["offset"]) for p in t["partitions"] if int(p["offset"]) >= 0}


def ck_committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """Consumer.committed() of a consumer in `group` (no subscription, so no rebalance)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(rdkafka_conf(bootstrap, **{"group.id": group, "enable.auto.commit": False}))
    try:
        res = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=15)
        return {tp.partition: tp.offset for tp in res if tp.offset >= 0}
    finally:
        c.close()


def list_groups(bootstrap: str, states=None) -> dict:
    """confluent-kafka AdminClient.list_consumer_groups: {group id: state}."""
    kwargs = {"request_timeout": 10}
    if states is not None:
        kwargs["states"] = set(states)
    res = ck_admin(bootstrap).list_consumer_groups(**kwargs).result(timeout=15)
    assert not res.errors, res.errors
    return {g.group_id: g.state for g in res.valid}


# ---- 7: static membership ---------------------------------------------------------------------------


def test_static_members_rejoin_without_rebalance_and_duplicates_are_fenced(group_broker, members):
    bootstrap = group_broker.bootstrap
    topic = unique_topic("grp-static")
    create_topic(bootstrap, topic, PARTITIONS)
    group = unique_group("static")
    base = dict(
        bootstrap=bootstrap,
        topic=topic,
        group=group,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_MS,
    )
    clients = ["ck", "kp", "ck"]
    instance = [f"{group}-s{i}" for i in range(3)]
    current = [members(f"s{i}-run0", c, instance_id=instance[i], **base) for i, c in enumerate(clients)]
    everyone = list(current)
    own = wait_settled(bootstrap, group, topic, current)
    desc = describe(bootstrap, group)
    assert {m.client_id: m.group_instance_id for m in desc.members} == {m.name: instance[i] for i, m in enumerate(current)}
    phase_a = produce_values(bootstrap, topic, 300, "a")
    wait_consumed(current, phase_a)

    # restart every static member in turn (one of them leads the group) within the session
    # timeout: it gets its partitions back and nobody else sees a rebalance
    first_kill_ms = now_ms()
    for i, client in enumerate(clients):
        old = current[i]
        old_member_id = next(m.member_id for m in describe(bootstrap, group).members if m.client_id == old.name)
        old.kill()
        new = members(f"s{i}-run1", client, instance_id=instance[i], **base)
        everyone.append(new)
        wait_until(
            lambda: new.assignment() == own[old.name],
            SESSION_TIMEOUT_MS / 1000 - 1,
            f"{new.name} to get {sorted(own[old.name])} back within the session timeout",
            [new],
        )
        took_s = (new.rebalance_events()[0]["t"] - old.killed_at_ms) / 1000
        assert took_s < SESSION_TIMEOUT_MS / 1000, took_s
        current[i] = new
        own[new.name] = own.pop(old.name)
        d = describe(bootstrap, group)
        assert broker_assignment(d, topic) == {m.name: own[m.name] for m in current}
        (replacement,) = [m for m in d.members if m.group_instance_id == instance[i]]
        assert replacement.client_id == new.name and replacement.member_id != old_member_id
    # records keep flowing; past the old sessions' timeouts nobody has rebalanced
    phase_b = produce_values(bootstrap, topic, 300, "b")
    expected = {**phase_a, **phase_b}
    wait_consumed(everyone, expected)
    wait_until(lambda: now_ms() > first_kill_ms + SESSION_TIMEOUT_MS + 3000, 30, "the old sessions to expire")
    for m in current:
        # (kafka-python reports an empty revocation before its first join)
        evs = [e for e in m.rebalance_events() if e["ev"] != "revoked" or e["partitions"]]
        assert len(evs) == 1 and evs[0]["ev"] == "assigned" and set(evs[0]["partitions"]) == own[m.name], (m.name, evs)
    assert_clean(GroupLog(everyone), expected, exactly_once=phase_b)
    assert broker_assignment(describe(bootstrap, group), topic) == own

    # a second process with a running member's instance id fences the first one: the newer
    # member takes over its partitions, the older one fails with FENCED_INSTANCE_ID. librdkafka
    # fails on its next heartbeat; kafka-python only stops heartbeating and fails at its next
    # commit, so records are produced for the fenced member to process: its commit is refused and
    # those records are processed again by the newer member (never committed twice).
    for i in (0, 1):
        old = current[i]
        fence_ms = now_ms()
        dup = members(f"s{i}-dup", clients[i], instance_id=instance[i], **base)
        everyone.append(dup)
        wait_until(lambda: dup.assignment() == own[old.name], 20, f"{dup.name} to own {sorted(own[old.name])}", [dup])
        expected.update(produce_values(bootstrap, topic, 60, f"f{i}"))
        rc = old.wait_exit(SESSION_TIMEOUT_MS / 1000 + 10)
        assert rc == MEMBER_EXIT_FATAL, old.report()
        fatal = old.fatal_errors()
        assert fatal, old.report()
        if clients[i] == "ck":
            # librdkafka's text for FENCED_INSTANCE_ID, raised as a fatal error
            assert "Static consumer fenced by other consumer with same group.instance.id" in fatal[-1]["message"], fatal
        else:
            assert fatal[-1]["name"] == "FencedInstanceIdError", fatal
        current[i] = dup
        own[dup.name] = own.pop(old.name)
        for m in current:
            if m is not dup:
                assert not m.rebalance_events(fence_ms), (m.name, m.rebalance_events(fence_ms))
    phase_c = produce_values(bootstrap, topic, 300, "c")
    expected = {**expected, **phase_c}
    wait_consumed(everyone, expected)
    assert_clean(GroupLog(everyone), expected, exactly_once=phase_c)
    assert broker_assignment(describe(bootstrap, group), topic) == own


# ---- 8: bad commits -----------------------------------------------------------------------------------


def test_bad_commits_fail_per_partition_and_leave_other_groups_alone(group_broker, members):
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    from kafka import errors as kerrors
    from kafka.admin import KafkaAdminClient
    from kafka.structs import OffsetAndMetadata

    bootstrap = group_broker.bootstrap
    topic = unique_topic("grp-bad")
    create_topic(bootstrap, topic, 3)
    ghost = unique_topic("grp-no-such-topic")
    bad, other = unique_group("bad"), unique_group("other")
    max_metadata = 4096  # offset.metadata.max.bytes default

    # another group with a live member and committed offsets
    def produce3(n, tag):
        return produce_values(bootstrap, topic, n, tag, partitions=3)

    phase_a = produce3(30, "a")
    live = members("other-ck", "ck", bootstrap=bootstrap, topic=topic, group=other, session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=HEARTBEAT_MS)
    wait_consumed([live], phase_a)
    other_before = group_offsets(bootstrap, other)

    # confluent-kafka consumer (simple commits, no subscription)
    from confluent_kafka import Consumer

    c = Consumer(rdkafka_conf(bootstrap, **{"group.id": bad, "enable.auto.commit": False}))
    try:
        with pytest.raises(KafkaException) as e:
            c.commit(offsets=[TopicPartition(topic, 0, 5), TopicPartition(ghost, 0, 7)], asynchronous=False)
        assert e.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, e.value
        # confluent-kafka sends a metadata string with its C terminator: n characters are n+1
        # bytes on the wire, so "m" * max is one byte too many and "x" * (max - 1) just fits
        with pytest.raises(KafkaException) as e:
            c.commit(
                offsets=[
                    TopicPartition(topic, 1, 9, "m" * max_metadata),
                    TopicPartition(topic, 2, 3, "x" * (max_metadata - 1)),
                ],
                asynchronous=False,
            )
        assert e.value.args[0].code() == KafkaError.OFFSET_METADATA_TOO_LARGE, e.value
        got = {tp.partition: (tp.offset, tp.metadata) for tp in c.committed([TopicPartition(topic, p) for p in range(3)], timeout=15)}
    finally:
        c.close()
    # the good partitions of both requests were stored, metadata included; the bad ones were not
    assert got[0][0] == 5 and got[2] == (3, "x" * (max_metadata - 1)) and got[1][0] < 0, got

    # kafka-python: the consumer raises OFFSET_METADATA_TOO_LARGE (it retries the retriable
    # UNKNOWN_TOPIC_OR_PARTITION until its timeout, so that one is checked through its admin
    # client, which reports errors per partition)
    kc = KafkaConsumer(bootstrap_servers=bootstrap, group_id=bad, enable_auto_commit=False, request_timeout_ms=15000)
    try:
        with pytest.raises(kerrors.OffsetMetadataTooLargeError):
            kc.commit({KTP(topic, 1): OffsetAndMetadata(4, "m" * (max_metadata + 1), -1)})
    finally:
        kc.close()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    try:
        # kafka-python sends the metadata's bytes exactly: max fits, max + 1 does not
        res = admin.alter_group_offsets(
            bad,
            {
                KTP(ghost, 1): OffsetAndMetadata(1, "", -1),
                KTP(topic, 1): OffsetAndMetadata(2, "m" * (max_metadata + 1), -1),
                KTP(topic, 0): OffsetAndMetadata(6, "z" * max_metadata, -1),
            },
        )
        assert res == {
            KTP(ghost, 1): kerrors.UnknownTopicOrPartitionError,
            KTP(topic, 1): kerrors.OffsetMetadataTooLargeError,
            KTP(topic, 0): kerrors.NoError,
        }, res
        stored = admin.list_group_offsets(bad)[bad]
        assert stored[KTP(topic, 0)].metadata == "z" * max_metadata
        res = admin.alter_group_offsets(bad, {KTP(topic, 0): OffsetAndMetadata(6, "ok", -1)})
        assert res == {KTP(topic, 0): kerrors.NoError}, res
    finally:
        admin.close()

    # confluent-kafka admin: per-partition errors too
    fut = ck_admin(bootstrap).alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(bad, [TopicPartition(ghost, 2, 1), TopicPartition(topic, 2, 4, "y")])],
        request_timeout=10,
    )
    try:
        alt = fut[bad].result(timeout=15)
        errs = {(tp.topic, tp.partition): tp.error.code() if tp.error else None for tp in alt.topic_partitions}
    except KafkaException as e:  # librdkafka reports the first partition error for the request
        errs = {"request": e.args[0].code()}
    assert errs in (
        {(ghost, 2): KafkaError.UNKNOWN_TOPIC_OR_PART, (topic, 2): None},
        {"request": KafkaError.UNKNOWN_TOPIC_OR_PART},
    ), errs

    # the bad group has exactly the good commits; no topic was created; the other group is untouched.
    # (Read with kafka-python: confluent-kafka reads metadata as a C string and runs past the end
    # of one kafka-python wrote without a terminator; "y" was written by confluent-kafka, with one.)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    try:
        stored = admin.list_group_offsets(bad)[bad]
    finally:
        admin.close()
    assert {(tp.topic, tp.partition): (om.offset, om.metadata) for tp, om in stored.items()} == {
        (topic, 0): (6, "ok"),
        (topic, 2): (4, "y\x00"),
    }
    md = ck_admin(bootstrap).list_topics(timeout=10)
    assert ghost not in md.topics
    assert group_offsets(bootstrap, other) == other_before
    phase_b = produce3(30, "b")
    expected = {**phase_a, **phase_b}
    wait_consumed([live], expected)
    assert_clean(GroupLog([live]), expected, exactly_once=expected)


# ---- 9: admin APIs ------------------------------------------------------------------------------------


def test_group_admin_apis(group_broker, members):
    from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
    from kafka import TopicPartition as KTP
    from kafka.admin import KafkaAdminClient
    from kafka.structs import OffsetAndMetadata

    bootstrap = group_broker.bootstrap
    topic = unique_topic("grp-admin")
    create_topic(bootstrap, topic, PARTITIONS)
    active, empty, kp_empty = unique_group("admin-active"), unique_group("admin-empty"), unique_group("admin-kp")
    missing = unique_group("admin-missing")
    base = dict(bootstrap=bootstrap, topic=topic, session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=HEARTBEAT_MS)
    expected = produce_values(bootstrap, topic, 120, "a")
    ms = [members("adm-ck0", "ck", group=active, **base), members("adm-kp1", "kp", group=active, **base)]
    own = wait_settled(bootstrap, active, topic, ms)
    wait_consumed(ms, expected)
    ends = end_offsets(expected)

    # alter offsets of a group nobody is in: creates it Empty with those offsets and metadata
    fut = ck_admin(bootstrap).alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(empty, [TopicPartition(topic, p, p * 3, f"meta-{p}") for p in range(PARTITIONS)])],
        request_timeout=10,
    )
    res = fut[empty].result(timeout=15)
    assert all(tp.error is None for tp in res.topic_partitions), res
    assert group_offsets(bootstrap, empty) == {(topic, p): (p * 3, f"meta-{p}") for p in range(PARTITIONS)}
    # ...but not of a group with members: they own the offsets (UNKNOWN_MEMBER_ID)
    fut = ck_admin(bootstrap).alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(active, [TopicPartition(topic, 0, 0)])], request_timeout=10
    )
    try:
        res = fut[active].result(timeout=15)
        codes = [tp.error.code() if tp.error else None for tp in res.topic_partitions]
    except KafkaException as e:
        codes = [e.args[0].code()]
    assert codes == [KafkaError.UNKNOWN_MEMBER_ID], codes
    assert committed_of(bootstrap, active, topic) == ends

    # list (all, by state), describe
    listed = list_groups(bootstrap)
    assert listed.get(active) == ConsumerGroupState.STABLE and listed.get(empty) == ConsumerGroupState.EMPTY, listed
    assert missing not in listed
    stable = list_groups(bootstrap, states=[ConsumerGroupState.STABLE])
    assert active in stable and empty not in stable
    only_empty = list_groups(bootstrap, states=[ConsumerGroupState.EMPTY])
    assert empty in only_empty and active not in only_empty
    d = describe(bootstrap, active)
    assert d.state == ConsumerGroupState.STABLE and d.partition_assignor == "range" and not d.is_simple_consumer_group
    assert broker_assignment(d, topic) == own
    assert d.coordinator.id == 1
    d = describe(bootstrap, empty)
    assert d.state == ConsumerGroupState.EMPTY and d.members == [] and d.is_simple_consumer_group
    futures = ck_admin(bootstrap).describe_consumer_groups([missing], request_timeout=10)
    try:
        d = futures[missing].result(timeout=15)
        assert d.state == ConsumerGroupState.DEAD and d.members == [], d
    except KafkaException as e:  # librdkafka reports a Dead group as GROUP_ID_NOT_FOUND
        assert e.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND, e

    # kafka-python's admin client sees the same
    kadmin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    try:
        kp_listed = {g["group_id"]: g for g in kadmin.list_groups()}
        # a group only ever written by simple (admin) commits has no protocol type, as in Kafka
        assert kp_listed[active]["protocol_type"] == "consumer" and kp_listed[empty]["protocol_type"] == "", kp_listed
        assert kp_listed[active].get("group_state") == "Stable" and kp_listed[empty].get("group_state") == "Empty"
        kp_stable = {g["group_id"] for g in kadmin.list_groups(states_filter=["Stable"])}
        assert active in kp_stable and empty not in kp_stable
        desc = kadmin.describe_groups([active, empty, missing])
        assert desc[active]["error"] is None and desc[active]["group_state"] == "Stable", desc[active]
        assert desc[active]["protocol_type"] == "consumer" and desc[active]["protocol_data"] == "range"
        kp_assign = {
            m["client_id"]: {
                p for t in m["member_assignment"]["assigned_partitions"] if t["topic"] == topic for p in t["partitions"]
            }
            for m in desc[active]["members"]
        }
        assert kp_assign == own, kp_assign
        assert desc[empty]["group_state"] == "Empty" and desc[empty]["members"] == []
        assert desc[missing]["error"] is None and desc[missing]["group_state"] == "Dead", desc[missing]
        offs = kadmin.list_group_offsets([active, empty])
        assert {tp.partition: om.offset for tp, om in offs[active].items() if tp.topic == topic} == ends
        # (confluent-kafka wrote that metadata with its C string terminator, see the bad-commit test)
        assert {tp.partition: (om.offset, om.metadata.rstrip("\x00")) for tp, om in offs[empty].items()} == {
            p: (p * 3, f"meta-{p}") for p in range(PARTITIONS)
        }
        res = kadmin.alter_group_offsets(kp_empty, {KTP(topic, 0): OffsetAndMetadata(1, "", -1)})
        assert all(e.errno == 0 for e in res.values()), res
        # delete: non-empty refused, unknown not found, empty deleted
        assert kadmin.delete_groups([active, missing, kp_empty]) == {
            active: "NonEmptyGroupError",
            missing: "GroupIdNotFoundError",
            kp_empty: "OK",
        }
        assert kp_empty not in {g["group_id"] for g in kadmin.list_groups()}
    finally:
        kadmin.close()

    # kafkajs admin reads the same offsets and description
    (js_offs,) = js_group_admin(bootstrap, "fetchOffsets", groupId=empty, topics=[topic])
    assert {p["partition"]: (int(p["offset"]), p["metadata"].rstrip("\x00")) for p in js_offs["partitions"]} == {
        p: (p * 3, f"meta-{p}") for p in range(PARTITIONS)
    }
    js_desc = js_group_admin(bootstrap, "describeGroups", groupIds=[active])["groups"][0]
    assert js_desc["state"] == "Stable" and js_desc["protocol"] == "range"
    assert {m["clientId"] for m in js_desc["members"]} == {m.name for m in ms}
    js_listed = {g["groupId"] for g in js_group_admin(bootstrap, "listGroups")["groups"]}
    assert {active, empty} <= js_listed

    # a member joining the altered group starts at the altered offsets
    altered = {p: p * 3 for p in range(PARTITIONS)}
    rest = {(p, o): v for (p, o), v in expected.items() if o >= altered[p]}
    newcomer = members("adm-js", "js", group=empty, **base)
    wait_consumed([newcomer], rest, initial=altered)
    log = GroupLog([newcomer], initial=altered)
    assert_clean(log, rest, exactly_once=rest)

    # confluent-kafka delete: the active group is refused, the empty one (after its member left) goes
    futures = ck_admin(bootstrap).delete_consumer_groups([active, missing], request_timeout=10)
    with pytest.raises(KafkaException) as e:
        futures[active].result(timeout=15)
    assert e.value.args[0].code() == KafkaError.NON_EMPTY_GROUP
    with pytest.raises(KafkaException) as e:
        futures[missing].result(timeout=15)
    assert e.value.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND
    assert newcomer.terminate() == 0
    wait_until(lambda: describe(bootstrap, empty).state == ConsumerGroupState.EMPTY, 20, f"{empty} Empty")
    futures = ck_admin(bootstrap).delete_consumer_groups([empty], request_timeout=10)
    assert futures[empty].result(timeout=15) is None
    assert empty not in list_groups(bootstrap)
    assert group_offsets(bootstrap, empty) == {}
    # the consumer offsets topic has the configured partition count
    md = ck_admin(bootstrap).list_topics(topic="__consumer_offsets", timeout=10)
    assert len(md.topics["__consumer_offsets"].partitions) == 4


# ---- the delivery checker itself ---------------------------------------------------------------------


class FakeMember:
    """A member's event stream written by hand, to check GroupLog without a broker."""

    def __init__(self, name: str, *events: tuple):
        self.name = name
        self._events = [{"ev": ev, "t": t, **fields} for ev, t, fields in events]

    def events(self):
        return list(self._events)


def recs(*offsets, p=0):
    return {"records": [[p, o, f"v{o}"] for o in offsets]}


def test_group_log_flags_gaps_redeliveries_and_wrong_starts():
    expected = {(0, o): f"v{o}" for o in range(4)}
    clean = FakeMember(
        "a",
        ("assigned", 1, {"partitions": [0]}),
        ("records", 2, recs(0, 1, 2, 3)),
        ("committing", 3, {"offsets": {"0": 4}}),
        ("committed", 4, {"offsets": {"0": 4}}),
    )
    assert GroupLog([clean]).violations(expected, exactly_once=expected) == []

    skipped = FakeMember("a", ("assigned", 1, {"partitions": [0]}), ("records", 2, recs(0, 1, 3)))
    problems = GroupLog([skipped]).violations(expected)
    assert any("went from offset 1 to 3" in p for p in problems) and any("never delivered" in p for p in problems)

    # b is assigned the partition after a's acknowledged commit at 2 but starts at 0
    a = FakeMember(
        "a",
        ("assigned", 1, {"partitions": [0]}),
        ("records", 2, recs(0, 1)),
        ("committing", 3, {"offsets": {"0": 2}}),
        ("committed", 4, {"offsets": {"0": 2}}),
        ("revoked", 5, {"partitions": [0]}),
    )
    b = FakeMember(
        "b",
        ("assigned", 6, {"partitions": [0]}),
        ("records", 7, recs(0, 1, 2, 3)),
        ("committing", 8, {"offsets": {"0": 4}}),
        ("committed", 9, {"offsets": {"0": 4}}),
    )
    problems = GroupLog([a, b]).violations(expected)
    assert any("b started partition 0 at offset 0" in p for p in problems), problems
    assert any("processed and committed by ['a', 'b']" in p for p in problems), problems

    # a dies after processing 0..1 with its commit unanswered: b may start at 0 (or 2), not at 1
    dead = FakeMember(
        "a",
        ("assigned", 1, {"partitions": [0]}),
        ("records", 2, recs(0, 1)),
        ("committing", 3, {"offsets": {"0": 2}}),
    )
    log = GroupLog([dead, b])
    assert log.violations(expected) == []
    assert any("delivered 2 times" in p for p in log.violations(expected, exactly_once=expected))
    late = FakeMember(
        "b",
        ("assigned", 6, {"partitions": [0]}),
        ("records", 7, recs(1, 2, 3)),
        ("committing", 8, {"offsets": {"0": 4}}),
        ("committed", 9, {"offsets": {"0": 4}}),
    )
    assert any("b started partition 0 at offset 1" in p for p in GroupLog([dead, late]).violations(expected))
    wrong_value = FakeMember("a", ("assigned", 1, {"partitions": [0]}), ("records", 2, {"records": [[0, 0, "x"]]}))
    assert any("with value 'x'" in p for p in GroupLog([wrong_value]).violations({(0, 0): "v0"}))

    # a member that reads records after another member's commit covered them: a violation, unless
    # it was fenced out (fatal error) and never committed them
    owner = FakeMember(
        "b",
        ("assigned", 1, {"partitions": [0]}),
        ("records", 2, recs(0, 1, 2, 3)),
        ("committing", 3, {"offsets": {"0": 4}}),
        ("committed", 4, {"offsets": {"0": 4}}),
    )
    reader = [("assigned", 0, {"partitions": [0]}), ("records", 1, recs(0, 1)), ("records", 5, recs(2, 3))]
    zombie = FakeMember("a", *reader, ("error", 6, {"fatal": True}))
    assert GroupLog([owner, zombie]).violations(expected) == []
    problems = GroupLog([owner, FakeMember("a", *reader)]).violations(expected)
    assert [p for p in problems if "delivered again to ['a']" in p] == [
        f"record (0, {o}) delivered again to ['a'] after b's commit covering it was acknowledged" for o in (2, 3)
    ], problems
