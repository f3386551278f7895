//! The README's curl walk-through, run exactly as written against a real
//! server on the embedded default, after the README's first steps.

use gatehouse_testkit::Gatehouse;

use crate::BIN;
use crate::support::WORKCLAW;

const README: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"));

/// The shell block between the walk-through markers.
fn walkthrough() -> String {
    let start = README
        .find("<!-- walkthrough:begin -->")
        .expect("the README marks its walk-through");
    let end = README.find("<!-- walkthrough:end -->").expect("end marker");
    let block = &README[start..end];
    let body = block.split_once("```sh\n").expect("a sh block").1;
    body.rsplit_once("```")
        .expect("closing fence")
        .0
        .to_string()
}

fn require(tool: &str) {
    let found = std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "the README walk-through needs `{tool}` (Debian/Ubuntu: apt-get install curl jq; macOS: brew install jq)"
    );
}

#[tokio::test]
async fn the_readme_curl_walkthrough_runs_as_written() {
    require("curl");
    require("jq");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("g.db").display());
    // The README's first steps: bootstrap with the WorkClaw catalogue.
    let boot = tokio::process::Command::new(BIN)
        .args(["bootstrap", "--username", "owner@example.com"])
        .args(["--scopes", WORKCLAW, "--database-url", &url])
        .env("GATEHOUSE_BOOTSTRAP_PASSWORD", "a long owner password")
        .env("GATEHOUSE_MASTER_KEY_FILE", dir.path().join("master.key"))
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    assert!(
        boot.status.success(),
        "{}",
        String::from_utf8_lossy(&boot.stderr)
    );
    let boot: serde_json::Value = serde_json::from_slice(&boot.stdout).unwrap();
    let master_key_file = dir.path().join("master.key");
    let server = Gatehouse::spawn(
        BIN,
        &["serve", "--database-url", &url],
        &[(
            "GATEHOUSE_MASTER_KEY_FILE",
            master_key_file.to_str().unwrap(),
        )],
    )
    .await;
    let output = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &walkthrough()])
        .env("GATEHOUSE_URL", format!("http://{}", server.addr))
        .env("GATEHOUSE_ACCOUNT", boot["account_id"].as_str().unwrap())
        .env("GATEHOUSE_TOKEN", boot["secret"].as_str().unwrap())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the walk-through failed:\n{stdout}\n{}\nserver:\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.logs()
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"900"), "refresh: expires_in\n{stdout}");
    assert!(
        stdout.contains("\"claws:read\",\n  \"deployments:write\""),
        "{stdout}"
    );
    assert!(lines.contains(&"\"revoked\""), "{stdout}");
    // The revocation ends the running grace period first, in the same append.
    assert_eq!(
        lines[lines.len() - 5..],
        ["created", "rotated", "grace_expired", "revoked", "deleted"],
        "the key's history\n{stdout}"
    );
}
