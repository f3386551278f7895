//! The scope catalogue end to end, on SQLite and Postgres: the README's first
//! steps (bootstrap with the WorkClaw catalogue, a `claws:read` key that
//! verifies), define/list/retire/import, wildcard keys, the grant rule's
//! statuses and reasons, revocation and deletion rights, and key deletion —
//! through the real binary, its CLI and real gRPC clients. Every refused
//! call is checked to write nothing.

use std::time::{Duration, Instant};

use gatehouse_api::v1 as pb;
use gatehouse_api::v1::account_service_client::AccountServiceClient;
use gatehouse_api::v1::audit_service_client::AuditServiceClient;
use gatehouse_api::v1::auth_service_client::AuthServiceClient;
use gatehouse_api::v1::key_service_client::KeyServiceClient;
use gatehouse_api::v1::scope_service_client::ScopeServiceClient;
use gatehouse_api::v1::verifier_service_client::VerifierServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::audit::activity;
use crate::authed;
use crate::cli::admin;
use crate::issuer::serve;
use crate::support::{
    Env, OWNER, PASSWORD, WORKCLAW, bootstrap_with, event_log_text, postgres, reason, sqlite,
};

#[tokio::test]
async fn the_catalogue_wildcards_grant_rules_and_delete_on_sqlite() {
    catalogue_flow(sqlite()).await;
}

#[tokio::test]
async fn the_catalogue_wildcards_grant_rules_and_delete_on_postgres() {
    catalogue_flow(postgres().await).await;
}

struct Clients {
    keys: KeyServiceClient<Channel>,
    scopes: ScopeServiceClient<Channel>,
    verifier: VerifierServiceClient<Channel>,
    account_id: String,
}

impl Clients {
    async fn create(&mut self, bearer: &str, scopes: &[&str]) -> Result<(String, String), Status> {
        let created = self
            .keys
            .create_api_key(authed(
                pb::CreateApiKeyRequest {
                    account_id: self.account_id.clone(),
                    name: format!("key with {}", scopes.join(" ")),
                    scopes: scopes.iter().map(|s| s.to_string()).collect(),
                    expires_at: None,
                },
                bearer,
            ))
            .await?
            .into_inner();
        Ok((created.key.unwrap().key_id, created.secret))
    }

    async fn verify(
        &mut self,
        credential: &str,
        required: &[&str],
    ) -> Result<pb::Principal, Status> {
        self.verifier
            .verify(pb::VerifyRequest {
                credential: credential.into(),
                required_scopes: required.iter().map(|s| s.to_string()).collect(),
                audience: String::new(),
            })
            .await
            .map(|r| r.into_inner().principal.unwrap())
    }

    async fn revoke(&mut self, bearer: &str, key_id: &str) -> Result<pb::ApiKey, Status> {
        self.keys
            .revoke_api_key(authed(
                pb::RevokeApiKeyRequest {
                    account_id: self.account_id.clone(),
                    key_id: key_id.into(),
                    reason: "test".into(),
                },
                bearer,
            ))
            .await
            .map(|r| r.into_inner().key.unwrap())
    }

    async fn delete(&mut self, bearer: &str, key_id: &str) -> Result<(), Status> {
        self.keys
            .delete_api_key(authed(
                pb::DeleteApiKeyRequest {
                    account_id: self.account_id.clone(),
                    key_id: key_id.into(),
                    reason: "no longer needed".into(),
                },
                bearer,
            ))
            .await
            .map(|_| ())
    }

    async fn get(&mut self, bearer: &str, key_id: &str) -> Result<pb::ApiKey, Status> {
        self.keys
            .get_api_key(authed(
                pb::GetApiKeyRequest {
                    account_id: self.account_id.clone(),
                    key_id: key_id.into(),
                },
                bearer,
            ))
            .await
            .map(|r| r.into_inner().key.unwrap())
    }

    async fn list(&mut self, bearer: &str, include_deleted: bool) -> Vec<pb::ApiKey> {
        self.keys
            .list_api_keys(authed(
                pb::ListApiKeysRequest {
                    account_id: self.account_id.clone(),
                    page_size: 500,
                    include_deleted,
                    ..Default::default()
                },
                bearer,
            ))
            .await
            .unwrap()
            .into_inner()
            .keys
    }
}

/// Asserts `status` has `code` and `reason`, and that its message names each of `names`.
fn assert_refused(status: &Status, code: Code, why: &str, names: &[&str]) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason(status), why, "{status:?}");
    for name in names {
        assert!(
            status.message().contains(name),
            "{:?} should name {name}",
            status.message()
        );
    }
}

/// Verifies until the running verifier refuses `scope` (it learns of a
/// catalogue change from the log within its poll interval); at most 5 s.
async fn until_denied(c: &mut Clients, credential: &str, scope: &str) -> Status {
    let started = Instant::now();
    loop {
        match c.verify(credential, &[scope]).await {
            Err(status) => return status,
            Ok(_) if started.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(_) => panic!("the verifier still grants {scope} after 5 s"),
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn claims(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

async fn catalogue_flow(env: Env) {
    // The README's first steps: bootstrap with the WorkClaw catalogue, then a
    // key with claws:read + deployments:write through the CLI.
    let boot = bootstrap_with(&env, WORKCLAW).await;
    let account_id = boot["account_id"].as_str().unwrap().to_string();
    let admin_secret = boot["secret"].as_str().unwrap().to_string();
    let admin_key = boot["key_id"].as_str().unwrap().to_string();
    let server = serve(&env).await;
    let addr = server.addr.to_string();
    let created = admin(
        &addr,
        Some(&admin_secret),
        &["keys", "create", "--name", "ci", "--json"],
        &[("GATEHOUSE_ACCOUNT", &account_id)],
    )
    .await;
    assert_eq!(
        created.status.code(),
        Some(2),
        "--scope is required: {}",
        text(&created.stderr)
    );
    let created = admin(
        &addr,
        Some(&admin_secret),
        &[
            "keys",
            "create",
            "--name",
            "ci",
            "--scope",
            "claws:read",
            "--scope",
            "deployments:write",
            "--json",
        ],
        &[("GATEHOUSE_ACCOUNT", &account_id)],
    )
    .await;
    assert!(created.status.success(), "{}", text(&created.stderr));
    let ci: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    let ci_secret = ci["secret"].as_str().unwrap().to_string();
    let verified = admin(
        &addr,
        Some(&ci_secret),
        &[
            "verify",
            "--scope",
            "claws:read",
            "--scope",
            "deployments:write",
            "--json",
        ],
        &[],
    )
    .await;
    assert!(verified.status.success(), "{}", text(&verified.stderr));
    let principal: serde_json::Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(principal["kind"], "api_key");
    assert_eq!(
        principal["scopes"],
        serde_json::json!(["claws:read", "deployments:write"])
    );
    let denied = admin(
        &addr,
        Some(&ci_secret),
        &["verify", "--scope", "team:write"],
        &[],
    )
    .await;
    assert_eq!(denied.status.code(), Some(4), "{}", text(&denied.stderr));
    assert!(
        text(&denied.stderr).contains("team:write")
            && text(&denied.stderr).contains("INSUFFICIENT_SCOPE"),
        "{}",
        text(&denied.stderr)
    );

    // The catalogue lists the built-ins and the ten WorkClaw scopes.
    let listed = admin(&addr, Some(&ci_secret), &["scopes", "list", "--json"], &[]).await;
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.iter().filter(|s| s["built_in"] == true).count(), 5);
    let claws_read = listed.iter().find(|s| s["name"] == "claws:read").unwrap();
    assert_eq!(
        claws_read["description"],
        "List and view Claw configurations"
    );
    assert_eq!(listed.len(), 15);
    let table = admin(&addr, Some(&ci_secret), &["scopes", "list"], &[]).await;
    assert!(text(&table.stdout).starts_with("SCOPE"));
    assert!(text(&table.stdout).contains("Trigger deployments and rollbacks"));

    // A second import of the same file writes nothing; only platform:admin imports.
    let before = event_log_text(&env).await;
    let again = admin(
        &addr,
        Some(&admin_secret),
        &["scopes", "import", WORKCLAW, "--json"],
        &[],
    )
    .await;
    assert!(again.status.success(), "{}", text(&again.stderr));
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        again,
        serde_json::json!({"defined": [], "described": [], "retired": []})
    );
    let refused = admin(
        &addr,
        Some(&ci_secret),
        &["scopes", "import", WORKCLAW],
        &[],
    )
    .await;
    assert_eq!(refused.status.code(), Some(4), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("platform:admin"));
    let garbled = admin(
        &addr,
        Some(&admin_secret),
        &[
            "keys",
            "create",
            "--account",
            &account_id,
            "--name",
            "x",
            "--scope",
            "Claws:Read",
        ],
        &[],
    )
    .await;
    assert_eq!(garbled.status.code(), Some(6));
    assert!(
        text(&garbled.stderr).contains("\"Claws:Read\" must look like resource:action"),
        "says which scope and why: {}",
        text(&garbled.stderr)
    );
    assert_eq!(event_log_text(&env).await, before, "nothing written");

    let channel = server.channel().await;
    let mut c = Clients {
        keys: KeyServiceClient::new(channel.clone()),
        scopes: ScopeServiceClient::new(channel.clone()),
        verifier: VerifierServiceClient::new(channel.clone()),
        account_id: account_id.clone(),
    };

    // An owner holds a scope defined after it logged in.
    let mut auth = AuthServiceClient::new(channel.clone());
    let owner = auth
        .login(pb::LoginRequest {
            username: OWNER.into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let owner_token = owner.access_token;
    assert!(
        claims(&owner_token)["scope"]
            .as_str()
            .unwrap()
            .contains("team:write")
    );
    let defined = c
        .scopes
        .define_scope(authed(
            pb::DefineScopeRequest {
                name: "reports:read".into(),
                description: "Read usage reports".into(),
            },
            &admin_secret,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(defined.changed);
    let (reports_key, _) = c
        .create(&owner_token, &["reports:read"])
        .await
        .expect("the owner holds a scope defined after its login");
    assert_eq!(
        c.get(&owner_token, &reports_key).await.unwrap().scopes,
        ["reports:read"]
    );

    // Wildcard keys: claws:* reaches the Claw scopes only, * every account
    // scope but never platform:admin.
    let (claws_key, claws_secret) = c.create(&admin_secret, &["claws:*"]).await.unwrap();
    let (all_key, all_secret) = c.create(&owner_token, &["*"]).await.unwrap();
    let (claws_write_key, _) = c
        .create(&admin_secret, &["claws:write", "team:read"])
        .await
        .unwrap();
    let p = c
        .verify(&claws_secret, &["claws:read", "claws:write"])
        .await
        .unwrap();
    assert_eq!(
        p.scopes,
        ["claws:read", "claws:write"],
        "resolved, concrete"
    );
    let status = c.verify(&claws_secret, &["team:read"]).await.unwrap_err();
    assert_refused(
        &status,
        Code::PermissionDenied,
        "INSUFFICIENT_SCOPE",
        &["team:read"],
    );
    let p = c
        .verify(&all_secret, &["team:write", "keys:write", "reports:read"])
        .await
        .unwrap();
    assert!(p.scopes.len() >= 15 && !p.scopes.iter().any(|s| s.contains('*')));
    let status = c
        .verify(&all_secret, &["platform:admin"])
        .await
        .unwrap_err();
    assert_refused(
        &status,
        Code::PermissionDenied,
        "INSUFFICIENT_SCOPE",
        &["platform:admin"],
    );
    for wildcard in ["claws:*", "*", "Claws"] {
        let status = c.verify(&all_secret, &[wildcard]).await.unwrap_err();
        assert_refused(&status, Code::InvalidArgument, "INVALID_SCOPE", &[wildcard]);
    }

    // An SDK token of a wildcard key carries the concrete list.
    let sdk = auth
        .exchange_sdk_token(pb::ExchangeSdkTokenRequest {
            account_id: account_id.clone(),
            key_id: claws_key.clone(),
            key_secret: claws_secret.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(claims(&sdk.access_token)["scope"], "claws:read claws:write");

    // A user holding users:write and claws:* (stored as written, resolved in
    // its token) may grant users only what it holds.
    let mut accounts = AccountServiceClient::new(channel.clone());
    let lead = accounts
        .create_user(authed(
            pb::CreateUserRequest {
                account_id: account_id.clone(),
                username: "lead@example.com".into(),
                password: "a long enough password".into(),
                scopes: vec!["users:write".into(), "claws:*".into()],
            },
            &owner_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(lead.scopes, ["claws:*", "users:write"], "stored as written");
    let lead = auth
        .login(pb::LoginRequest {
            username: "lead@example.com".into(),
            password: "a long enough password".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        lead.account.unwrap().scopes,
        ["claws:read", "claws:write", "users:write"],
        "resolved"
    );

    // The grant rule, through a narrow key and the lead: unknown, retired,
    // lacking — each named, each writing nothing.
    let (narrow_key, narrow) = c
        .create(&admin_secret, &["keys:write", "claws:read"])
        .await
        .unwrap();
    let before = event_log_text(&env).await;
    let status = c
        .create(&narrow, &["nope:read", "zzz:*", "claws:read"])
        .await
        .unwrap_err();
    assert_refused(
        &status,
        Code::InvalidArgument,
        "SCOPE_UNKNOWN",
        &["nope:read", "zzz:*"],
    );
    let status = c
        .create(&narrow, &["claws:write", "team:read", "claws:read"])
        .await
        .unwrap_err();
    assert_refused(
        &status,
        Code::PermissionDenied,
        "CANNOT_GRANT",
        &["claws:write", "team:read"],
    );
    assert!(!status.message().contains("claws:read"), "{status:?}");
    let status = c.create(&narrow, &["claws:*"]).await.unwrap_err();
    assert_refused(
        &status,
        Code::PermissionDenied,
        "CANNOT_GRANT",
        &["claws:*"],
    );
    // A narrow key can neither revoke nor delete a stronger key, nor rotate one.
    let status = c.revoke(&narrow, &admin_key).await.unwrap_err();
    assert_refused(
        &status,
        Code::PermissionDenied,
        "CANNOT_GRANT",
        &["*", "platform:admin"],
    );
    let status = c.delete(&narrow, &all_key).await.unwrap_err();
    assert_refused(&status, Code::PermissionDenied, "CANNOT_GRANT", &["*"]);
    let status = c
        .keys
        .rotate_api_key(authed(
            pb::RotateApiKeyRequest {
                account_id: account_id.clone(),
                key_id: claws_key.clone(),
                grace_period: None,
            },
            &narrow,
        ))
        .await
        .unwrap_err();
    assert_refused(
        &status,
        Code::PermissionDenied,
        "CANNOT_GRANT",
        &["claws:*"],
    );
    let status = accounts
        .create_user(authed(
            pb::CreateUserRequest {
                account_id: account_id.clone(),
                username: "dev@example.com".into(),
                password: "a long enough password".into(),
                scopes: vec!["team:write".into()],
            },
            &narrow,
        ))
        .await
        .unwrap_err();
    assert_refused(
        &status,
        Code::PermissionDenied,
        "INSUFFICIENT_SCOPE",
        &["users:write"],
    );
    let status = accounts
        .create_user(authed(
            pb::CreateUserRequest {
                account_id: account_id.clone(),
                username: "dev@example.com".into(),
                password: "a long enough password".into(),
                scopes: vec![
                    "claws:read".into(),
                    "team:write".into(),
                    "platform:admin".into(),
                ],
            },
            &lead.access_token,
        ))
        .await
        .unwrap_err();
    assert_refused(
        &status,
        Code::PermissionDenied,
        "CANNOT_GRANT",
        &["team:write", "platform:admin"],
    );
    assert_eq!(
        event_log_text(&env).await,
        before,
        "refused calls wrote nothing"
    );

    // A key may always revoke itself, whatever it holds.
    let (_, claws_only) = c.create(&admin_secret, &["claws:read"]).await.unwrap();
    let claws_only_id = c.verify(&claws_only, &[]).await.unwrap().key_id;
    let revoked = c
        .revoke(&claws_only, &claws_only_id)
        .await
        .expect("revokes itself");
    assert_eq!(revoked.state, pb::KeyState::Revoked as i32);
    let status = c.revoke(&claws_only, &narrow_key).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "revoked now");

    // A retired scope stops verifying on the running verifier, is shown as
    // retired on keys that list it, and can no longer be granted.
    let retired = admin(
        &addr,
        Some(&admin_secret),
        &["scopes", "retire", "claws:write"],
        &[],
    )
    .await;
    assert!(retired.status.success(), "{}", text(&retired.stderr));
    let status = until_denied(&mut c, &claws_secret, "claws:write").await;
    assert_refused(
        &status,
        Code::PermissionDenied,
        "INSUFFICIENT_SCOPE",
        &["claws:write"],
    );
    let status = c
        .verify(&sdk.access_token, &["claws:write"])
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "INSUFFICIENT_SCOPE", "tokens too");
    assert_eq!(
        c.verify(&claws_secret, &["claws:read"])
            .await
            .unwrap()
            .scopes,
        ["claws:read"]
    );
    let shown = c.get(&admin_secret, &claws_write_key).await.unwrap();
    assert_eq!(shown.scopes, ["claws:write", "team:read"]);
    assert_eq!(shown.retired_scopes, ["claws:write"]);
    let before = event_log_text(&env).await;
    let status = c.create(&admin_secret, &["claws:write"]).await.unwrap_err();
    assert_refused(
        &status,
        Code::InvalidArgument,
        "SCOPE_RETIRED",
        &["claws:write"],
    );
    let status = c
        .scopes
        .retire_scope(authed(
            pb::RetireScopeRequest {
                name: "claws:write".into(),
            },
            &admin_secret,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let status = c
        .scopes
        .retire_scope(authed(
            pb::RetireScopeRequest {
                name: "keys:read".into(),
            },
            &admin_secret,
        ))
        .await
        .unwrap_err();
    assert_refused(
        &status,
        Code::InvalidArgument,
        "SCOPE_BUILT_IN",
        &["keys:read"],
    );
    let status = c
        .scopes
        .define_scope(authed(
            pb::DefineScopeRequest {
                name: "x:read".into(),
                description: "d".into(),
            },
            &narrow,
        ))
        .await
        .unwrap_err();
    assert_refused(
        &status,
        Code::PermissionDenied,
        "INSUFFICIENT_SCOPE",
        &["platform:admin"],
    );
    assert_eq!(
        event_log_text(&env).await,
        before,
        "refused calls wrote nothing"
    );

    // Delete: gone from the list, its history kept, NOT_FOUND the second time.
    let (doomed, doomed_secret) = c.create(&admin_secret, &["team:read"]).await.unwrap();
    c.verify(&doomed_secret, &["team:read"]).await.unwrap();
    c.delete(&admin_secret, &doomed).await.expect("delete");
    assert!(
        !c.list(&admin_secret, false)
            .await
            .iter()
            .any(|k| k.key_id == doomed)
    );
    let listed = c.list(&admin_secret, true).await;
    let gone = listed.iter().find(|k| k.key_id == doomed).unwrap();
    assert_eq!(gone.state, pb::KeyState::Deleted as i32);
    assert!(gone.deleted_at.is_some() && gone.revoked_at.is_some());
    let status = c.verify(&doomed_secret, &["team:read"]).await.unwrap_err();
    assert_eq!(reason(&status), "KEY_REVOKED");
    let before = event_log_text(&env).await;
    let status = c.delete(&admin_secret, &doomed).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(
        c.get(&admin_secret, &doomed).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        c.revoke(&admin_secret, &doomed).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        event_log_text(&env).await,
        before,
        "a second delete writes nothing"
    );
    let deleted_cli = admin(
        &addr,
        Some(&admin_secret),
        &["keys", "delete", "--account", &account_id, &reports_key],
        &[],
    )
    .await;
    assert!(
        deleted_cli.status.success(),
        "{}",
        text(&deleted_cli.stderr)
    );
    let mut audit = AuditServiceClient::new(channel.clone());
    let history = activity(&mut audit, &admin_secret, &account_id, &doomed).await;
    let kinds: Vec<i32> = history
        .iter()
        .map(|a| a.kind)
        .filter(|k| *k != pb::ActivityKind::Usage as i32)
        .collect();
    assert_eq!(
        kinds,
        [
            pb::ActivityKind::Created as i32,
            pb::ActivityKind::Revoked as i32,
            pb::ActivityKind::Deleted as i32
        ]
    );
    assert_eq!(history.last().unwrap().reason, "no longer needed");
    // Catalogue changes show in the account's log.
    let account_log = activity(&mut audit, &admin_secret, &account_id, "").await;
    let retire = account_log
        .iter()
        .find(|a| a.kind == pb::ActivityKind::ScopeRetired as i32)
        .expect("the retirement is in the account's log");
    assert_eq!(retire.scope, "claws:write");
    assert_eq!(
        account_log
            .iter()
            .filter(|a| a.kind == pb::ActivityKind::ScopeDefined as i32)
            .count(),
        11,
        "ten imported at bootstrap, reports:read later"
    );

    // Import with --prune retires what the file does not name; importing the
    // full file brings it all back.
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.toml");
    std::fs::write(
        &small,
        "[[scope]]\nname = \"claws:read\"\ndescription = \"List and view Claw configurations\"\n",
    )
    .unwrap();
    let small = small.to_str().unwrap();
    let kept = admin(
        &addr,
        Some(&admin_secret),
        &["scopes", "import", small, "--json"],
        &[],
    )
    .await;
    let kept: serde_json::Value = serde_json::from_slice(&kept.stdout).unwrap();
    assert_eq!(
        kept["retired"],
        serde_json::json!([]),
        "no --prune, nothing retired"
    );
    let pruned = admin(
        &addr,
        Some(&admin_secret),
        &["scopes", "import", small, "--prune", "--json"],
        &[],
    )
    .await;
    assert!(pruned.status.success(), "{}", text(&pruned.stderr));
    let pruned: serde_json::Value = serde_json::from_slice(&pruned.stdout).unwrap();
    assert_eq!(pruned["retired"].as_array().unwrap().len(), 9, "{pruned}");
    let status = until_denied(&mut c, &all_secret, "team:read").await;
    assert_refused(
        &status,
        Code::PermissionDenied,
        "INSUFFICIENT_SCOPE",
        &["team:read"],
    );
    let restored = admin(
        &addr,
        Some(&admin_secret),
        &["scopes", "import", WORKCLAW, "--json"],
        &[],
    )
    .await;
    let restored: serde_json::Value = serde_json::from_slice(&restored.stdout).unwrap();
    assert_eq!(
        restored["defined"].as_array().unwrap().len(),
        9,
        "{restored}"
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[scope]]\nname = \"claws:read\"\n").unwrap();
    let refused = admin(
        &addr,
        Some(&admin_secret),
        &["scopes", "import", bad.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("description"),
        "{}",
        text(&refused.stderr)
    );
}
