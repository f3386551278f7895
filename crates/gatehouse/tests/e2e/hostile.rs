//! Hostile input to every `gatehouse.v1` method, straight off the wire: an
//! empty message, bytes that are not protobuf, a string field that is not
//! UTF-8, a field of the wrong wire type, a message past the size limit,
//! and hostile `authorization` metadata. Each gets a clear status — never
//! `INTERNAL`, `UNKNOWN` or a dropped connection — writes nothing, and the
//! server answers the next call. Both backends.

use bytes::{Buf, BufMut};
use prost::Message as _;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

use crate::issuer::serve;
use crate::support::{Env, bootstrap, event_log_text, postgres, sqlite};

/// Sends and receives raw message bytes, so a test can put anything on the wire.
#[derive(Default, Clone)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// A hostile case: its name, the message bytes, the `authorization` value.
type Case = (&'static str, Vec<u8>, Option<Vec<u8>>);

/// Every method of `gatehouse.v1`, as `/package.Service/Method`.
fn methods() -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(gatehouse_api::FILE_DESCRIPTOR_SET).unwrap();
    let mut methods = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                methods.push(format!(
                    "/{}.{}/{}",
                    file.package(),
                    service.name(),
                    method.name()
                ));
            }
        }
    }
    methods
}

/// Field 1 as a length-delimited value of `bytes` (every request's first
/// field is a string or a message; either way these bytes are wrong).
fn field_one(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0x0a];
    prost::encoding::encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

async fn call(
    channel: tonic::transport::Channel,
    path: &str,
    body: Vec<u8>,
    authorization: Option<&[u8]>,
) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(body);
    if let Some(value) = authorization
        && let Ok(value) = tonic::metadata::MetadataValue::try_from(value)
    {
        request.metadata_mut().insert("authorization", value);
    }
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(path).unwrap();
    grpc.unary(request, path, RawCodec)
        .await
        .map(|r| r.into_inner())
}

async fn every_method_meets_hostile_input(env: Env) {
    let boot = bootstrap(&env).await;
    let admin = boot["secret"].as_str().unwrap().to_string();
    let server = serve(&env).await;
    let channel = server.channel().await;
    let methods = methods();
    assert!(methods.len() >= 20, "{methods:?}");
    let before = event_log_text(&env).await;

    let cases: Vec<Case> = vec![
        ("empty message", Vec::new(), None),
        (
            "empty message, admin",
            Vec::new(),
            Some(format!("Bearer {admin}").into_bytes()),
        ),
        (
            "not protobuf",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01".to_vec(),
            Some(format!("Bearer {admin}").into_bytes()),
        ),
        (
            "truncated field",
            vec![0x0a, 0x7f, b'a'],
            Some(format!("Bearer {admin}").into_bytes()),
        ),
        (
            "string not UTF-8",
            field_one(b"\xc3\x28\xff"),
            Some(format!("Bearer {admin}").into_bytes()),
        ),
        (
            "wrong wire type",
            vec![0x08, 0x96, 0x01],
            Some(format!("Bearer {admin}").into_bytes()),
        ),
        (
            "a megabyte of text",
            field_one(&vec![b'a'; 1 << 20]),
            Some(format!("Bearer {admin}").into_bytes()),
        ),
        (
            "past the 4 MiB limit",
            field_one(&vec![b'a'; 5 << 20]),
            None,
        ),
        (
            "forged alg none token",
            Vec::new(),
            Some(b"Bearer eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0.eyJzdWIiOiJ4In0.".to_vec()),
        ),
        (
            "key with a bad checksum",
            Vec::new(),
            Some(b"Bearer wc_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_vec()),
        ),
        (
            "another prefix",
            Vec::new(),
            Some(b"Bearer sk_live_0123456789".to_vec()),
        ),
        ("huge credential", Vec::new(), Some(vec![b'a'; 12_000])),
        (
            "injection",
            field_one(b"'; DROP TABLE events; --"),
            Some(b"Bearer ' OR 1=1 --".to_vec()),
        ),
    ];
    for path in &methods {
        for (case, body, authorization) in &cases {
            let answer = call(
                channel.clone(),
                path,
                body.clone(),
                authorization.as_deref(),
            )
            .await;
            if let Err(status) = &answer {
                assert!(
                    !matches!(status.code(), Code::Internal | Code::Unknown),
                    "{path} / {case}: {status:?}"
                );
                if *case == "not protobuf"
                    || *case == "string not UTF-8"
                    || *case == "truncated field"
                {
                    assert_eq!(
                        status.code(),
                        Code::InvalidArgument,
                        "{path} / {case}: {status:?}"
                    );
                }
                if *case == "past the 4 MiB limit" {
                    assert!(
                        matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange),
                        "{path} / {case}: {status:?}"
                    );
                }
            }
        }
    }
    // Nothing was written (login attempts are audited: only LoginFailed).
    let after = event_log_text(&env).await;
    let added: Vec<&str> = after
        .lines()
        .filter(|line| !before.contains(*line))
        .filter(|line| !line.starts_with("LoginFailed.v1"))
        .collect();
    assert!(added.is_empty(), "hostile calls wrote: {added:#?}");
    // And the server still answers.
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("still serving");
}

#[tokio::test]
async fn every_method_meets_hostile_input_on_postgres() {
    every_method_meets_hostile_input(postgres().await).await;
}

#[tokio::test]
async fn every_method_meets_hostile_input_on_sqlite() {
    every_method_meets_hostile_input(sqlite()).await;
}

/// One object that gives every request body of the HTTP API at least one
/// field of the wrong type, a time no backend stores, a duration out of
/// range or a string with a control character — so every route must refuse it.
fn wrong_everything(strings: &str) -> serde_json::Value {
    serde_json::json!({
        "username": strings, "password": 1, "refresh_token": [strings],
        "old_password": 1, "new_password": {}, "account_id": strings,
        "key_id": [1], "key_secret": 1, "credential": [strings],
        "required_scopes": strings, "audience": [1], "name": 1,
        "scopes": strings, "expires_at": "+275760-09-13T00:00:00Z",
        "grace_period_seconds": -1e30, "reason": format!("{strings}\u{0}"),
        "description": 1, "definitions": strings, "prune": "yes",
        "owner_username": 1, "owner_password": 1
    })
}

async fn every_route_meets_hostile_input(env: Env) {
    let boot = bootstrap(&env).await;
    let admin = boot["secret"].as_str().unwrap().to_string();
    let account = boot["account_id"].as_str().unwrap().to_string();
    let key_id = boot["key_id"].as_str().unwrap().to_string();
    let server = serve(&env).await;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let description: serde_json::Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let before = event_log_text(&env).await;
    let deep_array = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_object = format!("{}1{}", "{\"a\":".repeat(300), "}".repeat(300));
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", b"not json {".to_vec()),
        ("not UTF-8", b"\xff\xfe{\"name\":\"\xc3\x28\"}".to_vec()),
        ("deeply nested array", deep_array.into_bytes()),
        ("deeply nested object", deep_object.into_bytes()),
        (
            "wrong types",
            wrong_everything("x").to_string().into_bytes(),
        ),
        (
            "injection",
            wrong_everything("'; DROP TABLE events; -- <script>alert(1)</script>")
                .to_string()
                .into_bytes(),
        ),
        ("past the body limit", vec![b' '; (1 << 20) + 1]),
    ];
    let hostile_query = "since=0000-01-01T00:00:00Z&until=%2B275760-09-13T00:00:00Z\
        &page_size=-1&kinds=%27%3BDROP&key_id=%3Cscript%3E&page_token=-5&include_deleted=maybe";
    let mut checked = 0;
    for (path, operations) in description["paths"].as_object().unwrap() {
        let path = path
            .replace("{account_id}", &account)
            .replace("{key_id}", &key_id)
            .replace("{name}", "keys:read");
        for method in operations.as_object().unwrap().keys() {
            let url = format!("{base}{path}");
            let answers: Vec<(&str, reqwest::Response)> = match method.as_str() {
                "post" => {
                    let mut answers = Vec::new();
                    for (case, body) in &bodies {
                        let response = http
                            .post(&url)
                            .bearer_auth(&admin)
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send()
                            .await
                            .unwrap();
                        answers.push((*case, response));
                    }
                    answers
                }
                "get"
                    if operations["get"]["parameters"]
                        .as_array()
                        .is_some_and(|p| p.iter().any(|p| p["in"] == "query")) =>
                {
                    vec![(
                        "hostile query",
                        http.get(format!("{url}?{hostile_query}"))
                            .bearer_auth(&admin)
                            .send()
                            .await
                            .unwrap(),
                    )]
                }
                "delete" => vec![(
                    "hostile query",
                    http.delete(format!("{url}?reason=%00%01"))
                        .bearer_auth(&admin)
                        .send()
                        .await
                        .unwrap(),
                )],
                _ => Vec::new(),
            };
            for (case, response) in answers {
                let status = response.status();
                let body: serde_json::Value = response.json().await.unwrap_or_else(|e| {
                    panic!("{method} {path} / {case}: {status} without a JSON body: {e}")
                });
                assert!(
                    status.is_client_error(),
                    "{method} {path} / {case}: {status} {body}"
                );
                assert!(
                    body["code"].is_string() && body["message"].is_string(),
                    "{method} {path} / {case}: {body}"
                );
                assert_eq!(
                    body["statusCode"],
                    status.as_u16(),
                    "{method} {path} / {case}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "only {checked} answers checked");
    let after = event_log_text(&env).await;
    let added: Vec<&str> = after
        .lines()
        .filter(|line| !before.contains(*line))
        .filter(|line| !line.starts_with("LoginFailed.v1"))
        .collect();
    assert!(added.is_empty(), "hostile requests wrote: {added:#?}");
}

#[tokio::test]
async fn every_route_meets_hostile_input_on_postgres() {
    every_route_meets_hostile_input(postgres().await).await;
}

#[tokio::test]
async fn every_route_meets_hostile_input_on_sqlite() {
    every_route_meets_hostile_input(sqlite()).await;
}
