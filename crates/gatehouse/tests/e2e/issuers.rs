//! Two issuers behind one load balancer: every SDK exchange one of them
//! answers from its index agrees with what the log says after a change
//! made on the other — create, rotate (inside and after the grace),
//! revoke, delete, expiry, and a scope retired — and so does every
//! refresh, which each issuer decides from its sessions' heads: right
//! after a login or a rotation on the other, and a token spent on the
//! other is reuse. Reasons are asserted, so agreement cannot be vacuous.

use std::time::{Duration, Instant};

use gatehouse_api::v1 as pb;
use gatehouse_api::v1::auth_service_client::AuthServiceClient;
use gatehouse_api::v1::key_service_client::KeyServiceClient;
use gatehouse_api::v1::scope_service_client::ScopeServiceClient;
use gatehouse_domain::clock::Clock as _;
use gatehouse_testkit::App;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::support::{
    Env, KeyAdmin, ONE_ISS, PASSWORD, WORKCLAW, authed, bootstrap_with, exchange_sdk_token, login,
    postgres, reason, refresh, server, sqlite,
};

/// Changes go to `writer`, exchanges to `reader`: two issuers on one log.
struct Pair {
    _writer: App,
    _reader: App,
    /// The writer's key administration.
    keys: KeyAdmin,
    scopes: ScopeServiceClient<Channel>,
    auth: AuthServiceClient<Channel>,
    /// The reader's admin API, for its authentication of a bearer.
    reader_keys: KeyServiceClient<Channel>,
    writer_auth: AuthServiceClient<Channel>,
}

impl Pair {
    async fn new(env: &Env) -> Self {
        let boot = bootstrap_with(env, WORKCLAW).await;
        let writer = server(env, "issuer", &[], &[ONE_ISS]).await;
        let reader = server(env, "issuer", &[], &[ONE_ISS]).await;
        Self {
            keys: KeyAdmin::new(writer.channel().await, &boot),
            scopes: ScopeServiceClient::new(writer.channel().await),
            auth: AuthServiceClient::new(reader.channel().await),
            reader_keys: KeyServiceClient::new(reader.channel().await),
            writer_auth: AuthServiceClient::new(writer.channel().await),
            _writer: writer,
            _reader: reader,
        }
    }

    /// The reader's exchange: the token's scopes, or the refusal.
    async fn exchange(&mut self, key_id: &str, secret: &str) -> Result<String, Status> {
        let token =
            exchange_sdk_token(&mut self.auth, &self.keys.account_id, key_id, secret).await?;
        assert_eq!(token.expires_in, 3600);
        Ok(scopes_of(&token.access_token))
    }

    /// An SDK token minted by the writer.
    async fn writer_exchange(&mut self, key_id: &str, secret: &str) -> String {
        exchange_sdk_token(&mut self.writer_auth, &self.keys.account_id, key_id, secret)
            .await
            .unwrap()
            .access_token
    }

    /// An admin call on the reader with `bearer` (a key's secret or an SDK
    /// token): authenticated, or the refusal's reason.
    async fn admin_auth(&mut self, bearer: &str) -> Result<(), String> {
        let listed = self
            .reader_keys
            .list_api_keys(authed(
                pb::ListApiKeysRequest {
                    account_id: self.keys.account_id.clone(),
                    page_size: 1,
                    ..Default::default()
                },
                bearer,
            ))
            .await;
        match listed {
            Ok(_) => Ok(()),
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
                Err(reason(&status))
            }
        }
    }

    /// The reader's exchange once the tail has brought the writer's change
    /// (another issuer's append arrives by `LISTEN` or the poll): the first
    /// answer that is not `granted`.
    async fn exchange_after(
        &mut self,
        key_id: &str,
        secret: &str,
        granted: Option<&str>,
    ) -> Result<String, Status> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = self.exchange(key_id, secret).await;
            let same = match (&answer, granted) {
                (Ok(scopes), Some(before)) => scopes == before,
                (Ok(_), None) => true,
                (Err(_), _) => false,
            };
            if !same || Instant::now() > deadline {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The `scope` claim of a token (its payload, not verified: the verifier's
/// own tests check signatures).
fn scopes_of(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    claims["scope"].as_str().unwrap().to_string()
}

fn refused(answer: Result<String, Status>, what: &str) {
    let status = answer.expect_err(what);
    assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
    assert_eq!(reason(&status), "INVALID_KEY_CREDENTIALS", "{what}");
}

async fn the_other_issuers_changes_decide_the_exchange(env: Env) {
    let mut pair = Pair::new(&env).await;

    // Created on the writer, exchanged and authenticated on the reader at
    // once (one catch-up).
    let (key_id, first) = pair
        .keys
        .create(
            "exchanged elsewhere",
            &["claws:read", "claws:write", "keys:read"],
            None,
        )
        .await;
    assert_eq!(
        pair.exchange(&key_id, &first).await.unwrap(),
        "claws:read claws:write keys:read"
    );
    pair.admin_auth(&first).await.expect("a key's secret");

    // Rotated with an hour's grace: the new secret at once, the old one too,
    // and an SDK token of the new secret minted on the writer is taken by
    // the reader's admin API (a secret newer than its index: catch up).
    let second = pair.keys.rotate(&key_id, Duration::from_secs(3600)).await;
    let token = pair.writer_exchange(&key_id, &second).await;
    pair.admin_auth(&token)
        .await
        .expect("an SDK token of the new secret");
    pair.exchange(&key_id, &second)
        .await
        .expect("the new secret");
    pair.exchange(&key_id, &first)
        .await
        .expect("the old secret in its grace");
    // After the grace, only the new one (decided on the reader's clock).
    env.advance(Duration::from_secs(3600));
    refused(
        pair.exchange(&key_id, &first).await,
        "the old secret after its grace",
    );
    assert_eq!(pair.admin_auth(&first).await, Err("KEY_ROTATED".into()));
    pair.exchange(&key_id, &second)
        .await
        .expect("the new secret after the grace");

    // Rotated with no grace: the old secret is refused as soon as the
    // reader's tail has the rotation.
    let third = pair.keys.rotate(&key_id, Duration::ZERO).await;
    refused(
        pair.exchange_after(&key_id, &second, None).await,
        "a secret rotated away without grace",
    );
    assert_eq!(pair.admin_auth(&second).await, Err("KEY_ROTATED".into()));

    // A scope retired on the writer is left out of the reader's next token.
    pair.scopes
        .retire_scope(authed(
            pb::RetireScopeRequest {
                name: "claws:write".into(),
            },
            &pair.keys.secret,
        ))
        .await
        .unwrap();
    let scopes = pair
        .exchange_after(&key_id, &third, Some("claws:read claws:write keys:read"))
        .await
        .unwrap();
    assert_eq!(
        scopes, "claws:read keys:read",
        "the retired scope is no longer granted"
    );

    // Revoked on the writer: refused by the reader's exchange and admin API.
    pair.keys.revoke(&key_id, "done").await;
    refused(
        pair.exchange_after(&key_id, &third, None).await,
        "a key revoked on the other issuer",
    );
    assert_eq!(pair.admin_auth(&third).await, Err("KEY_REVOKED".into()));
    // Deleted after it: still refused, for the same reason.
    pair.keys.delete(&key_id, "gone").await;
    refused(pair.exchange(&key_id, &third).await, "a deleted key");
    assert_eq!(pair.admin_auth(&third).await, Err("KEY_REVOKED".into()));

    // A key with an expiry: exchanged until then, refused from it on.
    let now = env.clock.now();
    let expires = now + chrono::Duration::hours(2);
    let (expiring, secret) = pair
        .keys
        .create("exchanged elsewhere", &["keys:read"], Some(expires))
        .await;
    assert_eq!(
        pair.exchange(&expiring, &secret).await.unwrap(),
        "keys:read"
    );
    pair.admin_auth(&secret).await.expect("before its expiry");
    env.advance(Duration::from_secs(2 * 3600));
    refused(pair.exchange(&expiring, &secret).await, "an expired key");
    assert_eq!(pair.admin_auth(&secret).await, Err("KEY_EXPIRED".into()));

    // Another key's secret: refused after the one catch-up, never granted.
    refused(
        pair.exchange(&expiring, &first).await,
        "another key's secret",
    );
}

#[tokio::test]
async fn the_other_issuers_changes_decide_the_exchange_on_postgres() {
    the_other_issuers_changes_decide_the_exchange(postgres().await).await;
}

#[tokio::test]
async fn the_other_issuers_changes_decide_the_exchange_on_sqlite() {
    the_other_issuers_changes_decide_the_exchange(sqlite()).await;
}

fn refresh_refused(answer: Result<pb::RefreshResponse, Status>, expected: &str, what: &str) {
    let status = answer.expect_err(what);
    assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
    assert_eq!(reason(&status), expected, "{what}");
}

async fn refreshes_agree_across_issuers(env: Env) {
    let mut pair = Pair::new(&env).await;
    let (writer, reader) = (&mut pair.writer_auth, &mut pair.auth);

    // Logged in on one, refreshed on the other at once (no head there yet:
    // its stream is read), then back and forth: each issuer's head is
    // behind the other's rotation, and the current token is still taken.
    let mut token = login(writer, PASSWORD).await.unwrap().refresh_token;
    let mut spent = Vec::new();
    for round in 0..4 {
        let on = if round % 2 == 0 {
            &mut *reader
        } else {
            &mut *writer
        };
        let pair = refresh(on, &token)
            .await
            .unwrap_or_else(|s| panic!("refresh {round}: {s:?}"));
        assert!(!pair.access_token.is_empty());
        spent.push(std::mem::replace(&mut token, pair.refresh_token));
        // And once more on the same issuer (its own head, from memory).
        let again = refresh(on, &token).await.unwrap();
        spent.push(std::mem::replace(&mut token, again.refresh_token));
    }

    // A token spent on the writer, presented to the reader: reuse, and the
    // whole family is revoked on both.
    refresh_refused(
        refresh(reader, &spent[7]).await,
        "REFRESH_TOKEN_REUSED",
        "a token spent on the other issuer",
    );
    refresh_refused(
        refresh(writer, &token).await,
        "SESSION_REVOKED",
        "the family's newest token on the issuer that did not see the reuse",
    );
    refresh_refused(
        refresh(reader, &token).await,
        "SESSION_REVOKED",
        "and on the one that did",
    );

    // A second session, rotated on the reader, spent again on the writer.
    let first = login(reader, PASSWORD).await.unwrap().refresh_token;
    let second = refresh(reader, &first).await.unwrap().refresh_token;
    refresh_refused(
        refresh(writer, &first).await,
        "REFRESH_TOKEN_REUSED",
        "spent on the reader a moment ago",
    );
    refresh_refused(
        refresh(reader, &second).await,
        "SESSION_REVOKED",
        "the reader's own head is behind the writer's revocation",
    );
}

#[tokio::test]
async fn refreshes_agree_across_issuers_on_postgres() {
    refreshes_agree_across_issuers(postgres().await).await;
}

#[tokio::test]
async fn refreshes_agree_across_issuers_on_sqlite() {
    refreshes_agree_across_issuers(sqlite()).await;
}
