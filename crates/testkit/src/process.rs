//! The real `gatehouse` binary, started on a free port for end-to-end tests.

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// A running `gatehouse serve`, killed when dropped.
pub struct Gatehouse {
    child: Child,
    /// Where it listens (it binds port 0 and logs the address it got).
    pub addr: SocketAddr,
    /// From spawn to the "listening" log line.
    pub startup: Duration,
    /// Every log line so far, for assertions (e.g. that no secret is logged).
    logs: Arc<Mutex<Vec<String>>>,
}

impl Gatehouse {
    /// Starts `bin` with `args` (a `serve` command line, without `--listen`) and
    /// `envs`, on `127.0.0.1:0`. `DATABASE_URL` and `GATEHOUSE_*` variables of the
    /// test process are not passed on, so each test says what it configures.
    pub async fn spawn(bin: &str, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir();
        Self::spawn_in(bin, args, envs, &dir).await
    }

    /// Like [`Gatehouse::spawn`], with `cwd` as the working directory (where the
    /// embedded default keeps its data directory).
    pub async fn spawn_in(
        bin: &str,
        args: &[&str],
        envs: &[(&str, &str)],
        cwd: &std::path::Path,
    ) -> Self {
        Self::spawn_waiting(bin, args, envs, cwd, Duration::from_secs(30)).await
    }

    /// Like [`Gatehouse::spawn_in`], waiting up to `wait` for it to listen (a
    /// verifier loads its whole index first).
    pub async fn spawn_waiting(
        bin: &str,
        args: &[&str],
        envs: &[(&str, &str)],
        cwd: &std::path::Path,
        wait: Duration,
    ) -> Self {
        let mut command = Command::new(bin);
        command.current_dir(cwd);
        command
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, _) in std::env::vars() {
            if key.starts_with("GATEHOUSE_") {
                command.env_remove(key);
            }
        }
        command.env("GATEHOUSE_LOG", "info");
        for (key, value) in envs {
            command.env(key, value);
        }
        let started = Instant::now();
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = oneshot::channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        tokio::spawn(collect(BufReader::new(stderr), logs.clone(), Some(addr_tx)));
        tokio::spawn(collect(BufReader::new(stdout), logs.clone(), None));
        let addr = match tokio::time::timeout(wait, addr_rx).await {
            Ok(Ok(addr)) => addr,
            _ => {
                let _ = child.start_kill();
                let logs = logs.lock().map(|l| l.join("\n")).unwrap_or_default();
                panic!(
                    "gatehouse did not report a listening address within {wait:?}; its output:\n{logs}"
                );
            }
        };
        Self {
            child,
            addr,
            startup: started.elapsed(),
            logs,
        }
    }

    /// A gRPC channel to the server.
    pub async fn channel(&self) -> Channel {
        channel(self.addr).await
    }

    /// Everything the process has logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Sends SIGTERM and waits (up to 10 s) for the process to exit.
    pub async fn terminate(mut self) -> ExitStatus {
        let pid = self.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status().await;
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(Ok(status)) => status,
            _ => panic!(
                "gatehouse did not exit within 10 s of SIGTERM; logs:\n{}",
                self.logs()
            ),
        }
    }
}

async fn collect<R: tokio::io::AsyncBufRead + Unpin>(
    reader: R,
    logs: Arc<Mutex<Vec<String>>>,
    mut addr_tx: Option<oneshot::Sender<SocketAddr>>,
) {
    let mut lines = reader.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if std::env::var_os("TEST_LOG").is_some() {
            eprintln!("[gatehouse] {line}");
        }
        if let Some(addr) = listening_addr(&line)
            && let Some(tx) = addr_tx.take()
        {
            let _ = tx.send(addr);
        }
        if let Ok(mut logs) = logs.lock() {
            logs.push(line);
        }
    }
}

/// Finds `addr=…` on the server's "listening" log line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("listening") {
        return None;
    }
    let start = line.find("addr=")? + "addr=".len();
    let rest = line[start..].trim_start_matches('"');
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"')
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// A gRPC channel to `addr`.
pub async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("a socket address is a valid URI")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to gatehouse at {addr}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::listening_addr;

    #[test]
    fn finds_the_address_on_the_listening_line() {
        let line = "2026-11-23T09:00:00Z  INFO gatehouse_server: listening addr=127.0.0.1:4567 backend=\"sqlite\"";
        assert_eq!(
            listening_addr(line),
            Some("127.0.0.1:4567".parse().unwrap())
        );
        assert_eq!(listening_addr("starting addr=127.0.0.1:1"), None);
    }
}
