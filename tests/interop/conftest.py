"""Fixtures for the real-client interop, crash and corruption tests.

A `Broker` is one `caudal server` process on a free 127.0.0.1 port with its own data directory.
It is started in its own process group so that cleanup can always kill everything it spawned,
its stdout/stderr go to a log file the tests can assert on, and every wait is bounded by a
deadline.

Which binary: $CAUDAL_BIN if set, else the newer of target/release/caudal and
target/debug/caudal (scripts/test.sh builds the release one and sets CAUDAL_BIN).
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


def caudal_binary() -> Path:
    env = os.environ.get("CAUDAL_BIN")
    if env:
        path = Path(env)
        if not path.is_absolute():
            path = REPO_ROOT / path
        if not path.exists():
            pytest.exit(f"CAUDAL_BIN={env} does not exist", returncode=2)
        return path
    candidates = [
        p for p in (REPO_ROOT / "target/release/caudal", REPO_ROOT / "target/debug/caudal") if p.exists()
    ]
    if not candidates:
        pytest.exit(
            "no caudal binary: run `cargo build --release -p caudal-cli` or set CAUDAL_BIN", returncode=2
        )
    return max(candidates, key=lambda p: p.stat().st_mtime)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerError(Exception):
    pass


# Every broker process this session started, so that none outlives pytest even if a fixture's
# teardown never runs (interrupt, internal error).
_LIVE: set = set()


@atexit.register
def _kill_leftover_brokers() -> None:
    for broker in list(_LIVE):
        broker.cleanup()


class Broker:
    """One `caudal server` process. Restarts keep the port and the data directory."""

    def __init__(self, binary: Path, workdir: Path, settings: dict[str, str] | None = None, name: str = "broker"):
        self.binary = binary
        self.workdir = workdir
        self.name = name
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{name}.log"
        self.settings = dict(settings or {})
        self.port = free_port()
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._log_file = None

    # ---- lifecycle ----------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            str(self.binary),
            "server",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            self.bootstrap,
            "--advertise",
            self.bootstrap,
            "--node-id",
            "1",
        ]
        for name, value in self.settings.items():
            cmd += ["--set", f"{name}={value}"]
        return cmd

    def start(self, timeout: float = READY_TIMEOUT_S) -> None:
        if self.alive():
            raise BrokerError("broker already running")
        self.starts += 1
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
        self._log_file.flush()
        # CAUDAL_* variables are broker configuration: only the flags above may configure it
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAUDAL_")}
        env.setdefault("RUST_LOG", "info")
        env.setdefault("RUST_BACKTRACE", "1")
        env["NO_COLOR"] = "1"
        self.log_offset_at_start = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=env,
            start_new_session=True,
        )
        _LIVE.add(self)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        # 1) the listener accepts TCP connections
        while True:
            self._check_alive("while starting")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BrokerError(f"broker did not listen on {self.bootstrap} within {timeout}s\n{self.log_tail()}")
            time.sleep(0.05)
        # 2) a real client gets metadata
        from confluent_kafka.admin import AdminClient

        from support import rdkafka_conf

        admin = AdminClient(rdkafka_conf(self.bootstrap, **{"socket.timeout.ms": 5000}))
        last_error = None
        while True:
            self._check_alive("while waiting for metadata")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerError(f"broker never answered Metadata: {last_error}\n{self.log_tail()}")
            try:
                md = admin.list_topics(timeout=min(2.0, max(remaining, 0.1)))
                if md.brokers:
                    return
            except Exception as e:  # noqa: BLE001 - retried until the deadline
                last_error = e
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _check_alive(self, what: str) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise BrokerError(f"broker exited with {self.proc.returncode} {what}\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int:
        """Sends `sig` to the broker and waits for it to exit; returns its exit code.

        If it does not exit within `timeout` the process group is killed and BrokerError raised.
        """
        if self.proc is None:
            raise BrokerError("broker not started")
        from support import forget_admin

        forget_admin(self.bootstrap)
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                raise BrokerError(f"broker did not exit within {timeout}s of signal {sig}\n{self.log_tail()}")
        self._close_log()
        return self.proc.returncode

    def kill9(self) -> None:
        """SIGKILL the whole process group: no shutdown code runs."""
        if self.proc is None:
            raise BrokerError("broker not started")
        self._kill_group()
        self._close_log()

    def restart(self, sig: int = signal.SIGTERM, timeout: float = READY_TIMEOUT_S) -> None:
        if self.alive():
            self.stop(sig)
        self.start(timeout)

    def _kill_group(self) -> None:
        if self.proc is None:
            return
        from support import forget_admin

        forget_admin(self.bootstrap)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def cleanup(self) -> None:
        self._kill_group()
        self._close_log()
        _LIVE.discard(self)

    # ---- logs ---------------------------------------------------------------------------------
    def log_text(self, since_last_start: bool = False) -> str:
        if not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()
        if since_last_start:
            data = data[getattr(self, "log_offset_at_start", 0) :]
        return data.decode("utf-8", errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_text().splitlines()
        return f"--- {self.log_path} (last {lines} lines) ---\n" + "\n".join(text[-lines:])

    def wait_for_log(self, pattern: str, timeout: float = 10.0, since_last_start: bool = True) -> re.Match:
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.log_text(since_last_start=since_last_start))
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"log line /{pattern}/ not seen within {timeout}s\n{self.log_tail()}")
            time.sleep(0.1)

    # ---- storage ------------------------------------------------------------------------------
    def partition_dir(self, topic: str, partition: int) -> Path:
        return self.data_dir / f"{topic}-{partition}"

    def segment_files(self, topic: str, partition: int, suffix: str = ".log") -> list[Path]:
        return sorted(self.partition_dir(topic, partition).glob(f"*{suffix}"))


# ---- pytest plumbing --------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _test_failed(request) -> bool:
    node = request.node
    return any(getattr(getattr(node, f"rep_{w}", None), "failed", False) for w in ("setup", "call"))


@pytest.fixture(scope="session")
def caudal_bin() -> Path:
    return caudal_binary()


@pytest.fixture
def broker_factory(caudal_bin, tmp_path, request):
    """Starts brokers for one test: `broker_factory(settings={...}, start=True)`.

    Every broker is killed (process group) at teardown, pass or fail; on failure the log tail is
    printed into the test report.
    """
    brokers: list[Broker] = []

    def make(settings: dict[str, str] | None = None, start: bool = True, name: str | None = None) -> Broker:
        b = Broker(caudal_bin, tmp_path / (name or f"broker{len(brokers)}"), settings, name or "broker")
        brokers.append(b)
        if start:
            b.start()
        return b

    yield make
    failed = _test_failed(request)
    for b in brokers:
        b.cleanup()
        if failed:
            print(b.log_tail(80))


@pytest.fixture
def broker(broker_factory) -> Broker:
    """A fresh broker with default settings (auto topic creation on, as in Kafka)."""
    return broker_factory()


@pytest.fixture(scope="module")
def shared_broker(caudal_bin, tmp_path_factory, request):
    """One broker for a whole test module; tests use unique topic names."""
    b = Broker(caudal_bin, tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]))
    try:
        b.start()
        yield b
    finally:
        b.cleanup()
        if request.session.testsfailed:
            print(b.log_tail(80))


@pytest.fixture
def cluster_factory(caudal_bin, tmp_path, request):
    """Starts replicated clusters for one test: `cluster_factory(size=3, settings={...},
    start=True)` returns a `cluster.Cluster` (see cluster.py).

    At teardown, pass or fail, everything the clusters tracked (producers, watchers, group
    members) is closed and every node's process group is killed (paused nodes get SIGCONT first);
    on failure every node's log tail is printed into the test report.
    """
    from cluster import Cluster

    clusters: list = []

    def make(size: int = 3, settings: dict[str, str] | None = None, start: bool = True):
        c = Cluster(caudal_bin, tmp_path / f"cluster{len(clusters)}", size, settings)
        clusters.append(c)
        if start:
            c.start()
        return c

    yield make
    failed = _test_failed(request)
    for c in clusters:
        c.cleanup()
        if failed:
            print(c.log_tails(80))
