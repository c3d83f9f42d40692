"""The `caudal` command-line tools against a running broker: topic admin, console producer and
consumer (keys, headers, formats, offsets), cross-checked with confluent-kafka, and error
handling (non-zero exit, one line on stderr)."""

from __future__ import annotations

import subprocess

import pytest

from support import Record, ck_consume, ck_produce, create_topic, unique_topic

TIMEOUT = 60


def caudal(bin_, *args, input_=None, timeout=TIMEOUT):
    return subprocess.run(
        [str(bin_), *map(str, args)],
        input=input_,
        capture_output=True,
        timeout=timeout,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "RUST_LOG": "warn"},
    )


def ok(res):
    assert res.returncode == 0, f"exit {res.returncode}\nstdout: {res.stdout.decode(errors='replace')}\nstderr: {res.stderr.decode(errors='replace')}"
    return res.stdout.decode()


def one_line_error(res):
    assert res.returncode != 0, f"expected failure, got exit 0: {res.stdout!r}"
    lines = [line for line in res.stderr.decode(errors="replace").splitlines() if line.strip()]
    assert len(lines) == 1, f"want one error line, got {len(lines)}: {lines}"
    return lines[0]


def topic_names(bin_, b):
    return set(ok(caudal(bin_, "topic", "list", "-b", b)).split())


def test_topic_create_list_describe_delete(shared_broker, caudal_bin):
    b = shared_broker.bootstrap
    topic = unique_topic("cli-admin")
    ok(caudal(caudal_bin, "topic", "create", topic, "--partitions", 3, "--config", "retention.ms=3600000", "-b", b))
    assert topic in topic_names(caudal_bin, b)
    out = ok(caudal(caudal_bin, "topic", "describe", topic, "-b", b))
    assert topic in out
    assert "3600000" in out
    for p in range(3):
        assert any(line.split()[:1] == [str(p)] or f"partition {p}" in line.lower() or f"Partition: {p}" in line for line in out.splitlines()), out
    ok(caudal(caudal_bin, "topic", "delete", topic, "-b", b))
    assert topic not in topic_names(caudal_bin, b)


def test_topic_errors_are_one_line(shared_broker, caudal_bin):
    b = shared_broker.bootstrap
    line = one_line_error(caudal(caudal_bin, "topic", "create", "bad name!", "-b", b))
    assert "invalid" in line.lower()
    topic = unique_topic("cli-dup")
    ok(caudal(caudal_bin, "topic", "create", topic, "-b", b))
    line = one_line_error(caudal(caudal_bin, "topic", "create", topic, "-b", b))
    assert "exist" in line.lower()
    line = one_line_error(caudal(caudal_bin, "topic", "delete", unique_topic("cli-missing"), "-b", b))
    assert "unknown" in line.lower() or "not exist" in line.lower() or "not found" in line.lower()
    line = one_line_error(caudal(caudal_bin, "topic", "describe", unique_topic("cli-missing"), "-b", b))


def test_unreachable_broker_fails_fast(caudal_bin):
    res = caudal(caudal_bin, "topic", "list", "-b", "127.0.0.1:1", timeout=60)
    one_line_error(res)


def test_produce_consume_roundtrip_with_keys_and_headers(shared_broker, caudal_bin):
    b = shared_broker.bootstrap
    topic = unique_topic("cli-rt")
    create_topic(b, topic, 1)
    lines = [f"key{i}:value {i} with spaces" for i in range(100)]
    ok(
        caudal(
            caudal_bin, "produce", topic, "-b", b, "--key-separator", ":", "--header", "src=cli", "--header", "n=1",
            input_=("\n".join(lines) + "\n").encode(),
        )
    )
    # the records are what a standard client sees
    got = ck_consume(b, topic, [0])
    assert [(r.key, r.value) for r in got] == [(f"key{i}".encode(), f"value {i} with spaces".encode()) for i in range(100)]
    assert all(r.headers == (("src", b"cli"), ("n", b"1")) for r in got), got[0].headers
    # and our consumer prints them in the requested format
    out = ok(
        caudal(
            caudal_bin, "consume", topic, "-b", b, "--from-beginning", "--max-messages", 100, "--timeout-ms", 10000,
            "--format", "%k|%v|%p|%o|%h",
        )
    )
    printed = [line for line in out.splitlines() if line]
    assert len(printed) == 100, printed[:5]
    for i, line in enumerate(printed):
        k, v, p, o, h = line.split("|")
        assert (k, v, p, o) == (f"key{i}", f"value {i} with spaces", "0", str(i)), line
        assert "src" in h and "cli" in h and "n" in h, line


def test_consume_from_offset_and_partition(shared_broker, caudal_bin):
    b = shared_broker.bootstrap
    topic = unique_topic("cli-offset")
    create_topic(b, topic, 2)
    ck_produce(b, topic, [Record(i % 2, b"k%d" % i, b"v%d" % i, (), None) for i in range(40)])
    out = ok(
        caudal(
            caudal_bin, "consume", topic, "-b", b, "--partition", 1, "--offset", 15, "--max-messages", 5,
            "--timeout-ms", 10000, "--format", "%o %v",
        )
    )
    assert out.split("\n")[:5] == [f"{o} v{2 * o + 1}" for o in range(15, 20)]


def test_produce_to_partition_with_compression_and_acks(shared_broker, caudal_bin):
    b = shared_broker.bootstrap
    topic = unique_topic("cli-part")
    create_topic(b, topic, 3)
    for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
        ok(
            caudal(
                caudal_bin, "produce", topic, "-b", b, "--partition", 2, "--compression", codec, "--acks", "all",
                input_=f"{codec}-1\n{codec}-2\n".encode(),
            )
        )
    got = ck_consume(b, topic, range(3))
    assert {r.partition for r in got} == {2}
    assert [r.value for r in got] == [f"{c}-{i}".encode() for c in ("none", "gzip", "snappy", "lz4", "zstd") for i in (1, 2)]
    assert all(r.key is None for r in got)


def test_consume_times_out_cleanly_on_empty_topic(shared_broker, caudal_bin):
    b = shared_broker.bootstrap
    topic = unique_topic("cli-empty")
    create_topic(b, topic, 1)
    res = caudal(caudal_bin, "consume", topic, "-b", b, "--from-beginning", "--timeout-ms", 1000, timeout=30)
    assert res.stdout == b""
    assert res.returncode in (0, 1), res


@pytest.mark.parametrize("args", [["produce"], ["consume"], ["topic", "create"], ["topic", "nope"]])
def test_usage_errors(caudal_bin, args):
    res = caudal(caudal_bin, *args)
    assert res.returncode != 0
    assert res.stderr


def test_produce_and_consume_errors_are_one_line(broker_factory, caudal_bin):
    b = broker_factory(settings={"auto.create.topics.enable": "false", "message.max.bytes": "2000"})
    missing = unique_topic("cli-missing")
    line = one_line_error(caudal(caudal_bin, "produce", missing, "-b", b.bootstrap, input_=b"x\n"))
    assert "unknown" in line.lower() or "not exist" in line.lower(), line
    line = one_line_error(
        caudal(caudal_bin, "consume", missing, "-b", b.bootstrap, "--from-beginning", "--timeout-ms", 2000)
    )
    assert "unknown" in line.lower() or "not exist" in line.lower(), line
    topic = unique_topic("cli-toolarge")
    create_topic(b.bootstrap, topic, 1)
    res = caudal(caudal_bin, "produce", topic, "-b", b.bootstrap, input_=b"y" * 5000 + b"\n")
    assert res.returncode != 0
    assert "too large" in res.stderr.decode().lower() or "message_too_large" in res.stderr.decode().lower(), res.stderr
