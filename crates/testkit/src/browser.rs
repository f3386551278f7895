//! A real headless Chromium for browser tests, driven over WebDriver
//! (chromedriver + fantoccini).
//!
//! The browser is found, in order: `GATEHOUSE_CHROMIUM` / `GATEHOUSE_CHROMEDRIVER`,
//! then `chromium` (or `chromium-browser`, `google-chrome`) and `chromedriver`
//! on `PATH` and in `/usr/bin`. When they are missing and the tests run as
//! root on Debian or Ubuntu, Debian's `chromium` and `chromium-driver`
//! packages are installed once. Otherwise the test fails with what to install:
//! it never skips.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const INSTALL_HINT: &str = "The browser tests need Chromium and its WebDriver: on Debian or \
Ubuntu `apt-get install chromium chromium-driver` (the tests do this themselves when run as \
root), on Fedora `dnf install chromium chromedriver`, on macOS `brew install --cask chromium \
chromedriver`; or point GATEHOUSE_CHROMIUM and GATEHOUSE_CHROMEDRIVER at a Chromium (or Chrome) \
and the chromedriver of the same version.";

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

fn from_env(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .map(PathBuf::from)
        .filter(|p| p.is_file())
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

/// A headless Chromium session, and the chromedriver serving it. Dropping it
/// kills chromedriver's whole process group, so a failed test leaves no
/// browser behind.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = self.driver.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Browser {
    /// Starts chromedriver on a free port and a new headless Chromium with an
    /// empty profile and a `width`×`height` window.
    pub async fn start(width: u32, height: u32) -> Self {
        let (browser, driver) = chromium();
        let port = free_port();
        let mut child = Command::new(&driver)
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
        assert!(
            matches!(ready, Ok(true)),
            "chromedriver at {} did not start",
            driver.display()
        );
        // Keep reading its output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

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
            driver: child,
            _profile: profile,
        }
    }

    /// Ends the WebDriver session (Chromium quits), then chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
