//! `gatehouse`: one binary for serving, migrating and administering.

mod admin;
mod cli;
mod commands;
mod dispatch;

/// Runs the command; an error is one line on standard error (its causes
/// joined, each once) and exit status 1 — never a backtrace, which anyhow
/// would print for `main`'s own error whenever `RUST_BACKTRACE` is set.
fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch::run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

/// `error`'s message and causes, each once (a cause's text is often part
/// of the message already).
fn one_line(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}
