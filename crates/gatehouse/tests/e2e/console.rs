//! The console at `/console` in a real headless Chromium, on SQLite and
//! Postgres: what a WorkClaw user does under Settings > API Keys — sign in,
//! create a key with two catalogue scopes and copy its secret from the dialog
//! (checked against `/api/v1/verify`), rotate with a short grace and see both
//! states, revoke, watch the activity log fill in live, delete — and what
//! they see when a password is wrong, a session expires, or a scope is
//! missing. The screenshots in the README come from here
//! (`GATEHOUSE_UPDATE_SCREENSHOTS=1` copies them into `docs/console/`).

use std::time::Duration;

use fantoccini::{Client, Locator};
use gatehouse_testkit::{Browser, Gatehouse};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{
    Env, MASTER_KEY, OWNER, PASSWORD, WORKCLAW, bootstrap_with, postgres, sqlite,
};

#[tokio::test]
async fn the_console_manages_a_key_in_a_browser_on_sqlite() {
    manage_a_key(sqlite(), true).await;
}

#[tokio::test]
async fn the_console_manages_a_key_in_a_browser_on_postgres() {
    manage_a_key(postgres().await, false).await;
}

#[tokio::test]
async fn the_console_shows_what_went_wrong_on_sqlite() {
    errors(sqlite()).await;
}

#[tokio::test]
async fn the_console_shows_what_went_wrong_on_postgres() {
    errors(postgres().await).await;
}

async fn serve(env: &Env, extra: &[&str]) -> Gatehouse {
    let mut args = vec![
        "serve",
        "--database-url",
        &env.url,
        "--scheduler-interval-ms",
        "100",
        "--usage-interval-ms",
        "300",
    ];
    args.extend_from_slice(extra);
    Gatehouse::spawn(
        crate::BIN,
        &args,
        &[
            ("GATEHOUSE_MASTER_KEY", MASTER_KEY),
            ("GATEHOUSE_POLL_INTERVAL_MS", "100"),
        ],
    )
    .await
}

/// The page's value of `expression` (JavaScript).
async fn js(client: &Client, expression: &str) -> Value {
    client
        .execute(&format!("return ({expression});"), vec![])
        .await
        .unwrap_or_else(|e| panic!("{expression}: {e}"))
}

/// Waits up to `seconds` for `expression` to be truthy in the page.
async fn until(client: &Client, seconds: u64, expression: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        let value = js(client, expression).await;
        if !(value.is_null() || value == false || value == "" || value == 0) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let banner = js(client, "document.getElementById('banner').innerText").await;
            panic!("not within {seconds} s: {expression} (banner: {banner})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The rendered text of `css`, read in one step in the page (a row may be
/// redrawn between a WebDriver find and a read).
async fn text(client: &Client, css: &str) -> String {
    let value = client
        .execute(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
            vec![json!(css)],
        )
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    value
        .as_str()
        .unwrap_or_else(|| panic!("no {css} in the page"))
        .to_string()
}

/// Clicks `css`, finding it again if the list was redrawn in between (the
/// page redraws a key's row when its activity moves on).
async fn click(client: &Client, css: &str) {
    for attempt in 0.. {
        let element = client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        match element.click().await {
            Ok(()) => return,
            Err(e) if attempt < 5 && e.to_string().contains("stale element") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("click {css}: {e}"),
        }
    }
}

async fn type_into(client: &Client, css: &str, text: &str) {
    let field = client.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

fn key(k: fantoccini::key::Key) -> String {
    char::from(k).to_string()
}

/// Signs in by keyboard alone: type, Tab, type, Enter.
async fn sign_in(client: &Client, username: &str, password: &str) {
    // The script has loaded (it enables the button) and the field has focus.
    until(
        client,
        10,
        "!document.getElementById('sign-in-submit').disabled",
    )
    .await;
    until(client, 10, "document.activeElement.id === 'username'").await;
    let field = client.active_element().await.unwrap();
    field
        .send_keys(&format!(
            "{username}{}{password}{}",
            key(fantoccini::key::Key::Tab),
            key(fantoccini::key::Key::Enter)
        ))
        .await
        .unwrap();
}

/// What `/api/v1/verify` says of `secret` with `scopes` required.
async fn verify(http: &reqwest::Client, base: &str, secret: &str, scopes: &[&str]) -> StatusCode {
    http.post(format!("{base}/api/v1/verify"))
        .bearer_auth(secret)
        .json(&json!({ "required_scopes": scopes }))
        .send()
        .await
        .unwrap()
        .status()
}

fn screenshot_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Saves a screenshot under the target directory, and into `docs/console/`
/// (which the README shows) when `GATEHOUSE_UPDATE_SCREENSHOTS=1`.
async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(screenshot_dir().join(name), &png).unwrap();
    if std::env::var("GATEHOUSE_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/console");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join(name), &png).unwrap();
    }
}

/// A row of the key list.
fn row(name: &str) -> String {
    format!("#key-rows tr[data-name=\"{name}\"]")
}

fn state_is(name: &str, state: &str) -> String {
    format!(
        "document.querySelector('{} [data-state=\"{state}\"]')",
        row(name).replace('\'', "\\'")
    )
}

fn activity_has(kind: &str) -> String {
    format!("document.querySelector('#activity li[data-kind=\"{kind}\"]')")
}

async fn manage_a_key(env: Env, screenshots: bool) {
    let boot = bootstrap_with(&env, WORKCLAW).await;
    let server = serve(&env, &[]).await;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();

    // The page and its assets carry the security headers; the page is whole
    // (assets from this origin only, nothing inline).
    for path in [
        "/console",
        "/console/",
        "/console/console.js",
        "/console/console.css",
    ] {
        let response = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            "connect-src 'self'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    }

    let browser = Browser::start(1280, 900).await;
    let page = &browser.client;
    page.goto(&format!("{base}/console")).await.unwrap();
    assert!(
        text(page, "#sign-in-view").await.contains("reloading"),
        "the page says a reload signs out"
    );
    sign_in(page, OWNER, PASSWORD).await;
    until(page, 20, "!document.getElementById('keys-view').hidden").await;
    // The admin key bootstrap made is listed (without its secret).
    until(
        page,
        10,
        "document.querySelectorAll('#key-rows tr').length === 1",
    )
    .await;
    let listed = text(page, "#key-rows").await;
    let admin_secret = boot["secret"].as_str().unwrap();
    assert!(!listed.contains(admin_secret), "a listed secret: {listed}");
    assert!(
        listed.contains(&admin_secret[admin_secret.len() - 4..]),
        "the hint"
    );

    // Create: name, two of WorkClaw's scopes from the catalogue (grouped,
    // with descriptions), Generate; the secret is shown once.
    click(page, "#create-key").await;
    until(page, 5, "document.getElementById('create-dialog').open").await;
    until(page, 5, "document.activeElement.id === 'key-name'").await;
    until(
        page,
        10,
        "document.querySelector('input[value=\"claws:read\"]')",
    )
    .await;
    let catalogue = text(page, "#scope-groups").await;
    assert!(
        catalogue.contains("List and view Claw configurations"),
        "descriptions: {catalogue}"
    );
    let legends = js(
        page,
        "[...document.querySelectorAll('#scope-groups legend')].map(l => l.textContent)",
    )
    .await;
    assert!(
        legends.as_array().unwrap().len() >= 6,
        "grouped by resource: {legends}"
    );
    // Full access warns, as WorkClaw's dashboard does, and holds the other choices.
    click(page, "#full-access").await;
    until(
        page,
        2,
        "!document.getElementById('full-access-warning').hidden",
    )
    .await;
    assert!(
        text(page, "#full-access-warning")
            .await
            .contains("narrower scope")
    );
    until(
        page,
        2,
        "document.querySelector('input[value=\"claws:read\"]').disabled",
    )
    .await;
    click(page, "#full-access").await;
    until(
        page,
        2,
        "document.getElementById('full-access-warning').hidden",
    )
    .await;
    type_into(page, "#key-name", "CI/CD Pipeline").await;
    click(page, "input[value=\"claws:read\"]").await;
    click(page, "input[value=\"deployments:write\"]").await;
    if screenshots {
        screenshot(page, "create-key.png").await;
    }
    click(page, "#generate").await;
    until(page, 10, "document.getElementById('secret-dialog').open").await;
    assert!(
        text(page, "#secret-dialog")
            .await
            .contains("will not be shown again")
    );
    let secret = text(page, "#secret").await;
    assert!(secret.starts_with("wc_live_"), "{secret}");
    click(page, "#copy-secret").await;
    until(
        page,
        5,
        "document.getElementById('copy-status').textContent",
    )
    .await;
    click(page, "#secret-done").await;
    // The secret leaves the page with its dialog.
    until(
        page,
        5,
        "!document.getElementById('secret-dialog').open \
         && document.getElementById('secret').textContent === ''",
    )
    .await;
    // The secret read from the dialog works, with exactly its scopes.
    assert_eq!(
        verify(&http, &base, &secret, &["claws:read", "deployments:write"]).await,
        StatusCode::OK
    );
    assert_eq!(
        verify(&http, &base, &secret, &["team:write"]).await,
        StatusCode::FORBIDDEN
    );
    let name = "CI/CD Pipeline";
    until(page, 10, &state_is(name, "active")).await;
    let scopes = text(page, &format!("{} td[data-label=Scopes]", row(name))).await;
    assert!(
        scopes.contains("claws:read") && scopes.contains("deployments:write"),
        "{scopes}"
    );

    // The activity log, live while open.
    click(page, &format!("{} button.activity", row(name))).await;
    until(page, 10, &activity_has("created")).await;
    let created = text(page, "#activity li[data-kind=created]").await;
    assert!(created.contains("by you"), "{created}");
    until(
        page,
        10,
        "document.getElementById('activity-live').textContent === 'live'",
    )
    .await;

    // Rotate with a short grace: both states, both secrets until the cut-off.
    click(page, &format!("{} button.rotate", row(name))).await;
    until(page, 5, "document.getElementById('rotate-dialog').open").await;
    assert_eq!(
        js(page, "document.getElementById('grace').value").await,
        "86400",
        "24 h by default"
    );
    page.find(Locator::Css("#grace"))
        .await
        .unwrap()
        .select_by_value("custom")
        .await
        .unwrap();
    type_into(page, "#grace-seconds", "15").await;
    assert!(
        text(page, "#rotate-cutoff")
            .await
            .contains("stops working at")
    );
    click(page, "#rotate-confirm").await;
    until(page, 10, "document.getElementById('secret-dialog').open").await;
    let rotated = text(page, "#secret").await;
    assert!(rotated.starts_with("wc_live_") && rotated != secret);
    // Both secrets work until the cut-off, which the dialog shows.
    assert_eq!(
        verify(&http, &base, &secret, &["claws:read"]).await,
        StatusCode::OK
    );
    assert_eq!(
        verify(&http, &base, &rotated, &["claws:read"]).await,
        StatusCode::OK
    );
    until(
        page,
        2,
        "!document.getElementById('secret-previous').hidden",
    )
    .await;
    assert!(
        text(page, "#secret-previous")
            .await
            .contains("keeps working until"),
        "the old secret's cut-off is shown"
    );
    // Escape does not throw away a secret shown only once.
    page.active_element()
        .await
        .unwrap()
        .send_keys(&key(fantoccini::key::Key::Escape))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        js(page, "document.getElementById('secret-dialog').open").await,
        true
    );
    click(page, "#secret-done").await;
    until(page, 10, &state_is(name, "rotating")).await;
    let state = text(page, &format!("{} td.state", row(name))).await;
    assert!(state.contains("rotating until"), "{state}");
    until(page, 10, &activity_has("rotated")).await;
    // The list fits a desktop window with every column.
    until(
        page,
        5,
        "document.documentElement.scrollWidth <= window.innerWidth",
    )
    .await;
    if screenshots {
        screenshot(page, "keys.png").await;
    }
    // After the grace the list shows the key active again, by itself.
    until(page, 40, &state_is(name, "active")).await;
    until(page, 10, &activity_has("grace_expired")).await;
    assert_eq!(
        verify(&http, &base, &secret, &["claws:read"]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        verify(&http, &base, &rotated, &["claws:read"]).await,
        StatusCode::OK
    );
    // The verifier's usage summaries reach the log, and the row.
    until(page, 20, &activity_has("usage")).await;
    let usage = text(page, "#activity li[data-kind=usage]").await;
    assert!(usage.contains("allowed"), "{usage}");

    // Revoke, confirmed: cancelling changes nothing; Escape closes too.
    click(page, &format!("{} button.revoke", row(name))).await;
    until(page, 5, "document.getElementById('revoke-dialog').open").await;
    click(page, "#revoke-dialog .cancel").await;
    until(page, 5, "!document.getElementById('revoke-dialog').open").await;
    click(page, &format!("{} button.revoke", row(name))).await;
    until(page, 5, "document.activeElement.id === 'revoke-reason'").await;
    page.active_element()
        .await
        .unwrap()
        .send_keys(&key(fantoccini::key::Key::Escape))
        .await
        .unwrap();
    until(page, 5, "!document.getElementById('revoke-dialog').open").await;
    assert_eq!(
        verify(&http, &base, &rotated, &["claws:read"]).await,
        StatusCode::OK
    );
    click(page, &format!("{} button.revoke", row(name))).await;
    type_into(page, "#revoke-reason", "leaked in a build log").await;
    click(page, "#revoke-confirm").await;
    until(page, 10, &state_is(name, "revoked")).await;
    until(page, 10, &activity_has("revoked")).await;
    assert!(
        text(page, "#activity")
            .await
            .contains("leaked in a build log"),
        "the reason is in the log"
    );
    assert_eq!(
        verify(&http, &base, &rotated, &["claws:read"]).await,
        StatusCode::UNAUTHORIZED
    );
    let last_used = text(page, &format!("{} td[data-label=\"Last used\"]", row(name))).await;
    assert!(!last_used.contains("never"), "last used: {last_used}");

    // Delete, confirmed: the row goes, the log stays.
    click(page, &format!("{} button.delete", row(name))).await;
    until(page, 5, "document.getElementById('delete-dialog').open").await;
    assert_eq!(
        js(page, "document.activeElement.textContent").await,
        "Cancel",
        "the safe choice has the focus"
    );
    click(page, "#delete-confirm").await;
    until(
        page,
        10,
        &format!(
            "!document.querySelector('{}')",
            row(name).replace('\'', "\\'")
        ),
    )
    .await;
    until(page, 10, &activity_has("deleted")).await;

    // Phone width: nothing runs off the side.
    page.set_window_size(390, 844).await.unwrap();
    until(
        page,
        5,
        "document.documentElement.scrollWidth <= window.innerWidth",
    )
    .await;
    if screenshots {
        screenshot(page, "keys-phone.png").await;
    }

    // Nothing was kept in storage; a reload asks to sign in again.
    assert_eq!(
        js(
            page,
            "localStorage.length + sessionStorage.length + document.cookie.length"
        )
        .await,
        0
    );
    // Nothing went wrong on the way (no script error, nothing the CSP refused).
    assert_eq!(
        js(page, "document.getElementById('banner').hidden").await,
        true,
        "{}",
        text(page, "#banner").await
    );
    page.refresh().await.unwrap();
    until(
        page,
        10,
        "!document.getElementById('sign-in-submit').disabled",
    )
    .await;
    assert_eq!(
        js(page, "document.getElementById('keys-view').hidden").await,
        true
    );
    browser.close().await;
}

async fn errors(env: Env) {
    let boot = bootstrap_with(&env, WORKCLAW).await;
    // Short tokens and a short session, so one expires during the test.
    let server = serve(
        &env,
        &[
            "--access-token-ttl-secs",
            "3",
            "--clock-leeway-secs",
            "0",
            "--session-max-lifetime-secs",
            "20",
        ],
    )
    .await;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let account = boot["account_id"].as_str().unwrap();
    let admin = boot["secret"].as_str().unwrap();
    // A user who may read keys but not create them.
    let reader = "reader@example.com";
    let reader_password = "quiet lantern orbit 7 meadow";
    let created = http
        .post(format!("{base}/api/v1/accounts/{account}/users"))
        .bearer_auth(admin)
        .json(&json!({ "username": reader, "password": reader_password, "scopes": ["keys:read"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        created.status(),
        StatusCode::CREATED,
        "{:?}",
        created.text().await
    );

    let browser = Browser::start(1280, 900).await;
    let page = &browser.client;
    page.goto(&format!("{base}/console")).await.unwrap();

    // A wrong password: the API's message, in the form.
    let refused = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({ "username": reader, "password": "not the password at all" }))
        .send()
        .await
        .unwrap();
    // Answers that may carry tokens are never cached.
    assert_eq!(refused.headers()["cache-control"], "no-store");
    let refused: Value = refused.json().await.unwrap();
    sign_in(page, reader, "not the password at all either").await;
    until(page, 10, "!document.getElementById('sign-in-error').hidden").await;
    assert_eq!(
        text(page, "#sign-in-error").await,
        refused["message"].as_str().unwrap()
    );
    assert_eq!(
        js(page, "document.getElementById('keys-view').hidden").await,
        true
    );

    // A missing scope: 403's message in the dialog, nothing created.
    type_into(page, "#password", reader_password).await;
    click(page, "#sign-in-submit").await;
    until(page, 20, "!document.getElementById('keys-view').hidden").await;
    until(
        page,
        10,
        "document.querySelectorAll('#key-rows tr').length === 1",
    )
    .await;
    click(page, "#create-key").await;
    until(
        page,
        10,
        "document.querySelector('input[value=\"claws:read\"]')",
    )
    .await;
    type_into(page, "#key-name", "not allowed").await;
    click(page, "input[value=\"claws:read\"]").await;
    click(page, "#generate").await;
    until(page, 10, "!document.getElementById('create-error').hidden").await;
    let message = text(page, "#create-error").await;
    assert!(message.contains("keys:write"), "{message}");
    assert_eq!(
        js(page, "document.getElementById('secret-dialog').open").await,
        false
    );
    click(page, "#create-dialog .cancel").await;
    assert_eq!(
        js(page, "document.querySelectorAll('#key-rows tr').length").await,
        1
    );

    // Sign out: the page forgets the session and says so.
    click(page, "#sign-out").await;
    until(page, 10, "!document.getElementById('sign-in-view').hidden").await;
    assert_eq!(text(page, "#sign-in-error").await, "You have signed out.");
    assert_eq!(
        js(page, "document.querySelectorAll('#key-rows tr').length").await,
        0
    );
    // Sign in again, and let that session run out.
    type_into(page, "#username", reader).await;
    type_into(page, "#password", reader_password).await;
    click(page, "#sign-in-submit").await;
    until(page, 20, "!document.getElementById('keys-view').hidden").await;

    // The session runs out (20 s after sign-in; the console renews the
    // 3-second access tokens until then): the page says so and asks to sign
    // in again, showing nothing of the account.
    until(page, 40, "!document.getElementById('sign-in-view').hidden").await;
    assert_eq!(
        text(page, "#sign-in-error").await,
        "Your session has expired. Sign in again."
    );
    assert_eq!(
        js(page, "document.querySelectorAll('#key-rows tr').length").await,
        0
    );
    assert_eq!(
        js(page, "document.getElementById('banner').hidden").await,
        true
    );
    browser.close().await;
}
