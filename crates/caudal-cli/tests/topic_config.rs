//! End to end: `caudal topic alter-config` / `describe --configs`, `caudal broker alter-config` /
//! `describe-config` and `caudal topic trim` against a real `caudal server`. Every change is read
//! back with a describe (value and source), and what a command must not change is checked too.

mod support;

use support::{Broker, ok, stderr, stdout};

/// The cells of the config row named `name` (name, value, source, then with `--configs` the
/// read-only flag and the synonyms), if the table has one.
fn config_row(text: &str, name: &str) -> Option<Vec<String>> {
    text.lines().find_map(|line| {
        let cells: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        (cells.len() >= 3 && cells[0] == name).then_some(cells)
    })
}

/// Asserts that the table has a row for `name` with `value` from `source`.
fn assert_config(text: &str, name: &str, value: &str, source: &str) {
    let row = config_row(text, name).unwrap_or_else(|| panic!("no row for {name}:\n{text}"));
    assert_eq!(
        (row[1].as_str(), row[2].as_str()),
        (value, source),
        "{name}:\n{text}"
    );
}

/// Runs a command that must fail with exit code 1 and returns its stderr.
fn fails(output: std::process::Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(1),
        "expected exit code 1; stdout: {}; stderr: {}",
        stdout(&output),
        stderr(&output)
    );
    stderr(&output)
}

fn topic_configs(broker: &Broker, topic: &str, all: bool) -> String {
    let mut args = vec!["topic", "describe", topic, "--configs"];
    if all {
        args.push("--all");
    }
    stdout(&ok(broker.caudal(&args)))
}

#[test]
fn topic_configs_set_append_subtract_delete_and_read_back() {
    let broker = Broker::start();
    ok(broker.caudal(&["topic", "create", "orders", "--partitions", "2"]));
    let before = topic_configs(&broker, "orders", false);
    assert!(
        before.contains("no configs set on topic \"orders\""),
        "{before}"
    );

    let updated = ok(broker.caudal(&[
        "topic",
        "alter-config",
        "orders",
        "--set",
        "retention.ms=3600000",
        "--append",
        "cleanup.policy=compact",
    ]));
    assert!(
        stdout(&updated).contains("updated configs of topic \"orders\""),
        "{}",
        stdout(&updated)
    );
    let configs = topic_configs(&broker, "orders", false);
    assert_config(&configs, "retention.ms", "3600000", "DYNAMIC_TOPIC_CONFIG");
    // APPEND starts from the default ("delete") when the topic has no value of its own.
    assert_config(
        &configs,
        "cleanup.policy",
        "delete,compact",
        "DYNAMIC_TOPIC_CONFIG",
    );
    assert_eq!(config_row(&configs, "retention.ms").unwrap()[3], "no");
    assert!(
        configs.contains(
            "DYNAMIC_TOPIC_CONFIG:retention.ms=3600000, DEFAULT_CONFIG:log.retention.ms=604800000"
        ),
        "synonym chain: {configs}"
    );
    // Only the topic's own values without --all.
    assert!(config_row(&configs, "segment.bytes").is_none(), "{configs}");

    ok(broker.caudal(&[
        "topic",
        "alter-config",
        "orders",
        "--subtract",
        "cleanup.policy=delete",
    ]));
    assert_config(
        &topic_configs(&broker, "orders", false),
        "cleanup.policy",
        "compact",
        "DYNAMIC_TOPIC_CONFIG",
    );

    // Deleting falls back to the default; kafka-configs.sh's comma list is accepted.
    ok(broker.caudal(&[
        "topic",
        "alter-config",
        "orders",
        "--delete-config",
        "retention.ms,cleanup.policy",
    ]));
    let configs = topic_configs(&broker, "orders", false);
    assert!(config_row(&configs, "retention.ms").is_none(), "{configs}");
    assert!(
        config_row(&configs, "cleanup.policy").is_none(),
        "{configs}"
    );
    let all = topic_configs(&broker, "orders", true);
    assert_config(&all, "retention.ms", "604800000", "DEFAULT_CONFIG");
    assert_config(&all, "cleanup.policy", "delete", "DEFAULT_CONFIG");
    assert_config(&all, "segment.bytes", "1073741824", "DEFAULT_CONFIG");

    // kafka-configs.sh's --add-config syntax: brackets group a list value.
    ok(broker.caudal(&[
        "topic",
        "alter-config",
        "orders",
        "--add-config",
        "segment.ms=60000, cleanup.policy=[compact,delete]",
    ]));
    let configs = topic_configs(&broker, "orders", false);
    assert_config(&configs, "segment.ms", "60000", "DYNAMIC_TOPIC_CONFIG");
    assert_config(
        &configs,
        "cleanup.policy",
        "compact,delete",
        "DYNAMIC_TOPIC_CONFIG",
    );
    // The plain describe lists the same overrides under the partitions.
    let describe = stdout(&ok(broker.caudal(&["topic", "describe", "orders"])));
    assert!(describe.contains("PARTITION"), "{describe}");
    assert_config(&describe, "segment.ms", "60000", "DYNAMIC_TOPIC_CONFIG");

    // --validate-only checks and changes nothing, for sets and deletes alike.
    let validated = ok(broker.caudal(&[
        "topic",
        "alter-config",
        "orders",
        "--set",
        "retention.ms=1000",
        "--delete",
        "segment.ms",
        "--validate-only",
    ]));
    assert!(
        stdout(&validated).contains("validated config changes of topic \"orders\""),
        "{}",
        stdout(&validated)
    );
    let after = topic_configs(&broker, "orders", false);
    assert_eq!(after, configs, "--validate-only changed something");
    // ... but still reports what would fail.
    let invalid = fails(broker.caudal(&[
        "topic",
        "alter-config",
        "orders",
        "--set",
        "retention.ms=soon",
        "--validate-only",
    ]));
    assert!(invalid.contains("INVALID_CONFIG"), "{invalid}");
}

#[test]
fn config_errors_carry_the_brokers_message() {
    let broker = Broker::start();
    ok(broker.caudal(&["topic", "create", "orders"]));
    let alter = |args: &[&str]| {
        let mut full = vec!["topic", "alter-config", "orders"];
        full.extend_from_slice(args);
        fails(broker.caudal(&full))
    };

    let unknown = alter(&["--set", "no.such.config=1"]);
    assert!(
        unknown.contains("INVALID_CONFIG (40)") && unknown.contains("no.such.config"),
        "{unknown}"
    );
    assert_eq!(unknown.lines().count(), 1, "one line: {unknown}");
    let bad_value = alter(&["--set", "retention.ms=soon"]);
    assert!(
        bad_value.contains("INVALID_CONFIG (40)") && bad_value.contains("soon"),
        "{bad_value}"
    );
    let bad_choice = alter(&["--set", "cleanup.policy=shred"]);
    assert!(bad_choice.contains("INVALID_CONFIG (40)"), "{bad_choice}");
    let not_a_list = alter(&["--append", "retention.ms=5"]);
    assert!(
        not_a_list.contains("INVALID_CONFIG (40)") && not_a_list.contains("non-list"),
        "{not_a_list}"
    );
    // As kafka-configs.sh: deleting a config the topic does not set is refused up front.
    let unset = alter(&["--delete", "segment.ms"]);
    assert!(unset.contains("Invalid config(s): segment.ms"), "{unset}");
    let twice = alter(&["--set", "retention.ms=1", "--delete", "retention.ms"]);
    assert!(twice.contains("Invalid config(s)"), "{twice}");
    ok(broker.caudal(&["topic", "alter-config", "orders", "--set", "retention.ms=1"]));
    let twice = alter(&["--set", "retention.ms=2", "--delete", "retention.ms"]);
    assert!(twice.contains("INVALID_REQUEST (42)"), "{twice}");
    // None of the refused changes touched the topic.
    let configs = topic_configs(&broker, "orders", false);
    assert_config(&configs, "retention.ms", "1", "DYNAMIC_TOPIC_CONFIG");
    assert_eq!(
        configs.lines().count(),
        2,
        "one header and one row: {configs}"
    );

    let missing = fails(broker.caudal(&[
        "topic",
        "alter-config",
        "missing",
        "--set",
        "retention.ms=1",
    ]));
    assert!(missing.contains("UNKNOWN_TOPIC_OR_PARTITION"), "{missing}");
    let missing = fails(broker.caudal(&["topic", "describe", "missing", "--configs"]));
    assert!(missing.contains("UNKNOWN_TOPIC_OR_PARTITION"), "{missing}");

    for target in [&["--default"][..], &["--broker", "1"][..]] {
        let mut args = vec!["broker", "alter-config"];
        args.extend_from_slice(target);
        args.extend_from_slice(&["--set", "num.partitions=5"]);
        let fixed = fails(broker.caudal(&args));
        assert!(
            fixed.contains("INVALID_REQUEST (42)")
                && fixed.contains("Cannot update these configs dynamically")
                && fixed.contains("num.partitions"),
            "{fixed}"
        );
    }
    let unknown = fails(broker.caudal(&[
        "broker",
        "alter-config",
        "--default",
        "--set",
        "no.such.config=1",
    ]));
    assert!(unknown.contains("INVALID_CONFIG (40)"), "{unknown}");
    let elsewhere = fails(broker.caudal(&["broker", "describe-config", "--broker", "7"]));
    assert!(elsewhere.contains("node 7"), "{elsewhere}");
    let all = stdout(&ok(broker.caudal(&[
        "broker",
        "describe-config",
        "--broker",
        "1",
        "--all",
    ])));
    assert_config(&all, "num.partitions", "1", "DEFAULT_CONFIG");
    assert_eq!(config_row(&all, "num.partitions").unwrap()[3], "yes");

    // Command lines without a change or a target do not parse (exit code 2).
    let nothing = broker.caudal(&["topic", "alter-config", "orders"]);
    assert_eq!(nothing.status.code(), Some(2), "{}", stderr(&nothing));
    let nowhere = broker.caudal(&["broker", "alter-config", "--set", "log.retention.ms=1"]);
    assert_eq!(nowhere.status.code(), Some(2), "{}", stderr(&nowhere));
}

#[test]
fn broker_values_reach_topics_through_the_synonym_chain() {
    // A startup setting first: the topic reports it as STATIC_BROKER_CONFIG.
    let broker = Broker::start_with(&["log.retention.ms=9000"]);
    ok(broker.caudal(&["topic", "create", "orders"]));
    assert_config(
        &topic_configs(&broker, "orders", true),
        "retention.ms",
        "9000",
        "STATIC_BROKER_CONFIG",
    );

    // The default of every broker wins over the startup setting.
    let updated = ok(broker.caudal(&[
        "broker",
        "alter-config",
        "--default",
        "--set",
        "log.retention.ms=5000",
    ]));
    assert!(
        stdout(&updated).contains("updated configs of the cluster-wide broker default"),
        "{}",
        stdout(&updated)
    );
    assert_config(
        &topic_configs(&broker, "orders", true),
        "retention.ms",
        "5000",
        "DYNAMIC_DEFAULT_BROKER_CONFIG",
    );
    let default = stdout(&ok(broker.caudal(&[
        "broker",
        "describe-config",
        "--default",
    ])));
    assert_config(
        &default,
        "log.retention.ms",
        "5000",
        "DYNAMIC_DEFAULT_BROKER_CONFIG",
    );
    let own = stdout(&ok(broker.caudal(&[
        "broker",
        "describe-config",
        "--broker",
        "1",
    ])));
    assert!(own.contains("no configs set on broker 1"), "{own}");

    // --validate-only on a broker config changes nothing.
    ok(broker.caudal(&[
        "broker",
        "alter-config",
        "--broker",
        "1",
        "--set",
        "log.retention.ms=1",
        "--validate-only",
    ]));
    assert_config(
        &topic_configs(&broker, "orders", true),
        "retention.ms",
        "5000",
        "DYNAMIC_DEFAULT_BROKER_CONFIG",
    );

    // One broker's own value wins over the default; the topic's own over both.
    ok(broker.caudal(&[
        "broker",
        "alter-config",
        "--broker",
        "1",
        "--set",
        "log.retention.ms=7000",
    ]));
    let configs = topic_configs(&broker, "orders", true);
    assert_config(&configs, "retention.ms", "7000", "DYNAMIC_BROKER_CONFIG");
    assert!(
        configs.contains(
            "DYNAMIC_BROKER_CONFIG:log.retention.ms=7000, \
             DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=5000, \
             STATIC_BROKER_CONFIG:log.retention.ms=9000"
        ),
        "synonym chain: {configs}"
    );
    ok(broker.caudal(&[
        "topic",
        "alter-config",
        "orders",
        "--set",
        "retention.ms=1000",
    ]));
    assert_config(
        &topic_configs(&broker, "orders", true),
        "retention.ms",
        "1000",
        "DYNAMIC_TOPIC_CONFIG",
    );

    // Without a target, every broker and then the default, each with its own values; the
    // default's value is reported even where broker 1's shadows it.
    let every = stdout(&ok(broker.caudal(&["broker", "describe-config"])));
    let (first, second) = every
        .split_once("Configs of the cluster-wide broker default:")
        .unwrap_or_else(|| panic!("{every}"));
    assert!(first.starts_with("Configs of broker 1:"), "{every}");
    assert_config(first, "log.retention.ms", "7000", "DYNAMIC_BROKER_CONFIG");
    assert_config(
        second,
        "log.retention.ms",
        "5000",
        "DYNAMIC_DEFAULT_BROKER_CONFIG",
    );

    // Deleting peels the chain back, level by level.
    ok(broker.caudal(&[
        "topic",
        "alter-config",
        "orders",
        "--delete",
        "retention.ms",
    ]));
    ok(broker.caudal(&[
        "broker",
        "alter-config",
        "--broker",
        "1",
        "--delete",
        "log.retention.ms",
    ]));
    assert_config(
        &topic_configs(&broker, "orders", true),
        "retention.ms",
        "5000",
        "DYNAMIC_DEFAULT_BROKER_CONFIG",
    );
    let unset = fails(broker.caudal(&[
        "broker",
        "alter-config",
        "--broker",
        "1",
        "--delete",
        "log.retention.ms",
    ]));
    assert!(
        unset.contains("Invalid config(s): log.retention.ms"),
        "{unset}"
    );
    ok(broker.caudal(&[
        "broker",
        "alter-config",
        "--default",
        "--delete",
        "log.retention.ms",
    ]));
    assert_config(
        &topic_configs(&broker, "orders", true),
        "retention.ms",
        "9000",
        "STATIC_BROKER_CONFIG",
    );
}

/// The partition table of `topic describe`: (partition, log start offset, high watermark).
fn partition_offsets(broker: &Broker, topic: &str) -> Vec<(String, String, String)> {
    let describe = stdout(&ok(broker.caudal(&["topic", "describe", topic])));
    describe
        .lines()
        .skip_while(|line| !line.starts_with("PARTITION"))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            (
                cells[0].to_owned(),
                cells[5].to_owned(),
                cells[6].to_owned(),
            )
        })
        .collect()
}

fn offsets(rows: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|&(p, start, end)| (p.to_owned(), start.to_owned(), end.to_owned()))
        .collect()
}

#[test]
fn trim_deletes_records_below_an_offset() {
    let broker = Broker::start();
    ok(broker.caudal(&["topic", "create", "orders", "--partitions", "3"]));
    let lines: String = (0..10).map(|i| format!("record-{i}\n")).collect();
    for partition in ["0", "1", "2"] {
        ok(broker.caudal_with_input(
            &["produce", "orders", "--partition", partition],
            Some(lines.as_bytes()),
        ));
    }

    let trimmed = stdout(&ok(broker.caudal(&[
        "topic",
        "trim",
        "orders",
        "--before",
        "4",
        "--partition",
        "0",
        "--partition",
        "2",
    ])));
    assert!(
        trimmed
            .lines()
            .any(|line| line.split_whitespace().collect::<Vec<_>>() == ["0", "4"]),
        "{trimmed}"
    );
    assert!(
        trimmed
            .lines()
            .any(|line| line.split_whitespace().collect::<Vec<_>>() == ["2", "4"]),
        "{trimmed}"
    );
    assert!(!trimmed.contains("\n1 "), "{trimmed}");
    assert_eq!(
        partition_offsets(&broker, "orders"),
        offsets(&[("0", "4", "10"), ("1", "0", "10"), ("2", "4", "10")])
    );
    // Consumers start at the new log start offset.
    let consumed = stdout(&ok(broker.caudal(&[
        "consume",
        "orders",
        "--partition",
        "0",
        "--from-beginning",
        "--exit-at-end",
    ])));
    let expected: Vec<String> = (4..10).map(|i| format!("record-{i}")).collect();
    assert_eq!(consumed.lines().collect::<Vec<_>>(), expected);

    // Trimming below the current log start offset moves nothing back.
    ok(broker.caudal(&[
        "topic",
        "trim",
        "orders",
        "--before",
        "2",
        "--partition",
        "0",
    ]));
    assert_eq!(partition_offsets(&broker, "orders")[0].1, "4");

    // Beyond the high watermark: OFFSET_OUT_OF_RANGE for that partition, exit code 1.
    let beyond = broker.caudal(&["topic", "trim", "orders", "--before", "11"]);
    let error = fails(beyond);
    assert!(error.contains("3 of 3 partition(s)"), "{error}");
    assert_eq!(
        partition_offsets(&broker, "orders"),
        offsets(&[("0", "4", "10"), ("1", "0", "10"), ("2", "4", "10")])
    );

    // `latest` is the high watermark: every partition empties.
    ok(broker.caudal(&["topic", "trim", "orders", "--before", "latest"]));
    assert_eq!(
        partition_offsets(&broker, "orders"),
        offsets(&[("0", "10", "10"), ("1", "10", "10"), ("2", "10", "10")])
    );

    let no_partition = fails(broker.caudal(&[
        "topic",
        "trim",
        "orders",
        "--before",
        "1",
        "--partition",
        "7",
    ]));
    assert!(no_partition.contains("no partition 7"), "{no_partition}");
    let missing = fails(broker.caudal(&["topic", "trim", "missing", "--before", "1"]));
    assert!(missing.contains("UNKNOWN_TOPIC_OR_PARTITION"), "{missing}");
    let bad = broker.caudal(&["topic", "trim", "orders", "--before", "soon"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}
