"""Topic administration through confluent_kafka.admin (librdkafka) and kafka-python's admin
client: CreateTopics (incl. validate-only and Kafka's error codes), DeleteTopics,
CreatePartitions, DescribeConfigs for topics and the broker."""

from __future__ import annotations

import time

import pytest

from support import ck_admin, ck_consume, ck_produce, create_topic, make_records, unique_topic, wait_topic_ready

TIMEOUT = 20

# Kafka error codes
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_TOPIC_EXCEPTION = 17
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_CONFIG = 40

INVALID_NAMES = ["bad name", "bad/name", "..", ".", "", "x" * 250, "ümlaut"]


def ck_create(bootstrap, topic, partitions=3, rf=1, config=None, validate_only=False):
    """Returns the KafkaError code of creating `topic` (0 on success)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic

    fs = ck_admin(bootstrap).create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=rf, config=config or {})],
        operation_timeout=TIMEOUT,
        request_timeout=TIMEOUT,
        validate_only=validate_only,
    )
    try:
        fs[topic].result(timeout=TIMEOUT)
        return 0
    except KafkaException as e:
        return e.args[0].code()


def ck_topics(bootstrap):
    return ck_admin(bootstrap).list_topics(timeout=10).topics


def wait_until(pred, what, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


# ---- confluent-kafka ------------------------------------------------------------------------------


def test_confluent_create_list_delete(shared_broker):
    b = shared_broker.bootstrap
    topic = unique_topic("admin-ck")
    assert ck_create(b, topic, 4) == 0
    wait_topic_ready(b, topic, 4)
    t = ck_topics(b)[topic]
    assert sorted(t.partitions) == [0, 1, 2, 3]
    for pm in t.partitions.values():
        assert pm.leader == 1 and pm.replicas == [1] and pm.isrs == [1]
    assert ck_create(b, topic, 4) == TOPIC_ALREADY_EXISTS

    from confluent_kafka import KafkaException

    fs = ck_admin(b).delete_topics([topic], operation_timeout=TIMEOUT, request_timeout=TIMEOUT)
    fs[topic].result(timeout=TIMEOUT)
    wait_until(lambda: topic not in ck_topics(b), "topic to disappear")
    fs = ck_admin(b).delete_topics([topic], operation_timeout=TIMEOUT, request_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as e:
        fs[topic].result(timeout=TIMEOUT)
    assert e.value.args[0].code() == UNKNOWN_TOPIC_OR_PARTITION


def test_confluent_recreated_topic_starts_empty(shared_broker):
    """A deleted and recreated topic must not show the old topic's records."""
    b = shared_broker.bootstrap
    topic = unique_topic("admin-recreate")
    create_topic(b, topic, 1)
    ck_produce(b, topic, make_records(50, 1, "old"))
    fs = ck_admin(b).delete_topics([topic], operation_timeout=TIMEOUT, request_timeout=TIMEOUT)
    fs[topic].result(timeout=TIMEOUT)
    wait_until(lambda: topic not in ck_topics(b), "topic to disappear")
    create_topic(b, topic, 1)
    new = make_records(3, 1, "new")
    ck_produce(b, topic, new)
    got = ck_consume(b, topic, [0])
    assert [(r.offset, r.value) for r in got] == [(i, r.value) for i, r in enumerate(new)]


def test_confluent_validate_only(shared_broker):
    b = shared_broker.bootstrap
    topic = unique_topic("admin-validate")
    assert ck_create(b, topic, 3, validate_only=True) == 0
    assert topic not in ck_topics(b)
    assert ck_create(b, "bad name", 3, validate_only=True) == INVALID_TOPIC_EXCEPTION


@pytest.mark.parametrize("name", INVALID_NAMES, ids=lambda n: repr(n)[:20])
def test_confluent_invalid_topic_name(shared_broker, name):
    assert ck_create(shared_broker.bootstrap, name) == INVALID_TOPIC_EXCEPTION


def test_confluent_create_errors(shared_broker):
    b = shared_broker.bootstrap
    assert ck_create(b, unique_topic("zero-parts"), partitions=0) == INVALID_PARTITIONS
    assert ck_create(b, unique_topic("rf3"), rf=3) == INVALID_REPLICATION_FACTOR
    assert ck_create(b, unique_topic("badcfg"), config={"cleanup.policy": "bogus"}) == INVALID_CONFIG
    assert ck_create(b, unique_topic("unkcfg"), config={"no.such.config": "1"}) == INVALID_CONFIG


def test_confluent_create_partitions(shared_broker):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewPartitions

    b = shared_broker.bootstrap
    topic = unique_topic("admin-parts")
    create_topic(b, topic, 2)
    fs = ck_admin(b).create_partitions([NewPartitions(topic, 5)], operation_timeout=TIMEOUT, request_timeout=TIMEOUT)
    fs[topic].result(timeout=TIMEOUT)
    wait_topic_ready(b, topic, 5)
    # the new partitions take data
    records = make_records(50, 5, "parts")
    ck_produce(b, topic, records)
    got = ck_consume(b, topic, range(5))
    assert sorted({r.partition for r in got}) == [0, 1, 2, 3, 4] and len(got) == 50
    for count in (5, 3):  # same count and fewer are both INVALID_PARTITIONS
        fs = ck_admin(b).create_partitions([NewPartitions(topic, count)], operation_timeout=TIMEOUT, request_timeout=TIMEOUT)
        with pytest.raises(KafkaException) as e:
            fs[topic].result(timeout=TIMEOUT)
        assert e.value.args[0].code() == INVALID_PARTITIONS
    fs = ck_admin(b).create_partitions(
        [NewPartitions(unique_topic("nope"), 4)], operation_timeout=TIMEOUT, request_timeout=TIMEOUT
    )
    with pytest.raises(KafkaException) as e:
        list(fs.values())[0].result(timeout=TIMEOUT)
    assert e.value.args[0].code() == UNKNOWN_TOPIC_OR_PARTITION


def test_confluent_describe_configs(shared_broker):
    from confluent_kafka.admin import ConfigResource, ConfigSource, ResourceType

    b = shared_broker.bootstrap
    topic = unique_topic("admin-configs")
    create_topic(b, topic, 1, config={"retention.ms": "3600000", "cleanup.policy": "compact"})
    admin = ck_admin(b)
    res = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)
    assert configs["retention.ms"].value == "3600000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["cleanup.policy"].value == "compact"
    # defaults are Kafka's
    assert configs["segment.bytes"].value == "1073741824"
    assert configs["max.message.bytes"].value == "1048588"
    assert configs["segment.bytes"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    broker_res = ConfigResource(ResourceType.BROKER, "1")
    configs = admin.describe_configs([broker_res], request_timeout=TIMEOUT)[broker_res].result(timeout=TIMEOUT)
    for name in ("num.partitions", "auto.create.topics.enable", "message.max.bytes", "log.segment.bytes"):
        assert name in configs, f"broker config {name} missing"
    assert configs["num.partitions"].value == "1"
    assert configs["auto.create.topics.enable"].value == "true"

    missing = ConfigResource(ResourceType.TOPIC, unique_topic("nope"))
    from confluent_kafka import KafkaException

    with pytest.raises(KafkaException) as e:
        admin.describe_configs([missing], request_timeout=TIMEOUT)[missing].result(timeout=TIMEOUT)
    assert e.value.args[0].code() == UNKNOWN_TOPIC_OR_PARTITION


def test_broker_settings_show_in_describe_configs(broker_factory):
    """`--set` values are what DescribeConfigs reports and what auto-created topics get."""
    from confluent_kafka.admin import ConfigResource, ResourceType

    b = broker_factory(settings={"num.partitions": "3", "log.retention.ms": "7200000"})
    admin = ck_admin(b.bootstrap)
    res = ConfigResource(ResourceType.BROKER, "1")
    configs = admin.describe_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)
    assert configs["num.partitions"].value == "3"
    assert configs["log.retention.ms"].value == "7200000"


# ---- kafka-python -----------------------------------------------------------------------------------


@pytest.fixture
def kp_admin(shared_broker):
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=shared_broker.bootstrap, request_timeout_ms=TIMEOUT * 1000)
    yield admin
    admin.close()


def test_kafka_python_create_delete(shared_broker, kp_admin):
    from kafka.errors import InvalidTopicError, TopicAlreadyExistsError, UnknownTopicOrPartitionError

    topic = unique_topic("admin-kp")
    kp_admin.create_topics({topic: {"num_partitions": 3, "replication_factor": 1}}, timeout_ms=TIMEOUT * 1000)
    wait_topic_ready(shared_broker.bootstrap, topic, 3)
    assert topic in kp_admin.list_topics()
    with pytest.raises(TopicAlreadyExistsError):
        kp_admin.create_topics({topic: {"num_partitions": 3, "replication_factor": 1}})
    with pytest.raises(InvalidTopicError):
        kp_admin.create_topics({"no spaces allowed": {"num_partitions": 1, "replication_factor": 1}})
    validate = unique_topic("admin-kp-validate")
    kp_admin.create_topics({validate: {"num_partitions": 1, "replication_factor": 1}}, validate_only=True)
    assert validate not in kp_admin.list_topics()
    kp_admin.delete_topics([topic], timeout_ms=TIMEOUT * 1000)
    wait_until(lambda: topic not in kp_admin.list_topics(), "topic to disappear")
    with pytest.raises(UnknownTopicOrPartitionError):
        kp_admin.delete_topics([topic])


def test_kafka_python_create_partitions_and_configs(shared_broker, kp_admin):
    from kafka.admin import ConfigResource, ConfigResourceType
    from kafka.errors import InvalidPartitionsError

    topic = unique_topic("admin-kp-parts")
    kp_admin.create_topics(
        {topic: {"num_partitions": 1, "replication_factor": 1, "configs": {"retention.bytes": "123456789"}}}
    )
    wait_topic_ready(shared_broker.bootstrap, topic, 1)
    kp_admin.create_partitions({topic: 4})
    wait_topic_ready(shared_broker.bootstrap, topic, 4)
    with pytest.raises(InvalidPartitionsError):
        kp_admin.create_partitions({topic: 2})
    desc = kp_admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    configs = desc["topic"][topic]
    assert configs["retention.bytes"]["value"] == "123456789"
    assert configs["cleanup.policy"]["value"] == "delete"
    desc = kp_admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "1")], config_filter="all")
    broker_configs = desc["broker"]["1"]
    assert broker_configs["message.max.bytes"]["value"] == "1048588"


def test_describe_cluster(shared_broker, kp_admin):
    described = ck_admin(shared_broker.bootstrap).describe_cluster(request_timeout=20).result(timeout=20)
    assert described.cluster_id
    assert [n.id for n in described.nodes] == [1]
    assert described.controller.id == 1
    cluster = kp_admin.describe_cluster()
    assert cluster["cluster_id"] == described.cluster_id
    assert cluster["controller_id"] == 1
    assert [b["broker_id"] for b in cluster["brokers"]] == [1]
