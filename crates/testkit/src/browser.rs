//! A real headless Chromium for browser tests, driven over WebDriver
//! (chromedriver + fantoccini).
//!
//! The browser is found, in order: `GATEHOUSE_CHROMIUM` / `GATEHOUSE_CHROMEDRIVER`,
//! then `chromium` (or `chromium-browser`, `google-chrome`) and `chromedriver`
//! on `PATH` and in `/usr/bin`. When they are missing and the tests run as
//! root with apt-get, Debian's `chromium` and `chromium-driver` packages are
//! installed once. Otherwise the test fails with what to install: it never
//! skips.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const INSTALL_HINT: &str = "The browser tests need Chromium and its WebDriver: on Debian \
`apt-get install chromium chromium-driver` (the tests do this themselves when run as root), \
on Fedora `dnf install chromium chromedriver`, on macOS `brew install --cask chromium \
chromedriver`; elsewhere (Ubuntu's packages are snaps, which do not run in containers) \
install Google Chrome and the chromedriver of its version (Chrome for Testing), and point \
GATEHOUSE_CHROMIUM and GATEHOUSE_CHROMEDRIVER at them.";

/// Finds Chromium and chromedriver, installing them once where that is
/// possible. Panics with installation advice when they cannot be had.
pub fn chromium() -> (PathBuf, PathBuf) {
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALLING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(found) = find() {
        return found;
    }
    let tried = install();
    find().unwrap_or_else(|| {
        panic!("Chromium or chromedriver was not found ({tried}).\n\n{INSTALL_HINT}")
    })
}

fn find() -> Option<(PathBuf, PathBuf)> {
    let browser = from_env("GATEHOUSE_CHROMIUM").or_else(|| {
        ["chromium", "chromium-browser", "google-chrome"]
            .iter()
            .find_map(|n| on_path(n))
    })?;
    let driver = from_env("GATEHOUSE_CHROMEDRIVER").or_else(|| on_path("chromedriver"))?;
    Some((browser, driver))
}

/// A path the environment names; one that is set but wrong is a mistake to
/// report, not a reason to pick another (perhaps mismatched) browser.
fn from_env(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os(name)?);
    assert!(path.is_file(), "{name}={} is not a file", path.display());
    Some(path)
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Installs Debian's packages when running as root with apt-get; says what
/// happened either way.
fn install() -> String {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0");
    if !root || !Path::new("/usr/bin/apt-get").exists() {
        return "not root with apt-get, so nothing was installed".into();
    }
    eprintln!("installing Debian's chromium and chromium-driver for the browser tests…");
    let run = |args: &[&str]| {
        std::process::Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let installed =
        run(&["update", "-qq"]) && run(&["install", "-y", "-qq", "chromium", "chromium-driver"]);
    if installed {
        "installed with apt-get".into()
    } else {
        "apt-get install chromium chromium-driver failed".into()
    }
}

/// A headless Chromium session, and the chromedriver serving it. One at a
/// time per test process: two browsers beside servers and Postgres on a
/// two-core machine make every wait a gamble.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    _driver: Driver,
    _profile: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// chromedriver in its own process group; dropping it kills the group, so a
/// failed test (or a browser that never came up) leaves no Chromium behind.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = self.0.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.0.start_kill();
    }
}

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Browser {
    /// Starts chromedriver on a free port and a new headless Chromium with an
    /// empty profile and a `width`×`height` window, once no other browser of
    /// this process runs.
    pub async fn start(width: u32, height: u32) -> Self {
        let turn = TURN.lock().await;
        let (browser, driver) = tokio::task::spawn_blocking(chromium)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let (guard, port) = start_driver(&driver).await;
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": browser,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    // No calls home: the test machine may have no network.
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-features=Translate,MediaRouter,OptimizationHints",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={width},{height}"),
                    "--lang=en-US",
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("cannot start {} headless: {e}", browser.display()));
        Self {
            client,
            _driver: guard,
            _profile: profile,
            _turn: turn,
        }
    }

    /// Ends the WebDriver session (Chromium quits), then chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// chromedriver on a free port, ready; a new port if another process took
/// the one picked before chromedriver could bind it.
async fn start_driver(driver: &Path) -> (Driver, u16) {
    for _ in 0..3 {
        let port = free_port();
        let mut child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            // Its own process group: Chromium's processes are killed with it.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}\n\n{INSTALL_HINT}", driver.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let guard = Driver(child);
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("started successfully") {
                    return true;
                }
            }
            false
        })
        .await;
        if matches!(ready, Ok(true)) {
            // Keep reading its output so it never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return (guard, port);
        }
    }
    panic!("chromedriver at {} did not start", driver.display());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
