//! A verifier started from a snapshot answers exactly like one that replayed
//! the whole log: the same accepts and the same refusals, with the same
//! reasons — including grace periods and expiries that ran out while no
//! verifier was running, and changes appended after the snapshot.

use std::time::{Duration, Instant};

use gatehouse_api::v1 as pb;
use gatehouse_api::v1::auth_service_client::AuthServiceClient;
use gatehouse_api::v1::verifier_service_client::VerifierServiceClient;
use gatehouse_testkit::App;
use tonic::transport::Channel;

use crate::support::{
    Env, KeyAdmin, ONE_ISS, OWNER, PASSWORD, bootstrap, exchange_sdk_token, postgres, reason,
    server, sqlite,
};

/// Graces and expiries that fall due while the verifiers are down.
const SHORT: Duration = Duration::from_secs(6);

async fn spawn(env: &Env, role: &str, extra: &[&str]) -> App {
    server(env, role, extra, &[ONE_ISS]).await
}

struct Admin {
    keys: KeyAdmin,
    auth: AuthServiceClient<Channel>,
}

impl Admin {
    async fn create(&mut self, scopes: &[&str], expires_in: Option<Duration>) -> (String, String) {
        let expires_at =
            expires_in.map(|d| chrono::Utc::now() + chrono::Duration::from_std(d).unwrap());
        self.keys.create("snapshot test", scopes, expires_at).await
    }

    async fn rotate(&mut self, key_id: &str, grace: Duration) -> String {
        self.keys.rotate(key_id, grace).await
    }

    async fn revoke(&mut self, key_id: &str) {
        self.keys.revoke(key_id, "snapshot test").await
    }

    async fn delete(&mut self, key_id: &str) {
        self.keys.delete(key_id, "snapshot test").await
    }

    async fn sdk_token(&mut self, key_id: &str, secret: &str) -> String {
        exchange_sdk_token(&mut self.auth, &self.keys.account_id, key_id, secret)
            .await
            .unwrap()
            .access_token
    }

    /// A login: (access token, refresh token).
    async fn login(&mut self) -> (String, String) {
        let login = self
            .auth
            .login(pb::LoginRequest {
                username: OWNER.into(),
                password: PASSWORD.into(),
            })
            .await
            .unwrap()
            .into_inner();
        (login.access_token, login.refresh_token)
    }

    async fn logout(&mut self, refresh_token: &str) {
        self.auth
            .logout(pb::LogoutRequest {
                refresh_token: refresh_token.into(),
            })
            .await
            .unwrap();
    }
}

/// What a caller sees: the principal, or the refusal's code and reason.
async fn answer(
    client: &mut VerifierServiceClient<Channel>,
    credential: &str,
    scopes: &[&str],
) -> Result<pb::Principal, (tonic::Code, String)> {
    client
        .verify(pb::VerifyRequest {
            credential: credential.into(),
            required_scopes: scopes.iter().map(|s| s.to_string()).collect(),
            audience: String::new(),
        })
        .await
        .map(|r| r.into_inner().principal.unwrap())
        .map_err(|status| (status.code(), reason(&status)))
}

async fn a_verifier_started_from_a_snapshot_answers_like_one_that_replayed_everything(env: Env) {
    let boot = bootstrap(&env).await;
    let issuer = spawn(&env, "issuer", &[]).await;
    let channel = issuer.channel().await;
    let mut admin = Admin {
        keys: KeyAdmin::new(channel.clone(), &boot),
        auth: AuthServiceClient::new(channel),
    };
    // Before the snapshot: every state a key can be in, and sessions.
    let (active_id, active) = admin.create(&["keys:read"], None).await;
    let (_, expiring) = admin
        .create(&["keys:read", "keys:write"], Some(SHORT))
        .await;
    let (rotating_id, rotating_old) = admin.create(&["keys:read"], None).await;
    let rotating_old_token = admin.sdk_token(&rotating_id, &rotating_old).await;
    let rotating_new = admin.rotate(&rotating_id, SHORT).await;
    let (compromised_id, compromised_old) = admin.create(&["keys:read"], None).await;
    let compromised_new = admin.rotate(&compromised_id, Duration::ZERO).await;
    let (revoked_id, revoked) = admin.create(&["keys:read"], None).await;
    admin.revoke(&revoked_id).await;
    let (deleted_id, deleted) = admin.create(&["keys:read"], None).await;
    admin.delete(&deleted_id).await;
    let (revoked_later_id, revoked_later) = admin.create(&["keys:read"], None).await;
    let active_token = admin.sdk_token(&active_id, &active).await;
    let (session_kept, _) = admin.login().await;
    let (session_ended, ended_refresh) = admin.login().await;
    admin.logout(&ended_refresh).await;
    let (session_ended_later, ended_later_refresh) = admin.login().await;

    // A verifier that writes a snapshot as soon as it has loaded.
    let writer = spawn(&env, "verifier", &["--snapshot-every-events", "1"]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !writer.logs().contains("verifier index snapshot") {
        assert!(Instant::now() < deadline, "no snapshot: {}", writer.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(writer.logs().contains("stored=true"), "{}", writer.logs());
    writer.stop().await.expect("stops");

    // After the snapshot: changes only the log holds.
    admin.revoke(&revoked_later_id).await;
    admin.logout(&ended_later_refresh).await;
    let (late_id, late) = admin.create(&["keys:write"], None).await;
    let late_token = admin.sdk_token(&late_id, &late).await;
    // Let the short grace and expiry run out while no verifier runs.
    env.advance(SHORT + Duration::from_secs(1));

    let from_snapshot = spawn(&env, "verifier", &["--snapshot-every-events", "0"]).await;
    let replayed = spawn(
        &env,
        "verifier",
        &["--snapshot-every-events", "0", "--ignore-snapshot"],
    )
    .await;
    assert!(
        from_snapshot
            .logs()
            .contains("verifier index snapshot loaded"),
        "{}",
        from_snapshot.logs()
    );
    assert!(!replayed.logs().contains("snapshot loaded"));
    let mut a = VerifierServiceClient::new(from_snapshot.channel().await);
    let mut b = VerifierServiceClient::new(replayed.channel().await);
    let unknown = {
        let format = gatehouse_domain::secret::KeyFormat::new("wc", "live").unwrap();
        format.api_key_secret(&[7; 24])
    };
    let credentials: Vec<(&str, &str)> = vec![
        ("admin key", &admin.keys.secret),
        ("active key", &active),
        ("expired while down", &expiring),
        ("old secret, grace over while down", &rotating_old),
        ("new secret", &rotating_new),
        ("its old secret's SDK token", &rotating_old_token),
        ("secret rotated with no grace", &compromised_old),
        ("its replacement", &compromised_new),
        ("revoked key", &revoked),
        ("deleted key", &deleted),
        ("revoked after the snapshot", &revoked_later),
        ("created after the snapshot", &late),
        ("its SDK token", &late_token),
        ("active key's SDK token", &active_token),
        ("live session", &session_kept),
        ("logged out before the snapshot", &session_ended),
        ("logged out after the snapshot", &session_ended_later),
        ("unknown key", &unknown),
    ];
    let mut table = Vec::new();
    for (what, credential) in &credentials {
        for scopes in [&[][..], &["keys:read"], &["keys:write"]] {
            let one = answer(&mut a, credential, scopes).await;
            let other = answer(&mut b, credential, scopes).await;
            assert_eq!(one, other, "{what} with {scopes:?}");
            table.push((*what, scopes, one.map(|p| p.scopes).map_err(|(_, r)| r)));
        }
    }
    // The agreement is about real decisions, of every kind.
    let reason_of = |what: &str| {
        table
            .iter()
            .find(|(w, s, _)| *w == what && s.is_empty())
            .map(|(_, _, r)| r.clone())
            .unwrap()
    };
    for (what, expected) in [
        ("expired while down", "KEY_EXPIRED"),
        ("old secret, grace over while down", "KEY_ROTATED"),
        ("its old secret's SDK token", "KEY_ROTATED"),
        ("secret rotated with no grace", "KEY_ROTATED"),
        ("revoked key", "KEY_REVOKED"),
        ("deleted key", "KEY_REVOKED"),
        ("revoked after the snapshot", "KEY_REVOKED"),
        ("logged out before the snapshot", "SESSION_REVOKED"),
        ("logged out after the snapshot", "SESSION_REVOKED"),
        ("unknown key", "KEY_UNKNOWN"),
    ] {
        assert_eq!(reason_of(what), Err(expected.to_string()), "{what}");
    }
    for what in [
        "admin key",
        "active key",
        "new secret",
        "its replacement",
        "created after the snapshot",
        "its SDK token",
        "active key's SDK token",
        "live session",
    ] {
        assert!(reason_of(what).is_ok(), "{what}: {:?}", reason_of(what));
    }
    assert!(
        table
            .iter()
            .any(|(w, s, r)| *w == "active key" && *s == ["keys:write"] && r.is_err()),
        "a missing scope is refused"
    );
}

#[tokio::test]
async fn a_verifier_started_from_a_snapshot_answers_like_one_that_replayed_everything_on_sqlite() {
    a_verifier_started_from_a_snapshot_answers_like_one_that_replayed_everything(sqlite()).await;
}

#[tokio::test]
async fn a_verifier_started_from_a_snapshot_answers_like_one_that_replayed_everything_on_postgres()
{
    a_verifier_started_from_a_snapshot_answers_like_one_that_replayed_everything(postgres().await)
        .await;
}
