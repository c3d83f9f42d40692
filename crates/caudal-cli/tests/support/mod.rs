//! A real `caudal server` on a free 127.0.0.1 port with a temporary data directory, and helpers to
//! run the `caudal` client subcommands against it.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_caudal");

/// A broker process, killed when dropped.
pub struct Broker {
    child: Child,
    pub address: String,
    _data_dir: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker and waits (with a deadline) until it accepts connections.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(settings: &[&str]) -> Self {
        let mut last_failure = String::new();
        // A port freed by the OS may be taken before the broker binds it; try a few.
        for _ in 0..5 {
            let data_dir = tempfile::tempdir().expect("temporary data directory");
            let port = {
                let listener = TcpListener::bind("127.0.0.1:0").expect("free port");
                listener.local_addr().expect("local address").port()
            };
            let address = format!("127.0.0.1:{port}");
            let mut command = Command::new(BINARY);
            command
                .arg("server")
                .arg("--data-dir")
                .arg(data_dir.path())
                .arg("--listen")
                .arg(&address)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            for setting in settings {
                command.arg("--set").arg(setting);
            }
            let child = command.spawn().expect("spawn caudal server");
            let mut broker = Broker {
                child,
                address,
                _data_dir: data_dir,
            };
            match broker.wait_ready(Duration::from_secs(30)) {
                Ok(()) => return broker,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("broker did not start: {last_failure}");
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                }
                return Err(format!("exited with {status}: {stderr}"));
            }
            if TcpStream::connect(&self.address).is_ok() {
                // Accepting connections; the listener may come up before the broker answers
                // Metadata, so ask it for real.
                let output = run(&["topic", "list", "-b", &self.address], None);
                if output.status.success() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("not ready after {} s", limit.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs `caudal ARGS... -b ADDRESS`.
    pub fn caudal(&self, args: &[&str]) -> Output {
        self.caudal_with_input(args, None)
    }

    pub fn caudal_with_input(&self, args: &[&str], input: Option<&[u8]>) -> Output {
        let mut full: Vec<&str> = args.to_vec();
        full.push("-b");
        full.push(&self.address);
        run(&full, input)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the `caudal` binary with `args`, feeding `input` on stdin, with a deadline. Output is
/// drained by reader threads so a chatty child never blocks on a full pipe.
pub fn run(args: &[&str], input: Option<&[u8]>) -> Output {
    let mut child = Command::new(BINARY)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn caudal");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.map(<[u8]>::to_vec);
    let writer = std::thread::spawn(move || {
        if let Some(input) = input {
            let _ = stdin.write_all(&input);
        }
    });
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        match child.try_wait().expect("wait for caudal") {
            Some(status) => break status,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = stderr.join().unwrap_or_default();
                panic!(
                    "caudal {args:?} did not finish within 120 s; stderr: {}",
                    String::from_utf8_lossy(&stderr)
                );
            }
        }
    };
    let _ = writer.join();
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts success, showing stderr otherwise.
pub fn ok(output: Output) -> Output {
    assert!(
        output.status.success(),
        "caudal failed ({}): {}",
        output.status,
        stderr(&output)
    );
    output
}
