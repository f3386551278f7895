//! The server in the test's own process: [`spawn_app`] runs
//! `gatehouse_server::Application` — what `gatehouse serve` runs — on a
//! runtime of its own, on `127.0.0.1:0`, with a clock the test moves on
//! (the system's, shifted) and the logs it wrote kept for assertions. Same sockets, same gRPC and HTTP
//! clients as against the binary, without a process start or a sleep.
//!
//! The command line is the binary's: `serve` flags and `GATEHOUSE_*`
//! variables, parsed by the same clap definitions (each variable becomes the
//! flag that reads it, since a process has one environment for all tests).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use clap::{CommandFactory as _, FromArgMatches as _};
use gatehouse_domain::clock::{SharedClock, ShiftedClock};
use gatehouse_server::{Application, Role, ServeArgs};
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// What `gatehouse serve [ROLE]` parses.
#[derive(Debug, clap::Parser)]
#[command(name = "serve")]
struct Serve {
    #[arg(value_enum, default_value = "all")]
    role: Role,
    #[command(flatten)]
    args: ServeArgs,
}

/// A server running in this process; stopped (as by `kill -9`: nothing
/// drains) when dropped, or gracefully by [`App::stop`].
pub struct App {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The clock every part of it reads; move it with `advance`.
    pub clock: Arc<ShiftedClock>,
    logs: Logs,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<Result<(), String>>>,
    _data: tempfile::TempDir,
}

/// Starts `serve` with `args` (a command line after `gatehouse`, such as
/// `["serve", "verifier", "--database-url", url]`, without `--listen`) and
/// `envs` (`GATEHOUSE_*` variables), on a manual clock standing at the
/// system's time.
pub async fn spawn_app(args: &[&str], envs: &[(&str, &str)]) -> App {
    spawn_app_on(args, envs, ShiftedClock::new()).await
}

/// [`spawn_app`] on `clock` (several servers of one test share one, as
/// processes share the system's).
pub async fn spawn_app_on(args: &[&str], envs: &[(&str, &str)], clock: Arc<ShiftedClock>) -> App {
    refuse_ambient_settings();
    let data = tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary directory: {e}"));
    let mut serve = parse(args, envs);
    // The binary would fall back on DATABASE_URL (the test's own Postgres)
    // or on a data directory in the working directory (the crate's): an
    // in-process server says which database it uses, and keeps its files
    // in a directory of its own unless told otherwise.
    assert!(
        serve.args.database.database_url.is_some(),
        "an in-process server needs --database-url (or GATEHOUSE_DATABASE_URL): {args:?}"
    );
    assert!(
        serve.args.metrics_listen.is_none(),
        "the metrics recorder is global to a process: start the binary for a metrics test"
    );
    let named_dir = args.iter().any(|a| a.starts_with("--data-dir"))
        || envs.iter().any(|(k, _)| *k == "GATEHOUSE_DATA_DIR");
    if !named_dir {
        serve.args.database.data_dir = data.path().to_path_buf();
    }
    let logs = Logs::default();
    let runtime = runtime(&logs);
    let shared: SharedClock = clock.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let (ready, listening) = oneshot::channel();
    let done = runtime.spawn(async move {
        let app = match Application::build_with_clock(&serve.args, serve.role, shared).await {
            Ok(app) => app,
            Err(error) => {
                let error = error.to_string();
                let _ = ready.send(Err(error.clone()));
                return Err(error);
            }
        };
        let _ = ready.send(Ok(app.addr()));
        app.run_until_stopped(async {
            let _ = stopped.await;
        })
        .await
        .map_err(|e| e.to_string())
    });
    let waited = tokio::time::timeout(std::time::Duration::from_secs(30), listening).await;
    let addr = match waited {
        Ok(Ok(Ok(addr))) => addr,
        Ok(Ok(Err(error))) => panic!(
            "the server did not start: {error}; its logs:\n{}",
            logs.text()
        ),
        Ok(Err(_)) => panic!(
            "the server stopped before listening; its logs:\n{}",
            logs.text()
        ),
        Err(_) => panic!(
            "the server did not listen within 30 s; its logs:\n{}",
            logs.text()
        ),
    };
    // Ready as the binary is: once it says "listening" (a verifier has
    // loaded its index by then), not when the port is merely bound.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !logs.text().lines().any(|l| l.contains("listening")) {
        if done.is_finished() {
            panic!(
                "the server stopped before serving; its logs:\n{}",
                logs.text()
            );
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "the server did not serve within 30 s; its logs:\n{}",
                logs.text()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    App {
        addr,
        clock,
        logs,
        runtime: Some(runtime),
        stop: Some(stop),
        done: Some(done),
        _data: data,
    }
}

impl App {
    /// A gRPC channel to the server.
    pub async fn channel(&self) -> Channel {
        crate::process::channel(self.addr).await
    }

    /// `http://ADDR`, for HTTP clients.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything the server has logged so far.
    pub fn logs(&self) -> String {
        self.logs.text()
    }

    /// Moves the server's clock on by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        self.clock
            .advance(chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX));
    }

    /// Stops as SIGTERM does (drain, stop background tasks, close the
    /// store) and returns how the server ended.
    pub async fn stop(mut self) -> Result<(), String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.done.take() {
            Some(done) => {
                match tokio::time::timeout(std::time::Duration::from_secs(10), done).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(join)) => Err(format!("the server panicked: {join}")),
                    Err(_) => Err(format!(
                        "the server did not stop within 10 s; logs:\n{}",
                        self.logs()
                    )),
                }
            }
            None => Ok(()),
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        // Allowed inside the test's runtime, unlike dropping a runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The server's own runtime (two workers, as the machine has two cores);
/// each of its threads logs into `logs`.
fn runtime(logs: &Logs) -> tokio::runtime::Runtime {
    install_router();
    let logs = logs.clone();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("gatehouse-app")
        .on_thread_start(move || {
            // For the thread's whole life: it belongs to this server.
            CURRENT.with(|current| *current.borrow_mut() = Some(logs.clone()));
        })
        .build()
        .unwrap_or_else(|e| panic!("cannot start the server's runtime: {e}"))
}

std::thread_local! {
    /// The log buffer of the server this thread belongs to, if any.
    static CURRENT: std::cell::RefCell<Option<Logs>> = const { std::cell::RefCell::new(None) };
}

/// One subscriber for the whole test process, routing each line to the
/// buffer of the server whose thread wrote it. (A default dispatcher per
/// server thread is not enough: tracing caches whether a call site is
/// enabled process-wide, and a call site first reached on a thread of no
/// server was then switched off for every server.)
fn install_router() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // `serve`'s own default level, as the process tests run it.
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_ansi(false)
            .with_writer(Router)
            .finish();
        // Another global subscriber (a test's own) keeps its place; the
        // servers' lines then go to it.
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// Writes to the current thread's server's buffer; elsewhere, nowhere
/// (or standard error with `TEST_LOG`).
struct Router;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Router {
    type Writer = Box<dyn std::io::Write>;

    fn make_writer(&'a self) -> Self::Writer {
        match CURRENT.with(|current| current.borrow().clone()) {
            Some(logs) => Box::new(logs),
            None if std::env::var_os("TEST_LOG").is_some() => Box::new(std::io::stderr()),
            None => Box::new(std::io::sink()),
        }
    }
}

/// Parses the command line as the binary does, each `envs` variable given
/// as the flag that reads it.
fn parse(args: &[&str], envs: &[(&str, &str)]) -> Serve {
    let command = Serve::command();
    let mut argv: Vec<String> = args
        .iter()
        .skip_while(|a| **a == "serve")
        .map(|a| a.to_string())
        .collect();
    argv.insert(0, "serve".into());
    for (name, value) in envs {
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == *name))
        else {
            panic!("`serve` reads no variable {name}");
        };
        let Some(long) = arg.get_long() else {
            panic!("{name} has no flag");
        };
        argv.push(format!("--{long}={value}"));
    }
    argv.extend(["--listen".into(), "127.0.0.1:0".into()]);
    let matches = command
        .try_get_matches_from(&argv)
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    Serve::from_arg_matches(&matches).unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

/// A `GATEHOUSE_*` variable `serve` reads, set in the test process, would
/// reach every server (clap reads the environment), so the tests would no
/// longer say what they configure: refused, loudly.
fn refuse_ambient_settings() {
    let command = Serve::command();
    let ambient: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_env())
        .filter_map(|name| name.to_str())
        .filter(|name| std::env::var_os(name).is_some())
        .map(str::to_string)
        .collect();
    assert!(
        ambient.is_empty(),
        "unset {} before running the tests: in-process servers would read them",
        ambient.join(", ")
    );
}

/// A server's log lines, as `gatehouse serve` prints them (text, no colour).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = std::io::stderr().write_all(buf);
        }
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
