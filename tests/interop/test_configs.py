"""Changing topic and broker configs while the broker runs (AlterConfigs, IncrementalAlterConfigs):
the change is visible in DescribeConfigs with its source, takes effect without a restart, and
survives one."""

from __future__ import annotations

import signal

import pytest

from support import ck_admin, create_topic, unique_topic

DYNAMIC_TOPIC_CONFIG = 1
DYNAMIC_BROKER_CONFIG = 2
DEFAULT_CONFIG = 5


def describe_topic(admin, topic):
    from confluent_kafka.admin import ConfigResource, ResourceType

    res = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([res], request_timeout=20)[res].result(timeout=20)


def incremental(admin, resource, *ops, validate_only=False):
    from confluent_kafka.admin import ConfigResource

    res = ConfigResource(resource[0], resource[1], incremental_configs=list(ops))
    return admin.incremental_alter_configs([res], validate_only=validate_only)[res].result(timeout=20)


def test_incremental_alter_topic_configs_take_effect_and_survive_a_restart(broker_factory):
    from confluent_kafka import KafkaException, Producer
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ResourceType

    b = broker_factory()
    admin = ck_admin(b.bootstrap)
    topic = unique_topic("cfg")
    create_topic(b.bootstrap, topic, 1)
    T = (ResourceType.TOPIC, topic)

    incremental(admin, T, ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET))
    incremental(admin, T, ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND))
    configs = describe_topic(admin, topic)
    assert configs["retention.ms"].value == "3600000"
    assert configs["retention.ms"].source == DYNAMIC_TOPIC_CONFIG
    assert configs["cleanup.policy"].value == "delete,compact"
    incremental(admin, T, ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SUBTRACT))
    assert describe_topic(admin, topic)["cleanup.policy"].value == "delete"

    # validate_only changes nothing
    incremental(
        admin, T, ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET), validate_only=True
    )
    assert describe_topic(admin, topic)["retention.ms"].value == "3600000"

    # max.message.bytes takes effect at once
    producer = Producer({"bootstrap.servers": b.bootstrap, "compression.type": "none", "message.max.bytes": 1_000_000})
    errors = []

    def send(size):
        errors.clear()
        producer.produce(topic, value=b"x" * size, on_delivery=lambda err, msg: errors.append(err))
        producer.flush(20)
        return errors[0]

    assert send(5000) is None
    incremental(admin, T, ConfigEntry("max.message.bytes", "2000", incremental_operation=AlterConfigOpType.SET))
    err = send(5000)
    assert err is not None and err.name() == "MSG_SIZE_TOO_LARGE", err

    # errors: unknown config, bad value, bad operation for a non-list config
    for entry in [
        ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", "5", incremental_operation=AlterConfigOpType.APPEND),
    ]:
        with pytest.raises(KafkaException) as info:
            incremental(admin, T, entry)
        assert info.value.args[0].name() == "INVALID_CONFIG", info.value

    # survives a restart
    assert b.stop(signal.SIGTERM) == 0
    b.start()
    admin = ck_admin(b.bootstrap)
    configs = describe_topic(admin, topic)
    assert configs["retention.ms"].value == "3600000"
    assert configs["max.message.bytes"].value == "2000"
    assert send(5000).name() == "MSG_SIZE_TOO_LARGE"

    # DELETE falls back to the default
    incremental(admin, T, ConfigEntry("max.message.bytes", None, incremental_operation=AlterConfigOpType.DELETE))
    configs = describe_topic(admin, topic)
    assert configs["max.message.bytes"].source == DEFAULT_CONFIG
    assert send(5000) is None


def test_dynamic_broker_configs_reach_topics_and_static_configs_are_refused(broker_factory):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ResourceType

    b = broker_factory()
    admin = ck_admin(b.bootstrap)
    topic = unique_topic("cfg-broker")
    create_topic(b.bootstrap, topic, 1)
    incremental(
        admin,
        (ResourceType.BROKER, "1"),
        ConfigEntry("log.retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
    )
    retention = describe_topic(admin, topic)["retention.ms"]
    assert retention.value == "7200000"
    assert retention.source == DYNAMIC_BROKER_CONFIG

    with pytest.raises(KafkaException) as info:
        incremental(
            admin,
            (ResourceType.BROKER, "1"),
            ConfigEntry("log.dirs", "/elsewhere", incremental_operation=AlterConfigOpType.SET),
        )
    assert info.value.args[0].name() == "INVALID_REQUEST"
    assert "Cannot update these configs dynamically" in info.value.args[0].str()


def test_legacy_alter_configs_with_kafka_python(broker_factory):
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    b = broker_factory()
    topic = unique_topic("cfg-legacy")
    create_topic(b.bootstrap, topic, 1)
    admin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    try:
        response = admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "600000", "segment.ms": "60000"})],
            incremental=False,
        )
        assert response == {"topic": {topic: "OK"}}, response
        # a second AlterConfigs replaces the whole set; kafka-python re-sends the other dynamic
        # keys it reads back first, so retention.ms stays
        admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs={"segment.ms": "120000"})],
            incremental=False,
        )
    finally:
        admin.close()
    configs = describe_topic(ck_admin(b.bootstrap), topic)
    assert configs["segment.ms"].value == "120000"
    assert configs["segment.ms"].source == DYNAMIC_TOPIC_CONFIG
    assert configs["retention.ms"].value == "600000"
    assert configs["retention.ms"].source == DYNAMIC_TOPIC_CONFIG


def test_describe_log_dirs_reports_partition_sizes(broker_factory):
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient

    b = broker_factory()
    topic = unique_topic("sizes")
    create_topic(b.bootstrap, topic, 2)
    producer = KafkaProducer(bootstrap_servers=b.bootstrap)
    for i in range(50):
        producer.send(topic, b"x" * 200, partition=0)
    producer.flush()
    producer.close()
    admin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    try:
        (described,) = admin.describe_log_dirs()
    finally:
        admin.close()
    (log_dir,) = described["log_dirs"]
    assert log_dir["error_code"] == 0
    assert log_dir["total_bytes"] >= log_dir["usable_bytes"] > 0
    sizes = {
        p["partition_index"]: p["partition_size"]
        for t in log_dir["topics"]
        if t["name"] == topic
        for p in t["partitions"]
    }
    assert sizes[1] == 0, sizes
    assert sizes[0] > 50 * 200, sizes
