//! Settings are checked before anything is opened: `gatehouse check-config`
//! and `serve` share one check, and docker-compose.yml's services, filled in
//! from `.env.example` as its comments say, pass it — so the compose file
//! cannot silently rot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::BIN;

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(name)
}

/// `gatehouse check-config <role>` with exactly `env` (nothing inherited).
fn check_config(role: &str, env: &BTreeMap<String, String>) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(["check-config", role])
        .env_clear()
        .envs(env)
        .output()
        .unwrap()
}

/// Compose's interpolation of `${VAR}`, `${VAR:-default}` and
/// `${VAR:?message}` (an empty value counts as unset, as with `:`).
fn interpolate(value: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').ok_or("unclosed ${")? + start;
        let expr = &rest[start + 2..end];
        let (name, op) = match expr.find([':', '-', '?']) {
            Some(i) => (&expr[..i], &expr[i..]),
            None => (expr, ""),
        };
        let set = vars.get(name).filter(|v| !v.is_empty());
        match (set, op) {
            (Some(v), _) => out.push_str(v),
            (None, op) if op.starts_with(":-") => out.push_str(&op[2..]),
            (None, op) if op.starts_with(":?") => return Err(format!("{name}: {}", &op[2..])),
            (None, _) => {}
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `.env.example` as the user fills it in: every empty value given one of
/// the kind its comment asks for.
fn filled_env_example() -> (BTreeMap<String, String>, Vec<String>) {
    let text = std::fs::read_to_string(repo_file(".env.example")).unwrap();
    let mut vars = BTreeMap::new();
    let mut blanks = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line.split_once('=').expect("NAME=value");
        let value = match (name, value.trim()) {
            (name, "") => {
                blanks.push(name.to_string());
                match name {
                    "GATEHOUSE_MASTER_KEY" => {
                        gatehouse_crypto::master::MasterKey::generate_base64().unwrap()
                    }
                    _ => "s3cretpassw0rd".to_string(),
                }
            }
            (_, value) => value.to_string(),
        };
        vars.insert(name.to_string(), value);
    }
    (vars, blanks)
}

#[test]
fn every_compose_service_passes_check_config_with_the_env_example_filled_in() {
    let compose: serde_json::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(repo_file("docker-compose.yml")).unwrap())
            .expect("docker-compose.yml is YAML");
    let (vars, blanks) = filled_env_example();
    assert_eq!(
        blanks,
        ["POSTGRES_PASSWORD", "GATEHOUSE_MASTER_KEY"],
        "the secrets are left for the user to fill in"
    );
    let services = compose["services"].as_object().unwrap();
    // No secret is written into the compose file itself.
    let password = services["postgres"]["environment"]["POSTGRES_PASSWORD"]
        .as_str()
        .unwrap();
    assert!(password.starts_with("${POSTGRES_PASSWORD:?"), "{password}");
    let mut checked = Vec::new();
    for (name, service) in services {
        if service.get("build").is_none() {
            continue;
        }
        let command: Vec<&str> = service["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(command[0], "serve", "{name}");
        let role = command.get(1).copied().unwrap_or("all");
        let environment = service["environment"].as_object().unwrap();
        let resolve = |vars: &BTreeMap<String, String>| {
            environment
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    interpolate(&v, vars).map(|v| (k.clone(), v))
                })
                .collect::<Result<BTreeMap<_, _>, _>>()
        };
        let env = resolve(&vars).unwrap_or_else(|e| panic!("{name}: {e}"));
        for value in env.values() {
            assert!(!value.contains("${"), "{name}: {value}");
        }
        let output = check_config(role, &env);
        assert!(
            output.status.success(),
            "{name} (serve {role}): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("configuration ok"));
        // Without `.env`, compose itself refuses, naming the variable.
        let refused = resolve(&BTreeMap::new()).expect_err("a required secret is missing");
        assert!(refused.contains(".env"), "{name}: {refused}");
        checked.push((name.clone(), role.to_string(), env));
    }
    let roles: Vec<&str> = checked.iter().map(|(_, role, _)| role.as_str()).collect();
    assert_eq!(roles, ["issuer", "verifier"]);
    // The example verifier denies what its route table does not name.
    let verifier = &checked[1].2;
    assert_eq!(verifier["GATEHOUSE_EXT_AUTHZ_DENY_UNMATCHED"], "true");
    assert!(!verifier["GATEHOUSE_EXT_AUTHZ_ROUTES"].is_empty());
    // And the issuer's check would catch a master key left out.
    let mut issuer = checked[0].2.clone();
    issuer.remove("GATEHOUSE_MASTER_KEY");
    let output = check_config("issuer", &issuer);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("GATEHOUSE_MASTER_KEY"));
}

#[test]
fn check_config_reports_every_problem_at_once() {
    let env: BTreeMap<String, String> = [
        ("GATEHOUSE_EXT_AUTHZ_ROUTES", "GET orders orders:read"),
        ("GATEHOUSE_ISSUER_URL", "gatehouse.example.com"),
        (
            "GATEHOUSE_CORS_ORIGINS",
            "https://ok.example.com,javascript:alert(1)",
        ),
        ("GATEHOUSE_DATABASE_URL", "mysql://db/gatehouse"),
        ("GATEHOUSE_CLOCK_LEEWAY_SECS", "3600"),
        ("GATEHOUSE_MASTER_KEY", "not base64"),
        ("GATEHOUSE_KEY_PREFIX", "WC!"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let output = check_config("all", &env);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for named in [
        "GATEHOUSE_EXT_AUTHZ_ROUTES",
        "GATEHOUSE_ISSUER_URL",
        "javascript:alert(1)",
        "GATEHOUSE_DATABASE_URL",
        "GATEHOUSE_CLOCK_LEEWAY_SECS",
        "GATEHOUSE_MASTER_KEY",
        "GATEHOUSE_KEY_PREFIX",
    ] {
        assert!(stderr.contains(named), "{named} in {stderr}");
    }
    assert_eq!(stderr.lines().count(), 7, "one line per problem: {stderr}");
    assert!(
        !stderr.contains("not base64"),
        "no secret value echoed: {stderr}"
    );
}

/// A setting that would fail later fails first: `serve` refuses before it
/// opens the database (so before it binds, which comes after), with the
/// message `check-config` gives.
#[tokio::test]
async fn serve_refuses_a_bad_setting_before_it_opens_or_listens_anything() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url"])
            .arg(format!("sqlite:{}", db.display()))
            .args(["--data-dir"])
            .arg(dir.path())
            .env_remove("DATABASE_URL")
            .env("GATEHOUSE_EXT_AUTHZ_ROUTES", "GET /orders orders:*")
            .output(),
    )
    .await
    .expect("it exits at once")
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("GATEHOUSE_EXT_AUTHZ_ROUTES"), "{stderr}");
    assert!(!db.exists(), "nothing was opened");
    assert!(
        !dir.path().join("master.key").exists(),
        "nothing was created"
    );
}
