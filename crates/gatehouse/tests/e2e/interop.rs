//! Tokens verified by an independent JWT library in another language (PyJWT's
//! `PyJWKClient`), knowing only `/.well-known/jwks.json` — for each signing
//! algorithm (EdDSA, ES256, RS256), on SQLite and Postgres — and a switch of
//! `--signing-alg` that takes effect at the next rotation while the old key's
//! tokens keep verifying.
//!
//! PyJWT comes from `tests/interop/requirements.txt`: the installed one if
//! `python3` has it, else a virtualenv made under `target/` (PyPI needed once).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use gatehouse_api::v1 as pb;
use gatehouse_api::v1::verifier_service_client::VerifierServiceClient;
use gatehouse_testkit::App;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Env, MASTER_KEY, OWNER, PASSWORD, postgres, run_cli, sqlite};

const ALGORITHMS: [&str; 3] = ["EdDSA", "ES256", "RS256"];

#[tokio::test]
async fn pyjwt_verifies_every_algorithms_tokens_on_sqlite() {
    for alg in ALGORITHMS {
        interop(sqlite(), alg).await;
    }
    switch(sqlite()).await;
}

#[tokio::test]
async fn pyjwt_verifies_every_algorithms_tokens_on_postgres() {
    for alg in ALGORITHMS {
        interop(postgres().await, alg).await;
    }
    switch(postgres().await).await;
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A Python that can `import jwt`, found or made once.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let requirements = repo_root().join("tests/interop/requirements.txt");
        let help = format!(
            "the interop tests need Python 3 with PyJWT: install python3 (with venv and pip) \
             and run `pip install -r {}`, or set GATEHOUSE_PYTHON to a Python that has it",
            requirements.display()
        );
        let has_jwt = |python: &Path| {
            Command::new(python)
                .args(["-c", "import jwt, cryptography"])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if let Some(python) = std::env::var_os("GATEHOUSE_PYTHON").map(PathBuf::from) {
            assert!(has_jwt(&python), "{help}");
            return python;
        }
        let system = PathBuf::from("python3");
        if has_jwt(&system) {
            return system;
        }
        let venv = repo_root().join("target/interop-venv");
        let venv_python = venv.join("bin/python");
        if !has_jwt(&venv_python) {
            let made = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .unwrap_or_else(|e| panic!("cannot run python3 ({e}): {help}"));
            assert!(made.success(), "python3 -m venv failed: {help}");
            let installed = Command::new(&venv_python)
                .args(["-m", "pip", "install", "-q", "-r"])
                .arg(&requirements)
                .status()
                .unwrap_or_else(|e| panic!("cannot run pip ({e}): {help}"));
            assert!(installed.success(), "pip install failed: {help}");
        }
        assert!(has_jwt(&venv_python), "{help}");
        venv_python
    })
}

/// PyJWT's verdict on `token`, accepting exactly `alg`: the claims, or why not.
async fn pyjwt(base: &str, issuer: &str, alg: &str, token: &str) -> Result<Value, String> {
    let python = python().to_path_buf();
    let script = repo_root().join("tests/interop/verify_jwt.py");
    let output = tokio::process::Command::new(python)
        .arg(script)
        .args([
            &format!("{base}/.well-known/jwks.json"),
            issuer,
            "gatehouse",
            alg,
            token,
        ])
        .output()
        .await
        .unwrap();
    if output.status.success() {
        Ok(serde_json::from_slice(&output.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn envs(alg: &str) -> [(&'static str, String); 3] {
    [
        ("GATEHOUSE_MASTER_KEY", MASTER_KEY.to_string()),
        ("GATEHOUSE_SIGNING_ALG", alg.to_string()),
        ("GATEHOUSE_SIGNING_KEY_PUBLISH_LEAD_SECS", "0".to_string()),
    ]
}

async fn gatehouse(env: &Env, args: &[&str], alg: &str) -> std::process::Output {
    let envs = envs(alg);
    let mut all: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.push(("GATEHOUSE_BOOTSTRAP_PASSWORD", PASSWORD));
    run_cli(env, args, &all).await
}

async fn serve(env: &Env, alg: &str) -> App {
    let envs = envs(alg);
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    gatehouse_testkit::spawn_app_on(
        &["serve", "--database-url", &env.url],
        &envs,
        env.clock.clone(),
    )
    .await
}

fn header(token: &str) -> Value {
    use base64::Engine as _;
    let part = token.split('.').next().unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> Value {
    let response = http.post(url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn interop(env: Env, alg: &str) {
    let boot: Value = serde_json::from_slice(
        &gatehouse(&env, &["bootstrap", "--username", OWNER], alg)
            .await
            .stdout,
    )
    .unwrap();
    let server = serve(&env, alg).await;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let jwks: Value = http
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["alg"], alg, "{jwks}");
    let (kty, members): (&str, &[&str]) = match alg {
        "EdDSA" => ("OKP", &["crv", "x"]),
        "ES256" => ("EC", &["crv", "x", "y"]),
        _ => ("RSA", &["n", "e"]),
    };
    assert_eq!(key["kty"], kty);
    for member in members {
        assert!(
            key[*member].as_str().is_some_and(|m| !m.is_empty()),
            "{member}: {key}"
        );
    }
    let discovery: Value = http
        .get(format!("{base}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        json!([alg])
    );
    let issuer = discovery["issuer"].as_str().unwrap().to_string();

    let login = post(
        &http,
        format!("{base}/api/auth/login"),
        json!({ "username": OWNER, "password": PASSWORD }),
    )
    .await;
    let sdk = post(
        &http,
        format!("{base}/v1/auth/sdk-token"),
        json!({
            "account_id": boot["account_id"],
            "key_id": boot["key_id"],
            "key_secret": boot["secret"],
        }),
    )
    .await;
    for (what, token, sub) in [
        ("login", &login["access_token"], &boot["user_id"]),
        ("sdk", &sdk["access_token"], &boot["key_id"]),
    ] {
        let token = token.as_str().unwrap();
        assert_eq!(header(token)["alg"], alg, "{what}");
        let verified = pyjwt(&base, &issuer, alg, token)
            .await
            .unwrap_or_else(|e| panic!("PyJWT refused the {alg} {what} token: {e}"));
        assert_eq!(verified["claims"]["sub"], *sub, "{what}");
        assert_eq!(verified["claims"]["acc"], boot["account_id"], "{what}");
        // The same token is refused when another algorithm is demanded, and
        // for another issuer: the check above could have failed.
        let other = if alg == "RS256" { "ES256" } else { "RS256" };
        assert!(pyjwt(&base, &issuer, other, token).await.is_err(), "{what}");
        assert!(
            pyjwt(&base, "https://evil.test", alg, token).await.is_err(),
            "{what}"
        );
    }
}

/// EdDSA → RS256 by rotation: the old key stays published with its own `alg`
/// and its tokens keep verifying; new tokens are RS256.
async fn switch(env: Env) {
    gatehouse(&env, &["bootstrap", "--username", OWNER], "EdDSA").await;
    // Configured for RS256 already: nothing changes until a rotation.
    let server = serve(&env, "RS256").await;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let credentials = json!({ "username": OWNER, "password": PASSWORD });
    let before = post(&http, format!("{base}/api/auth/login"), credentials.clone()).await;
    let old_token = before["access_token"].as_str().unwrap().to_string();
    assert_eq!(header(&old_token)["alg"], "EdDSA");

    let rotated: Value = serde_json::from_slice(
        &gatehouse(&env, &["signing-keys", "rotate"], "RS256")
            .await
            .stdout,
    )
    .unwrap();
    assert_eq!(rotated["alg"], "RS256");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let new_token = loop {
        let after = post(&http, format!("{base}/api/auth/login"), credentials.clone()).await;
        let token = after["access_token"].as_str().unwrap().to_string();
        if header(&token)["alg"] == "RS256" {
            break token;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server never signed with the rotated-in key"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let jwks: Value = http
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut algs: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["alg"].as_str().unwrap())
        .collect();
    algs.sort_unstable();
    assert_eq!(algs, ["EdDSA", "RS256"], "{jwks}");
    let issuer = format!("http://{}", server.addr);
    assert!(pyjwt(&base, &issuer, "EdDSA", &old_token).await.is_ok());
    assert!(pyjwt(&base, &issuer, "RS256", &new_token).await.is_ok());
    // Gatehouse's own Verify accepts both, each with its key's algorithm.
    let mut verifier = VerifierServiceClient::new(server.channel().await);
    for token in [&old_token, &new_token] {
        verifier
            .verify(pb::VerifyRequest {
                credential: token.clone(),
                required_scopes: vec![],
                audience: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", header(token)["alg"]));
    }
}
