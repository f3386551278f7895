//! The verifier end to end: two `serve verifier` processes and an issuer on
//! one Postgres; every kind of credential, hostile tokens, revocation
//! propagation, a Postgres outage, and Envoy's ext_authz `Check`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Request as AttrRequest,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use gatehouse_api::v1 as pb;
use gatehouse_api::v1::auth_service_client::AuthServiceClient;
use gatehouse_api::v1::key_service_client::KeyServiceClient;
use gatehouse_api::v1::verifier_service_client::VerifierServiceClient;
use gatehouse_crypto::jwt::AccessClaims;
use gatehouse_testkit::App;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::authed;
use crate::support::{Env, MASTER_KEY, ONE_ISS, OWNER, PASSWORD, bootstrap, reason, server};

async fn spawn(env: &Env, role: &str) -> App {
    let routes = (
        "GATEHOUSE_EXT_AUTHZ_ROUTES",
        "GET /keys keys:read; * /admin platform:admin",
    );
    server(
        env,
        role,
        &["--max-staleness-secs", "1"],
        &[ONE_ISS, routes],
    )
    .await
}

async fn verify(
    client: &mut VerifierServiceClient<Channel>,
    credential: &str,
    scopes: &[&str],
) -> Result<pb::Principal, Status> {
    client
        .verify(pb::VerifyRequest {
            credential: credential.into(),
            required_scopes: scopes.iter().map(|s| s.to_string()).collect(),
            audience: String::new(),
        })
        .await
        .map(|r| r.into_inner().principal.unwrap())
}

async fn refused(
    client: &mut VerifierServiceClient<Channel>,
    credential: &str,
    scopes: &[&str],
) -> (Code, String) {
    let status = verify(client, credential, scopes)
        .await
        .expect_err("must be refused");
    (status.code(), reason(&status))
}

struct World {
    env: Env,
    issuer: App,
    verifiers: [App; 2],
    account_id: String,
    admin_secret: String,
}

impl World {
    async fn new(env: Env) -> Self {
        let boot = bootstrap(&env).await;
        let issuer = spawn(&env, "issuer").await;
        let verifiers = [spawn(&env, "verifier").await, spawn(&env, "verifier").await];
        Self {
            env,
            issuer,
            verifiers,
            account_id: boot["account_id"].as_str().unwrap().into(),
            admin_secret: boot["secret"].as_str().unwrap().into(),
        }
    }

    async fn keys(&self) -> KeyServiceClient<Channel> {
        KeyServiceClient::new(self.issuer.channel().await)
    }

    async fn clients(&self) -> [VerifierServiceClient<Channel>; 2] {
        [
            VerifierServiceClient::new(self.verifiers[0].channel().await),
            VerifierServiceClient::new(self.verifiers[1].channel().await),
        ]
    }

    async fn create_key(&self, scopes: &[&str], expires_in: Option<Duration>) -> (String, String) {
        let expires_at = expires_in.map(|d| {
            let at = chrono::Utc::now() + chrono::Duration::from_std(d).unwrap();
            prost_types::Timestamp {
                seconds: at.timestamp(),
                nanos: at.timestamp_subsec_nanos() as i32,
            }
        });
        let created = self
            .keys()
            .await
            .create_api_key(authed(
                pb::CreateApiKeyRequest {
                    account_id: self.account_id.clone(),
                    name: "verifier test".into(),
                    scopes: scopes.iter().map(|s| s.to_string()).collect(),
                    expires_at,
                },
                &self.admin_secret,
            ))
            .await
            .unwrap()
            .into_inner();
        (created.key.unwrap().key_id, created.secret)
    }

    async fn revoke(&self, key_id: &str) {
        self.keys()
            .await
            .revoke_api_key(authed(
                pb::RevokeApiKeyRequest {
                    account_id: self.account_id.clone(),
                    key_id: key_id.into(),
                    reason: "test".into(),
                },
                &self.admin_secret,
            ))
            .await
            .expect("revoke");
    }

    /// The issuer's signing key, unsealed with the test master key, to mint
    /// tokens the issuer would never mint (wrong issuer, expired).
    async fn signer(&self) -> gatehouse_crypto::keys::Signer {
        let store = gatehouse_eventstore::EventStore::connect(&self.env.url, Default::default())
            .await
            .unwrap();
        let event = store
            .read_all(1, 10_000)
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.event_type == "SigningKeyCreated.v1")
            .unwrap();
        let master = gatehouse_crypto::master::MasterKey::from_base64(MASTER_KEY).unwrap();
        gatehouse_crypto::keys::Signer::unseal(
            &master,
            event.payload["kid"].as_str().unwrap(),
            gatehouse_domain::signing::SigningAlg::EdDSA,
            event.payload["sealed_private_key"].as_str().unwrap(),
        )
        .unwrap()
    }
}

fn claims_of(token: &str) -> AccessClaims {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn every_credential_kind_is_verified_and_every_bad_one_refused_with_its_reason() {
    let world = World::new(crate::support::postgres().await).await;
    let [mut v, _] = world.clients().await;
    let mut auth = AuthServiceClient::new(world.issuer.channel().await);

    // A live API key, at once (read your writes), with its scopes.
    let (key_id, secret) = world
        .create_key(&["keys:read", "activity:read"], None)
        .await;
    let principal = verify(&mut v, &secret, &["activity:read"])
        .await
        .expect("api key");
    assert_eq!(principal.kind, pb::PrincipalKind::ApiKey as i32);
    assert_eq!(
        (principal.account_id.as_str(), principal.key_id.as_str()),
        (world.account_id.as_str(), key_id.as_str())
    );
    let principal = verify(&mut v, &format!("Bearer {secret}"), &[])
        .await
        .expect("bearer prefix");
    assert_eq!(principal.subject, key_id);
    assert_eq!(
        refused(&mut v, &secret, &["orders:write"]).await,
        (Code::PermissionDenied, "INSUFFICIENT_SCOPE".into())
    );

    // A user token, and again (the cached path answers the same).
    let login = auth
        .login(pb::LoginRequest {
            username: OWNER.into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner();
    for _ in 0..2 {
        let principal = verify(&mut v, &login.access_token, &["keys:write"])
            .await
            .expect("user token");
        assert_eq!(principal.kind, pb::PrincipalKind::User as i32);
        assert!(!principal.session_id.is_empty());
    }
    // An SDK token.
    let sdk = auth
        .exchange_sdk_token(pb::ExchangeSdkTokenRequest {
            account_id: world.account_id.clone(),
            key_id: key_id.clone(),
            key_secret: secret.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let principal = verify(&mut v, &sdk.access_token, &["activity:read"])
        .await
        .expect("sdk token");
    assert_eq!(principal.kind, pb::PrincipalKind::Sdk as i32);
    assert_eq!(principal.key_id, key_id);

    // Logged out: the session's access tokens die with it.
    auth.logout(pb::LogoutRequest {
        refresh_token: login.refresh_token.clone(),
    })
    .await
    .unwrap();
    let mut reason_seen = (Code::Ok, String::new());
    for _ in 0..20 {
        match verify(&mut v, &login.access_token, &[]).await {
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(status) => {
                reason_seen = (status.code(), reason(&status));
                break;
            }
        }
    }
    assert_eq!(
        reason_seen,
        (Code::Unauthenticated, "SESSION_REVOKED".into())
    );

    // Rotated past its grace; then revoked (the key and its SDK token).
    let rotated = world
        .keys()
        .await
        .rotate_api_key(authed(
            pb::RotateApiKeyRequest {
                account_id: world.account_id.clone(),
                key_id: key_id.clone(),
                grace_period: Some(prost_types::Duration {
                    seconds: 0,
                    nanos: 0,
                }),
            },
            &world.admin_secret,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut outcome = (Code::Ok, String::new());
    for _ in 0..20 {
        if let Err(status) = verify(&mut v, &secret, &[]).await {
            outcome = (status.code(), reason(&status));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(outcome, (Code::Unauthenticated, "KEY_ROTATED".into()));
    verify(&mut v, &rotated.secret, &[])
        .await
        .expect("the new secret verifies at once");
    world.revoke(&key_id).await;
    let mut outcome = (Code::Ok, String::new());
    for _ in 0..20 {
        if let Err(status) = verify(&mut v, &rotated.secret, &[]).await {
            outcome = (status.code(), reason(&status));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(outcome, (Code::Unauthenticated, "KEY_REVOKED".into()));
    assert_eq!(
        refused(&mut v, &sdk.access_token, &[]).await,
        (Code::Unauthenticated, "KEY_REVOKED".into())
    );

    // Expired key.
    let (_, short) = world
        .create_key(&["keys:read"], Some(Duration::from_secs(1)))
        .await;
    verify(&mut v, &short, &[]).await.expect("before expiry");
    world.env.advance(Duration::from_secs(1));
    assert_eq!(
        refused(&mut v, &short, &[]).await,
        (Code::Unauthenticated, "KEY_EXPIRED".into())
    );

    // Forged and hostile tokens.
    let good = auth
        .login(pb::LoginRequest {
            username: OWNER.into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_token;
    let parts: Vec<&str> = good.split('.').collect();
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let kid = header["kid"].as_str().unwrap().to_string();
    let claims = claims_of(&good);
    let signer = world.signer().await;
    let sign = |c: &AccessClaims| gatehouse_crypto::jwt::sign(c, &signer).unwrap();
    let now = chrono::Utc::now().timestamp();

    let stranger_master = gatehouse_crypto::master::MasterKey::from_base64(MASTER_KEY).unwrap();
    let stranger_key = gatehouse_crypto::keys::generate(
        &stranger_master,
        gatehouse_domain::signing::SigningAlg::EdDSA,
    )
    .unwrap();
    let stranger = gatehouse_crypto::keys::Signer::unseal(
        &stranger_master,
        &stranger_key.kid,
        gatehouse_domain::signing::SigningAlg::EdDSA,
        &stranger_key.sealed_private_key,
    )
    .unwrap();
    let unknown_kid = gatehouse_crypto::jwt::sign(&claims, &stranger).unwrap();
    // The stranger's signature under the real kid.
    let stranger_parts: Vec<&str> = unknown_kid.split('.').collect();
    let wrong_key = format!("{}.{}.{}", parts[0], parts[1], stranger_parts[2]);
    let edited = {
        let forged = AccessClaims {
            scope: "platform:admin keys:write".into(),
            acc: "0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b".into(),
            ..claims.clone()
        };
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap()),
            parts[2]
        )
    };
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","typ":"at+jwt","kid":"{kid}"}}"#)),
        parts[1]
    );
    let hs256 = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.typ = Some("at+jwt".into());
        h.kid = Some(kid.clone());
        let mut jwks_client = AuthServiceClient::new(world.issuer.channel().await);
        let jwks = jwks_client
            .get_jwks(pb::GetJwksRequest {})
            .await
            .unwrap()
            .into_inner();
        let public = URL_SAFE_NO_PAD.decode(&jwks.keys[0].x).unwrap();
        jsonwebtoken::encode(
            &h,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&public),
        )
        .unwrap()
    };
    let wrong_iss = sign(&AccessClaims {
        iss: "https://evil.example".into(),
        ..claims.clone()
    });
    let wrong_aud = sign(&AccessClaims {
        aud: "someone-else".into(),
        ..claims.clone()
    });
    let expired = sign(&AccessClaims {
        exp: now - 120,
        iat: now - 1020,
        nbf: now - 1020,
        ..claims.clone()
    });
    // Signed with the real key, shaped as an SDK token (no session), for a
    // key nobody issued: the signature alone must not let it in.
    let keyless = sign(&AccessClaims {
        sub: uuid::Uuid::now_v7().to_string(),
        sid: None,
        ..claims.clone()
    });
    let cases = [
        ("SDK token of an unknown key", keyless, "KEY_UNKNOWN"),
        ("wrong signing key", wrong_key, "BAD_SIGNATURE"),
        ("unknown kid", unknown_kid, "UNKNOWN_SIGNING_KEY"),
        ("edited payload", edited, "BAD_SIGNATURE"),
        ("alg none", none, "CREDENTIAL_MALFORMED"),
        ("HS256 with the public key", hs256, "BAD_SIGNATURE"),
        ("wrong issuer", wrong_iss, "WRONG_ISSUER"),
        ("wrong audience", wrong_aud, "WRONG_AUDIENCE"),
        ("expired", expired, "TOKEN_EXPIRED"),
        ("garbage", "garbage".into(), "CREDENTIAL_MALFORMED"),
        (
            "mistyped key",
            {
                // Change the last character (to one it is not).
                let (head, last) = world.admin_secret.split_at(world.admin_secret.len() - 1);
                format!("{head}{}", if last == "x" { "y" } else { "x" })
            },
            "BAD_CHECKSUM",
        ),
        ("empty", String::new(), "CREDENTIAL_MISSING"),
    ];
    for (what, credential, expected) in cases {
        let (code, got) = refused(&mut v, &credential, &[]).await;
        assert_eq!(
            (code, got.as_str()),
            (Code::Unauthenticated, expected),
            "{what}"
        );
    }
    // A well-formed key nobody issued: refused after one (coalesced) catch-up.
    let unknown = gatehouse_domain::secret::KeyFormat::new("wc", "live")
        .unwrap()
        .api_key_secret(&[3; 24]);
    assert_eq!(
        refused(&mut v, &unknown, &[]).await,
        (Code::Unauthenticated, "KEY_UNKNOWN".into())
    );
    // Explicit audience mismatch on a genuine token.
    let status = v
        .verify(pb::VerifyRequest {
            credential: good.clone(),
            required_scopes: vec![],
            audience: "billing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "WRONG_AUDIENCE");
    // A 1 MB credential is refused quickly.
    let started = Instant::now();
    let (code, why) = refused(&mut v, &"a".repeat(1 << 20), &[]).await;
    assert_eq!(
        (code, why.as_str()),
        (Code::Unauthenticated, "CREDENTIAL_MALFORMED")
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_revocation_reaches_both_verifiers_within_a_second() {
    let world = World::new(crate::support::postgres().await).await;
    let mut clients = world.clients().await;
    let (key_id, secret) = world.create_key(&["keys:read"], None).await;
    for client in clients.iter_mut() {
        verify(client, &secret, &[]).await.expect("known to both");
    }
    let started = Instant::now();
    world.revoke(&key_id).await;
    for (n, client) in clients.iter_mut().enumerate() {
        loop {
            match verify(client, &secret, &[]).await {
                Err(status) => {
                    assert_eq!(reason(&status), "KEY_REVOKED");
                    break;
                }
                Ok(_) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(1),
                        "verifier {n} still accepts after 1 s"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    eprintln!(
        "revocation seen by both verifiers after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn verifiers_answer_from_memory_while_postgres_is_down_and_catch_up_after() {
    let cluster = gatehouse_testkit::start_throwaway_cluster().expect("a throwaway Postgres");
    let env = Env {
        url: cluster.url("postgres"),
        _dir: None,
        clock: gatehouse_domain::clock::ShiftedClock::new(),
    };
    let world = World::new(env).await;
    let mut clients = world.clients().await;
    let (live_id, live) = world.create_key(&["keys:read"], None).await;
    let (revoked_id, revoked) = world.create_key(&["keys:read"], None).await;
    let (later_id, later) = world.create_key(&["keys:read"], None).await;
    world.revoke(&revoked_id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    cluster.stop().expect("stop Postgres");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for client in clients.iter_mut() {
        let principal = verify(client, &live, &[])
            .await
            .expect("known key while the database is down");
        assert_eq!(principal.key_id, live_id);
        assert_eq!(refused(client, &revoked, &[]).await.1, "KEY_REVOKED");
    }
    // Past the staleness bound (1 s here) they say so in health.
    for verifier in &world.verifiers {
        let mut health =
            tonic_health::pb::health_client::HealthClient::new(verifier.channel().await);
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "gatehouse.v1.VerifierService".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status();
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::NotServing
        );
    }

    // The issuer cannot write or list without its database: those calls say
    // UNAVAILABLE (503 over HTTP) within the pool's 5 s acquire timeout,
    // well inside the request deadline — never INTERNAL. The SDK exchange
    // answers from the issuer's index, as Verify does; a revoked key is
    // still refused there.
    let mut auth = AuthServiceClient::new(world.issuer.channel().await);
    let mut auth2 = auth.clone();
    let (mut keys, mut keys2) = (world.keys().await, world.keys().await);
    let started = Instant::now();
    let (listed, revoked_now, logged_in, exchanged, http) = tokio::join!(
        keys.list_api_keys(authed(
            pb::ListApiKeysRequest {
                account_id: world.account_id.clone(),
                ..Default::default()
            },
            &world.admin_secret,
        )),
        keys2.revoke_api_key(authed(
            pb::RevokeApiKeyRequest {
                account_id: world.account_id.clone(),
                key_id: later_id.clone(),
                reason: "during the outage".into(),
            },
            &world.admin_secret,
        )),
        auth2.login(pb::LoginRequest {
            username: OWNER.into(),
            password: PASSWORD.into(),
        }),
        auth.exchange_sdk_token(pb::ExchangeSdkTokenRequest {
            account_id: world.account_id.clone(),
            key_id: live_id.clone(),
            key_secret: live.clone(),
        }),
        reqwest::Client::new()
            .get(format!(
                "http://{}/api/v1/accounts/{}/keys",
                world.issuer.addr, world.account_id
            ))
            .bearer_auth(&world.admin_secret)
            .send(),
    );
    let elapsed = started.elapsed();
    let exchanged = exchanged
        .expect("the exchange needs no database")
        .into_inner();
    assert_eq!(exchanged.expires_in, 3600);
    let status = auth
        .exchange_sdk_token(pb::ExchangeSdkTokenRequest {
            account_id: world.account_id.clone(),
            key_id: revoked_id.clone(),
            key_secret: revoked.clone(),
        })
        .await
        .expect_err("a revoked key is refused from memory too");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    for status in [
        listed.map(|_| ()).expect_err("no database"),
        revoked_now.map(|_| ()).expect_err("no database"),
        logged_in.map(|_| ()).expect_err("no database"),
    ] {
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert_eq!(reason(&status), "UNAVAILABLE");
    }
    let http = http.unwrap();
    assert_eq!(http.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert!(http.headers().contains_key("retry-after"));
    let body: serde_json::Value = http.json().await.unwrap();
    assert_eq!(body["reason"], "UNAVAILABLE", "{body}");
    assert!(
        elapsed < Duration::from_secs(10),
        "outage answers took {elapsed:?}"
    );

    cluster.start().expect("restart Postgres");
    // The issuer revokes another key once the database is back; both
    // verifiers learn of it without a restart.
    let mut revoked_again = false;
    for _ in 0..50 {
        let result = world
            .keys()
            .await
            .revoke_api_key(authed(
                pb::RevokeApiKeyRequest {
                    account_id: world.account_id.clone(),
                    key_id: later_id.clone(),
                    reason: "after the outage".into(),
                },
                &world.admin_secret,
            ))
            .await;
        if result.is_ok() {
            revoked_again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(revoked_again, "the issuer never recovered");
    for client in clients.iter_mut() {
        let mut caught_up = false;
        for _ in 0..100 {
            if let Err(status) = verify(client, &later, &[]).await {
                assert_eq!(reason(&status), "KEY_REVOKED");
                caught_up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            caught_up,
            "a verifier did not catch up after Postgres returned"
        );
        verify(client, &live, &[])
            .await
            .expect("the live key still verifies");
    }
}

fn check_request(
    method: &str,
    path: &str,
    authorization: Option<&str>,
    extensions: &[(&str, &str)],
) -> CheckRequest {
    let mut headers = HashMap::new();
    if let Some(value) = authorization {
        headers.insert("authorization".to_string(), value.to_string());
    }
    headers.insert("x-gatehouse-account".to_string(), "spoofed".to_string());
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(AttrRequest {
                http: Some(HttpRequest {
                    method: method.into(),
                    path: path.into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions: extensions
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn envoy_check_allows_with_identity_headers_and_denies_with_401_and_403() {
    let world = World::new(crate::support::postgres().await).await;
    let (key_id, secret) = world.create_key(&["keys:read"], None).await;
    let mut envoy = AuthorizationClient::new(world.verifiers[0].channel().await);
    let bearer = format!("Bearer {secret}");

    let allowed = envoy
        .check(check_request("GET", "/keys/1?x=y", Some(&bearer), &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(allowed.status.unwrap().code, 0);
    let Some(HttpResponse::OkResponse(ok)) = allowed.http_response else {
        panic!("expected an OK response")
    };
    let headers: HashMap<String, String> = ok
        .headers
        .iter()
        .map(|h| {
            let h = h.header.as_ref().unwrap();
            (h.key.clone(), h.value.clone())
        })
        .collect();
    assert_eq!(headers["x-gatehouse-account"], world.account_id);
    assert_eq!(headers["x-gatehouse-subject"], key_id);
    assert_eq!(headers["x-gatehouse-scopes"], "keys:read");
    // Identity headers overwrite whatever the client sent under those names.
    assert!(ok.headers.iter().all(|h| h.append_action
        == envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32));
    assert!(
        ok.headers_to_remove.is_empty(),
        "removals apply after additions in Envoy"
    );

    // A denial carries the HTTP API's JSON error body and challenge.
    let denied =
        |response: envoy_types::pb::envoy::service::auth::v3::CheckResponse| -> (i32, i32, String) {
            let grpc = response.status.unwrap().code;
            let Some(HttpResponse::DeniedResponse(denied)) = response.http_response else {
                panic!("expected a denial")
            };
            let header = |name: &str| {
                denied
                    .headers
                    .iter()
                    .filter_map(|h| h.header.as_ref())
                    .find(|h| h.key == name)
                    .map(|h| h.value.clone())
                    .unwrap_or_default()
            };
            let status = denied.status.unwrap().code;
            assert_eq!(header("content-type"), "application/json");
            let body: serde_json::Value = serde_json::from_str(&denied.body).unwrap();
            assert_eq!(body["statusCode"], status, "{body}");
            assert!(
                body["code"].is_string() && body["message"].is_string(),
                "{body}"
            );
            assert!(body["reason"].is_string(), "{body}");
            (grpc, status, header("www-authenticate"))
        };
    let (grpc, http, challenge) = denied(
        envoy
            .check(check_request("GET", "/keys", None, &[]))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!((grpc, http), (Code::Unauthenticated as i32, 401));
    assert_eq!(
        challenge, r#"Bearer realm="gatehouse""#,
        "no credential: no error (RFC 6750 §3)"
    );
    let (_, http, _) = denied(
        envoy
            .check(check_request(
                "GET",
                "/keys",
                Some("Bearer forged.token.here"),
                &[],
            ))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(http, 401);
    assert_eq!(
        denied(
            envoy
                .check(check_request("GET", "/keys", Some("Bearer a.b.c"), &[]))
                .await
                .unwrap()
                .into_inner()
        )
        .2,
        r#"Bearer realm="gatehouse", error="invalid_token""#
    );
    // The route table asks platform:admin under /admin.
    let (grpc, http, challenge) = denied(
        envoy
            .check(check_request("POST", "/admin/users", Some(&bearer), &[]))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!((grpc, http), (Code::PermissionDenied as i32, 403));
    assert_eq!(
        challenge,
        r#"Bearer realm="gatehouse", error="insufficient_scope", scope="platform:admin""#
    );
    // Path tricks meet the route they point at, or are refused outright.
    for tricky in ["/keys/../admin/users", "//admin/users", "/%61dmin/users"] {
        let (_, http, _) = denied(
            envoy
                .check(check_request("GET", tricky, Some(&bearer), &[]))
                .await
                .unwrap()
                .into_inner(),
        );
        assert_eq!(http, 403, "{tricky}");
    }
    let (grpc, http, _) = denied(
        envoy
            .check(check_request("GET", "/admin%2Fusers", Some(&bearer), &[]))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!((grpc, http), (Code::InvalidArgument as i32, 400));
    // context_extensions override the table.
    let (_, http, _) = denied(
        envoy
            .check(check_request(
                "GET",
                "/keys",
                Some(&bearer),
                &[("required_scopes", "keys:write")],
            ))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(http, 403);
}

#[tokio::test]
async fn metrics_report_verifier_lag_and_outcomes() {
    let env = crate::support::postgres().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_addr = format!("127.0.0.1:{port}");
    // A process of its own: the metrics recorder is global to a process.
    let verifier = gatehouse_testkit::Gatehouse::spawn(
        crate::BIN,
        &[
            "serve",
            "verifier",
            "--database-url",
            &env.url,
            "--metrics-listen",
            &metrics_addr,
        ],
        &[("GATEHOUSE_ISSUER_URL", "http://gatehouse.test")],
    )
    .await;
    let mut client = VerifierServiceClient::new(verifier.channel().await);
    assert_eq!(
        refused(&mut client, "garbage", &[]).await.1,
        "CREDENTIAL_MALFORMED"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut body = String::new();
    {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect(&metrics_addr)
            .await
            .expect("metrics listener");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        stream.read_to_string(&mut body).await.unwrap();
    }
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains(r#"gatehouse_verify_total{result="deny",reason="CREDENTIAL_MALFORMED"} 1"#),
        "{body}"
    );
    assert!(body.contains("gatehouse_verifier_lag_seconds"), "{body}");
}

#[tokio::test]
async fn keys_created_in_a_burst_verify_at_once_on_every_verifier() {
    let world = World::new(crate::support::postgres().await).await;
    let mut clients = world.clients().await;
    // Faster than the catch-up rate limit: each must still be found.
    for _ in 0..5 {
        let (key_id, secret) = world.create_key(&["keys:read"], None).await;
        for client in clients.iter_mut() {
            let principal = verify(client, &secret, &["keys:read"])
                .await
                .expect("a key created a moment ago");
            assert_eq!(principal.key_id, key_id);
        }
    }
}

/// An SDK token dies with the secret it was exchanged with: alive while that
/// secret is (current, or previous inside its grace), refused with
/// `KEY_ROTATED` by both verifiers and by the issuer's admin API once it is
/// rotated away — not an hour later, when the token would have expired.
async fn sdk_tokens_die_with_their_secret(env: Env) {
    let world = &World::new(env).await;
    let mut clients = world.clients().await;
    let auth = AuthServiceClient::new(world.issuer.channel().await);
    let (key_id, first) = world.create_key(&["keys:read"], None).await;
    let exchange = |secret: String| {
        let mut auth = auth.clone();
        let (account_id, key_id) = (world.account_id.clone(), key_id.clone());
        async move {
            auth.exchange_sdk_token(pb::ExchangeSdkTokenRequest {
                account_id,
                key_id,
                key_secret: secret,
            })
            .await
            .map(|r| r.into_inner().access_token)
        }
    };
    let rotate = |grace_secs: i64| {
        let (account_id, key_id) = (world.account_id.clone(), key_id.clone());
        async move {
            world
                .keys()
                .await
                .rotate_api_key(authed(
                    pb::RotateApiKeyRequest {
                        account_id,
                        key_id,
                        grace_period: Some(prost_types::Duration {
                            seconds: grace_secs,
                            nanos: 0,
                        }),
                    },
                    &world.admin_secret,
                ))
                .await
                .unwrap()
                .into_inner()
                .secret
        }
    };
    let list_keys = |token: String| {
        let account_id = world.account_id.clone();
        async move {
            world
                .keys()
                .await
                .list_api_keys(authed(
                    pb::ListApiKeysRequest {
                        account_id,
                        page_size: 1,
                        ..Default::default()
                    },
                    &token,
                ))
                .await
                .map(|_| ())
        }
    };
    let from_first = exchange(first.clone()).await.unwrap();
    assert_eq!(claims_of(&from_first).ksv, Some(0));
    let second = rotate(3600).await;
    let from_second = exchange(second.clone()).await.unwrap();
    assert_eq!(claims_of(&from_second).ksv, Some(1));
    // Inside the grace period both secrets, and their tokens, are alive.
    let from_first_in_grace = exchange(first.clone()).await.expect("first inside grace");
    for client in clients.iter_mut() {
        for token in [&from_first, &from_second, &from_first_in_grace] {
            verify(client, token, &["keys:read"]).await.expect("alive");
        }
    }
    list_keys(from_first.clone())
        .await
        .expect("alive at the issuer");

    // Rotated away with no grace (the "compromised" path): the first two
    // secrets' tokens die at once, everywhere; the new secret's token lives.
    let third = rotate(0).await;
    let from_third = exchange(third).await.unwrap();
    let started = Instant::now();
    for client in clients.iter_mut() {
        for token in [&from_first, &from_second, &from_first_in_grace] {
            loop {
                match verify(client, token, &[]).await {
                    Err(status) => {
                        assert_eq!(
                            (status.code(), reason(&status).as_str()),
                            (Code::Unauthenticated, "KEY_ROTATED")
                        );
                        break;
                    }
                    Ok(_) => {
                        assert!(started.elapsed() < Duration::from_secs(2), "still accepted");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }
        verify(client, &from_third, &[])
            .await
            .expect("current secret's token");
    }
    for token in [&from_first, &from_second] {
        let status = list_keys(token.clone())
            .await
            .expect_err("dead at the issuer");
        assert_eq!(
            (status.code(), reason(&status).as_str()),
            (Code::Unauthenticated, "KEY_ROTATED")
        );
    }
    assert_eq!(
        exchange(second)
            .await
            .expect_err("a dead secret exchanges nothing")
            .code(),
        Code::Unauthenticated
    );
    list_keys(from_third.clone())
        .await
        .expect("alive at the issuer");

    // A token that names no secret (as minted before `ksv`) counts as the
    // key's first secret's: refused on this twice-rotated key, everywhere.
    let mut unbound = claims_of(&from_third);
    unbound.ksv = None;
    let unbound = gatehouse_crypto::jwt::sign(&unbound, &world.signer().await).unwrap();
    assert_eq!(
        refused(&mut clients[0], &unbound, &[]).await,
        (Code::Unauthenticated, "KEY_ROTATED".into())
    );
    let status = list_keys(unbound).await.expect_err("unbound");
    assert_eq!(reason(&status), "KEY_ROTATED");

    world.revoke(&key_id).await;
    let status = list_keys(from_third).await.expect_err("revoked");
    assert_eq!(reason(&status), "KEY_REVOKED");
    drop(auth);
}

#[tokio::test]
async fn sdk_tokens_die_with_their_secret_on_postgres() {
    sdk_tokens_die_with_their_secret(crate::support::postgres().await).await;
}

#[tokio::test]
async fn sdk_tokens_die_with_their_secret_on_sqlite() {
    sdk_tokens_die_with_their_secret(crate::support::sqlite()).await;
}

/// With `--ext-authz-deny-unmatched`, a request no route names is denied
/// (403 `ROUTE_UNMATCHED`) whatever it carries; routes match ignoring case
/// and `;` parameters, so neither reaches around a rule (`/ADMIN` and
/// `/admin;x` once did).
#[tokio::test]
async fn envoy_check_denies_unmatched_routes_and_normalises_case_and_parameters() {
    let env = crate::support::sqlite();
    let boot = bootstrap(&env).await;
    let admin_secret = boot["secret"].as_str().unwrap().to_string();
    let server = gatehouse_testkit::spawn_app_on(
        &["serve", "--database-url", &env.url],
        &[
            ("GATEHOUSE_MASTER_KEY", MASTER_KEY),
            (
                "GATEHOUSE_EXT_AUTHZ_ROUTES",
                "GET /keys keys:read; * /admin platform:admin; GET /public",
            ),
            ("GATEHOUSE_EXT_AUTHZ_DENY_UNMATCHED", "true"),
        ],
        env.clock.clone(),
    )
    .await;
    let mut keys = KeyServiceClient::new(server.channel().await);
    let reader = keys
        .create_api_key(authed(
            pb::CreateApiKeyRequest {
                account_id: boot["account_id"].as_str().unwrap().into(),
                name: "reader".into(),
                scopes: vec!["keys:read".into()],
                expires_at: None,
            },
            &admin_secret,
        ))
        .await
        .unwrap()
        .into_inner()
        .secret;
    let mut envoy = AuthorizationClient::new(server.channel().await);
    let mut check = async |method: &str, path: &str, secret: &str| {
        let response = envoy
            .check(check_request(
                method,
                path,
                Some(&format!("Bearer {secret}")),
                &[],
            ))
            .await
            .unwrap()
            .into_inner();
        let grpc = response.status.unwrap().code;
        match response.http_response {
            Some(HttpResponse::DeniedResponse(denied)) => {
                let body: serde_json::Value = serde_json::from_str(&denied.body).unwrap();
                (
                    grpc,
                    body["reason"].as_str().unwrap_or_default().to_string(),
                )
            }
            _ => (grpc, String::new()),
        }
    };
    let allowed = (Code::Ok as i32, String::new());
    let unmatched = (Code::PermissionDenied as i32, "ROUTE_UNMATCHED".to_string());
    let needs_admin = (
        Code::PermissionDenied as i32,
        "INSUFFICIENT_SCOPE".to_string(),
    );
    assert_eq!(check("GET", "/keys/1", &reader).await, allowed);
    assert_eq!(
        check("GET", "/KEYS/1", &reader).await,
        allowed,
        "case is ignored"
    );
    assert_eq!(
        check("GET", "/public/x", &reader).await,
        allowed,
        "a route without scopes"
    );
    // Not named by any route: denied even to the admin key.
    assert_eq!(check("GET", "/elsewhere", &admin_secret).await, unmatched);
    assert_eq!(check("DELETE", "/keys/1", &admin_secret).await, unmatched);
    // Case, `;` parameters and dot segments all meet the /admin rule.
    for path in [
        "/Admin/users",
        "/ADMIN",
        "/admin;jsessionid=x/users",
        "/keys;x/../admin",
    ] {
        assert_eq!(check("GET", path, &reader).await, needs_admin, "{path}");
        assert_eq!(check("GET", path, &admin_secret).await, allowed, "{path}");
    }
    assert_eq!(
        check("GET", "/admin%3Busers", &admin_secret).await,
        (Code::InvalidArgument as i32, "PATH_REJECTED".to_string())
    );
    // An unmatched route is denied before the credential is looked at.
    assert_eq!(check("GET", "/elsewhere", "garbage").await, unmatched);
}
