//! The `gatehouse.v1` contract as clients see it through reflection: the six
//! services, their RPCs, and the field names the documented flows fix.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failure is a panic

use std::collections::BTreeMap;

use prost::Message as _;
use prost_types::FileDescriptorSet;

fn descriptors() -> FileDescriptorSet {
    FileDescriptorSet::decode(gatehouse_api::FILE_DESCRIPTOR_SET).expect("descriptor set decodes")
}

#[test]
fn the_six_services_expose_their_rpcs() {
    let set = descriptors();
    let services: BTreeMap<String, Vec<String>> = set
        .file
        .iter()
        .filter(|f| f.package() == "gatehouse.v1")
        .flat_map(|f| f.service.iter())
        .map(|s| {
            (
                format!("gatehouse.v1.{}", s.name()),
                s.method.iter().map(|m| m.name().to_string()).collect(),
            )
        })
        .collect();
    let expected: BTreeMap<String, Vec<String>> = [
        (
            "gatehouse.v1.AccountService",
            &["CreateAccount", "CreateUser"][..],
        ),
        (
            "gatehouse.v1.AuditService",
            &["ListKeyActivity", "WatchKeyActivity"],
        ),
        (
            "gatehouse.v1.AuthService",
            &[
                "Login",
                "Refresh",
                "ExchangeSdkToken",
                "Logout",
                "GetJwks",
                "ChangePassword",
            ],
        ),
        (
            "gatehouse.v1.KeyService",
            &[
                "CreateApiKey",
                "ListApiKeys",
                "GetApiKey",
                "RotateApiKey",
                "RevokeApiKey",
                "DeleteApiKey",
            ],
        ),
        (
            "gatehouse.v1.ScopeService",
            &["DefineScope", "ListScopes", "RetireScope", "ImportScopes"],
        ),
        ("gatehouse.v1.VerifierService", &["Verify"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
    .collect();
    assert_eq!(services, expected);
    let mut names: Vec<&str> = gatehouse_api::SERVICE_NAMES.to_vec();
    names.sort();
    assert_eq!(
        names,
        services.keys().map(String::as_str).collect::<Vec<_>>()
    );
}

#[test]
fn messages_use_the_field_names_of_the_design() {
    let set = descriptors();
    let fields = |message: &str| -> Vec<String> {
        set.file
            .iter()
            .flat_map(|f| f.message_type.iter())
            .find(|m| m.name() == message)
            .unwrap_or_else(|| panic!("{message} missing"))
            .field
            .iter()
            .map(|f| f.name().to_string())
            .collect()
    };
    let has = |message: &str, wanted: &[&str]| {
        let present = fields(message);
        for field in wanted {
            assert!(
                present.iter().any(|f| f == field),
                "{message}.{field} missing: {present:?}"
            );
        }
    };
    has("LoginRequest", &["username", "password"]);
    has(
        "LoginResponse",
        &["access_token", "refresh_token", "token_type", "expires_in"],
    );
    has("RefreshRequest", &["refresh_token"]);
    has(
        "ExchangeSdkTokenRequest",
        &["account_id", "key_id", "key_secret"],
    );
    has(
        "ExchangeSdkTokenResponse",
        &["access_token", "expires_in", "token_type"],
    );
    has("VerifyRequest", &["credential", "required_scopes"]);
    has("CreateApiKeyRequest", &["name", "scopes", "expires_at"]);
    has("CreateApiKeyResponse", &["secret"]);
    has("RotateApiKeyRequest", &["key_id", "grace_period"]);
    has("RevokeApiKeyRequest", &["key_id", "reason"]);
    has("DeleteApiKeyRequest", &["account_id", "key_id"]);
    has("ListApiKeysRequest", &["include_deleted"]);
    has(
        "ApiKey",
        &["scopes", "retired_scopes", "state", "deleted_at"],
    );
    has("DefineScopeRequest", &["name", "description"]);
    has("ListScopesResponse", &["scopes"]);
    has("ScopeInfo", &["name", "description", "retired"]);
    has("RetireScopeRequest", &["name"]);
    // Secrets are returned only by create and rotate: the key metadata has none.
    assert!(
        !fields("ApiKey")
            .iter()
            .any(|f| f.contains("secret") && f != "previous_secret_valid_until")
    );
}
