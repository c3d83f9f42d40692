//! End to end: the `caudal` client subcommands against a real `caudal server`.

mod support;

use std::collections::BTreeSet;

use caudal_client::partitioner::partition_for_key;
use support::{Broker, ok, run, stderr, stdout};

#[test]
fn topic_lifecycle() {
    let broker = Broker::start();
    let created = ok(broker.caudal(&[
        "topic",
        "create",
        "orders",
        "--partitions",
        "3",
        "--config",
        "retention.ms=86400000",
    ]));
    assert!(stdout(&created).contains("created topic \"orders\" with 3 partition(s)"));

    let again = broker.caudal(&["topic", "create", "orders"]);
    assert!(!again.status.success());
    let message = stderr(&again);
    assert!(
        message.starts_with("error: TOPIC_ALREADY_EXISTS"),
        "{message}"
    );
    assert_eq!(message.trim_end().lines().count(), 1, "{message}");
    ok(broker.caudal(&["topic", "create", "orders", "--if-not-exists"]));

    let validated = ok(broker.caudal(&[
        "topic",
        "create",
        "dry-run",
        "--partitions",
        "2",
        "--validate-only",
    ]));
    assert!(stdout(&validated).contains("validated"));

    let list = stdout(&ok(broker.caudal(&["topic", "list"])));
    assert!(
        list.lines()
            .any(|line| line.split_whitespace().collect::<Vec<_>>() == ["orders", "3", "1"]),
        "{list}"
    );
    assert!(
        !list.contains("dry-run"),
        "--validate-only created the topic: {list}"
    );

    let describe = stdout(&ok(broker.caudal(&["topic", "describe", "orders"])));
    assert!(describe.contains("Partitions:         3"), "{describe}");
    assert!(describe.contains("retention.ms  86400000"), "{describe}");
    for partition in 0..3 {
        assert!(
            describe
                .lines()
                .any(|line| line.starts_with(&format!("{partition}  "))),
            "{describe}"
        );
    }

    ok(broker.caudal(&["topic", "add-partitions", "orders", "--partitions", "5"]));
    let describe = stdout(&ok(broker.caudal(&["topic", "describe", "orders"])));
    assert!(describe.contains("Partitions:         5"), "{describe}");
    let shrink = broker.caudal(&["topic", "add-partitions", "orders", "--partitions", "2"]);
    assert!(!shrink.status.success());
    assert!(
        stderr(&shrink).contains("INVALID_PARTITIONS"),
        "{}",
        stderr(&shrink)
    );

    ok(broker.caudal(&["topic", "delete", "orders"]));
    let gone = broker.caudal(&["topic", "describe", "orders"]);
    assert!(!gone.status.success());
    assert!(
        stderr(&gone).starts_with("error: UNKNOWN_TOPIC_OR_PARTITION"),
        "{}",
        stderr(&gone)
    );
    ok(broker.caudal(&["topic", "delete", "orders", "--if-exists"]));
}

#[test]
fn produce_and_consume_round_trip() {
    let broker = Broker::start();
    ok(broker.caudal(&["topic", "create", "events", "--partitions", "4"]));
    let mut input = String::new();
    for index in 0..200 {
        input.push_str(&format!("user-{}\tpayload {index}\n", index % 17));
    }
    let produced = ok(broker.caudal_with_input(
        &[
            "produce",
            "events",
            "--key-separator",
            "\t",
            "--header",
            "source=test",
            "--header",
            "empty=",
            "--linger-ms",
            "20",
        ],
        Some(input.as_bytes()),
    ));
    assert!(
        stderr(&produced).contains("produced 200 record(s)"),
        "{}",
        stderr(&produced)
    );

    let consumed = ok(broker.caudal(&[
        "consume",
        "events",
        "--from-beginning",
        "--exit-at-end",
        "--format",
        "%t %p %o %k %v|%h|%K",
    ]));
    let lines: Vec<String> = stdout(&consumed).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 200, "{}", stderr(&consumed));
    let mut values = BTreeSet::new();
    let mut offsets_per_partition = std::collections::BTreeMap::<i32, Vec<i64>>::new();
    for line in &lines {
        let (fields, rest) = line.split_once('|').unwrap();
        let parts: Vec<&str> = fields.splitn(5, ' ').collect();
        assert_eq!(parts[0], "events");
        let partition: i32 = parts[1].parse().unwrap();
        let offset: i64 = parts[2].parse().unwrap();
        let key = parts[3];
        // Kafka's default partitioner, as Java and librdkafka clients compute it.
        assert_eq!(partition, partition_for_key(key.as_bytes(), 4), "{line}");
        assert_eq!(rest, format!("source=test,empty=|{}", key.len()));
        offsets_per_partition
            .entry(partition)
            .or_default()
            .push(offset);
        values.insert(parts[4].to_owned());
    }
    assert_eq!(values.len(), 200);
    for offsets in offsets_per_partition.values() {
        assert_eq!(offsets, &(0..offsets.len() as i64).collect::<Vec<_>>());
    }

    // One partition, from an offset, a bounded number of records.
    let some = ok(broker.caudal(&[
        "consume",
        "events",
        "--partition",
        "1",
        "--offset",
        "2",
        "--max-messages",
        "3",
        "--format",
        "%o",
    ]));
    assert_eq!(stdout(&some), "2\n3\n4\n");

    // The last record of each partition, then exit when idle.
    let tail = ok(broker.caudal(&[
        "consume",
        "events",
        "--offset",
        "-1",
        "--timeout-ms",
        "1500",
        "--print-key",
    ]));
    assert_eq!(stdout(&tail).lines().count(), 4, "{}", stdout(&tail));
    assert!(stdout(&tail).lines().all(|line| line.starts_with("user-")));

    // A value with an explicit partition and no key.
    ok(broker.caudal_with_input(
        &["produce", "events", "--partition", "3", "--acks", "1"],
        Some(b"pinned\r\n"),
    ));
    let pinned = ok(broker.caudal(&[
        "consume",
        "events",
        "--partition",
        "3",
        "--offset",
        "-1",
        "--exit-at-end",
        "--format",
        "%K:%v",
    ]));
    assert_eq!(stdout(&pinned), "-1:pinned\n");
}

#[test]
fn every_compression_round_trips() {
    let broker = Broker::start();
    ok(broker.caudal(&["topic", "create", "packed", "--partitions", "1"]));
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    for codec in codecs {
        let input: String = (0..50).map(|index| format!("{codec}-{index}\n")).collect();
        ok(broker.caudal_with_input(
            &["produce", "packed", "--compression", codec, "--idempotent"],
            Some(input.as_bytes()),
        ));
    }
    let consumed = ok(broker.caudal(&["consume", "packed", "--from-beginning", "--exit-at-end"]));
    let lines: Vec<String> = stdout(&consumed).lines().map(str::to_owned).collect();
    let expected: Vec<String> = codecs
        .iter()
        .flat_map(|codec| (0..50).map(move |index| format!("{codec}-{index}")))
        .collect();
    assert_eq!(lines, expected);
}

#[test]
fn errors_are_one_line_with_the_kafka_name() {
    let broker = Broker::start_with(&["auto.create.topics.enable=false"]);
    let missing = broker.caudal(&["consume", "nowhere", "--from-beginning"]);
    assert_eq!(missing.status.code(), Some(1));
    let message = stderr(&missing);
    assert!(
        message.starts_with("error: UNKNOWN_TOPIC_OR_PARTITION"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");

    let produce = broker.caudal_with_input(&["produce", "nowhere"], Some(b"x\n"));
    assert_eq!(produce.status.code(), Some(1));
    assert!(
        stderr(&produce).contains("UNKNOWN_TOPIC_OR_PARTITION"),
        "{}",
        stderr(&produce)
    );

    ok(broker.caudal(&["topic", "create", "keyed", "--partitions", "1"]));
    let no_separator = broker.caudal_with_input(
        &["produce", "keyed", "--key-separator", ":"],
        Some(b"a:1\nbroken\n"),
    );
    assert_eq!(no_separator.status.code(), Some(1));
    assert!(
        stderr(&no_separator).contains("line 2"),
        "{}",
        stderr(&no_separator)
    );

    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let unreachable = run(&["topic", "list", "-b", &dead], None);
    assert_eq!(unreachable.status.code(), Some(1));
    let message = stderr(&unreachable);
    assert!(
        message.starts_with("error: could not connect to any bootstrap server"),
        "{message}"
    );
    assert!(message.contains(&dead));
}

#[test]
fn bench_reports_throughput_latency_and_broker_cpu() {
    let broker = Broker::start();
    let pid = broker.pid().to_string();
    let produce = ok(broker.caudal(&[
        "bench",
        "produce",
        "--topic",
        "bench",
        "--records",
        "20000",
        "--record-size",
        "100",
        "--partitions",
        "2",
        "--acks",
        "1",
        "--inflight",
        "8",
        "--broker-pid",
        &pid,
        "--json",
    ]));
    let report: serde_json::Value = serde_json::from_str(stdout(&produce).trim()).unwrap();
    assert_eq!(report["records"], 20000);
    assert_eq!(report["partitions"], 2);
    assert!(report["records_per_second"].as_f64().unwrap() > 0.0);
    assert!(
        report["latency_ms"]["p99"].as_f64().unwrap()
            >= report["latency_ms"]["p50"].as_f64().unwrap()
    );
    assert!(report["broker_cpu_seconds"].as_f64().unwrap() >= 0.0);

    let acks0 = ok(broker.caudal(&[
        "bench",
        "produce",
        "--topic",
        "bench",
        "--records",
        "5000",
        "--acks",
        "0",
        "--json",
    ]));
    let report: serde_json::Value = serde_json::from_str(stdout(&acks0).trim()).unwrap();
    assert_eq!(report["records"], 5000);
    assert!(report["latency_ms"].is_null());

    let describe = stdout(&ok(broker.caudal(&["topic", "describe", "bench"])));
    let high_watermarks: i64 = describe
        .lines()
        .filter(|line| line.starts_with(|c: char| c.is_ascii_digit()))
        .map(|line| {
            line.split_whitespace()
                .last()
                .unwrap()
                .parse::<i64>()
                .unwrap()
        })
        .sum();
    assert_eq!(high_watermarks, 25_000, "{describe}");

    let consume = ok(broker.caudal(&[
        "bench",
        "consume",
        "--topic",
        "bench",
        "--records",
        "25000",
        "--json",
    ]));
    let report: serde_json::Value = serde_json::from_str(stdout(&consume).trim()).unwrap();
    assert_eq!(report["records"], 25000);
    assert_eq!(report["partitions"], 2);

    let human = ok(broker.caudal(&[
        "bench",
        "produce",
        "--topic",
        "bench",
        "--records",
        "1000",
        "--acks",
        "all",
    ]));
    let text = stdout(&human);
    assert!(text.contains("1000 records sent"), "{text}");
    assert!(text.contains("latency ms: p50"), "{text}");
}
