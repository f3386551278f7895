//! Typed admin calls over gRPC: keys, activity, scopes, accounts, users and
//! `Verify` — one connection, one bearer credential, one error type. The
//! `gatehouse keys|scopes|activity|accounts|users|verify` commands use it.

use std::time::Duration;

use gatehouse_api::v1 as pb;
use gatehouse_api::v1::account_service_client::AccountServiceClient;
use gatehouse_api::v1::audit_service_client::AuditServiceClient;
use gatehouse_api::v1::key_service_client::KeyServiceClient;
use gatehouse_api::v1::scope_service_client::ScopeServiceClient;
use gatehouse_api::v1::verifier_service_client::VerifierServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt as _;

/// Why an admin call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AdminError {
    /// Gatehouse answered with an error: its gRPC code, its stable reason
    /// (`KEY_REVOKED`, `INSUFFICIENT_SCOPE`, …) and message.
    #[error("{message}{}", if reason.is_empty() { String::new() } else { format!(" ({reason})") })]
    Refused {
        code: Code,
        reason: String,
        message: String,
    },
    /// Gatehouse could not be reached.
    #[error("cannot reach {addr}: {message}")]
    Unreachable { addr: String, message: String },
    /// The address or the credential cannot be used.
    #[error("{0}")]
    Config(String),
}

impl From<Status> for AdminError {
    fn from(status: Status) -> Self {
        Self::Refused {
            code: status.code(),
            reason: status
                .get_details_error_info()
                .map(|info| info.reason)
                .unwrap_or_default(),
            message: status.message().to_string(),
        }
    }
}

/// A connection to Gatehouse acting with one bearer credential (an access
/// token or an API key secret). `Debug` shows no credential.
#[derive(Clone)]
pub struct AdminClient {
    channel: Channel,
    authorization: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    credential: String,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient").finish_non_exhaustive()
    }
}

impl AdminClient {
    /// Connects to the gRPC address `addr` (e.g. `http://127.0.0.1:50051`).
    pub async fn connect(addr: &str, credential: &str) -> Result<Self, AdminError> {
        let authorization = format!("Bearer {}", credential.trim())
            .parse()
            .map_err(|_| AdminError::Config("the credential is not a valid header value".into()))?;
        // `host:port` parses as a URI without a scheme and then fails only
        // as "transport error": say what is wrong instead.
        if !(addr.starts_with("http://") || addr.starts_with("https://")) {
            return Err(AdminError::Config(format!(
                "invalid address {addr:?}: give a URL with its scheme, such as http://{}",
                addr.split("://").last().unwrap_or(addr)
            )));
        }
        let channel = Channel::from_shared(addr.to_string())
            .map_err(|e| AdminError::Config(format!("invalid address {addr:?}: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| AdminError::Unreachable {
                addr: addr.to_string(),
                message: causes(&e),
            })?;
        Ok(Self {
            channel,
            authorization,
            credential: credential.trim().to_string(),
        })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        request
    }

    fn keys(&self) -> KeyServiceClient<Channel> {
        KeyServiceClient::new(self.channel.clone())
    }

    /// Creates a key: the key and its secret, shown this once.
    pub async fn create_key(
        &self,
        account_id: &str,
        name: &str,
        scopes: Vec<String>,
        expires_at: Option<prost_types::Timestamp>,
    ) -> Result<(pb::ApiKey, String), AdminError> {
        let created = self
            .keys()
            .create_api_key(self.request(pb::CreateApiKeyRequest {
                account_id: account_id.into(),
                name: name.into(),
                scopes,
                expires_at,
            }))
            .await?
            .into_inner();
        Ok((created.key.unwrap_or_default(), created.secret))
    }

    /// Every key of the account (all pages).
    pub async fn list_keys(
        &self,
        account_id: &str,
        include_deleted: bool,
    ) -> Result<Vec<pb::ApiKey>, AdminError> {
        let mut keys = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .keys()
                .list_api_keys(self.request(pb::ListApiKeysRequest {
                    account_id: account_id.into(),
                    page_size: 500,
                    page_token: page_token.clone(),
                    include_deleted,
                }))
                .await?
                .into_inner();
            keys.extend(page.keys);
            if page.next_page_token.is_empty() {
                return Ok(keys);
            }
            page_token = page.next_page_token;
        }
    }

    pub async fn get_key(&self, account_id: &str, key_id: &str) -> Result<pb::ApiKey, AdminError> {
        Ok(self
            .keys()
            .get_api_key(self.request(pb::GetApiKeyRequest {
                account_id: account_id.into(),
                key_id: key_id.into(),
            }))
            .await?
            .into_inner()
            .key
            .unwrap_or_default())
    }

    /// A new secret; the old one works for `grace` (default 24 h).
    pub async fn rotate_key(
        &self,
        account_id: &str,
        key_id: &str,
        grace: Option<prost_types::Duration>,
    ) -> Result<pb::RotateApiKeyResponse, AdminError> {
        Ok(self
            .keys()
            .rotate_api_key(self.request(pb::RotateApiKeyRequest {
                account_id: account_id.into(),
                key_id: key_id.into(),
                grace_period: grace,
            }))
            .await?
            .into_inner())
    }

    pub async fn revoke_key(
        &self,
        account_id: &str,
        key_id: &str,
        reason: &str,
    ) -> Result<pb::ApiKey, AdminError> {
        Ok(self
            .keys()
            .revoke_api_key(self.request(pb::RevokeApiKeyRequest {
                account_id: account_id.into(),
                key_id: key_id.into(),
                reason: reason.into(),
            }))
            .await?
            .into_inner()
            .key
            .unwrap_or_default())
    }

    pub async fn delete_key(
        &self,
        account_id: &str,
        key_id: &str,
        reason: &str,
    ) -> Result<(), AdminError> {
        self.keys()
            .delete_api_key(self.request(pb::DeleteApiKeyRequest {
                account_id: account_id.into(),
                key_id: key_id.into(),
                reason: reason.into(),
            }))
            .await?;
        Ok(())
    }

    /// Every activity entry of the account since `since` (all pages).
    pub async fn list_activity(
        &self,
        account_id: &str,
        key_id: Option<&str>,
        since: Option<prost_types::Timestamp>,
    ) -> Result<Vec<pb::KeyActivity>, AdminError> {
        let mut entries = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = AuditServiceClient::new(self.channel.clone())
                .list_key_activity(self.request(pb::ListKeyActivityRequest {
                    account_id: account_id.into(),
                    key_id: key_id.unwrap_or_default().into(),
                    since,
                    page_size: 1000,
                    page_token: page_token.clone(),
                    ..Default::default()
                }))
                .await?
                .into_inner();
            entries.extend(page.activity);
            if page.next_page_token.is_empty() {
                return Ok(entries);
            }
            page_token = page.next_page_token;
        }
    }

    /// The activity log's history, then its live tail; the stream ends with
    /// an error once the credential stops being good.
    pub async fn watch_activity(
        &self,
        account_id: &str,
        key_id: Option<&str>,
        since: Option<prost_types::Timestamp>,
    ) -> Result<tonic::Streaming<pb::KeyActivity>, AdminError> {
        Ok(AuditServiceClient::new(self.channel.clone())
            .watch_key_activity(self.request(pb::WatchKeyActivityRequest {
                account_id: account_id.into(),
                key_id: key_id.unwrap_or_default().into(),
                since,
                kinds: vec![],
            }))
            .await?
            .into_inner())
    }

    fn scopes(&self) -> ScopeServiceClient<Channel> {
        ScopeServiceClient::new(self.channel.clone())
    }

    /// Defines (or redescribes) a scope: the scope and whether anything changed.
    pub async fn define_scope(
        &self,
        name: &str,
        description: &str,
    ) -> Result<(pb::ScopeInfo, bool), AdminError> {
        let defined = self
            .scopes()
            .define_scope(self.request(pb::DefineScopeRequest {
                name: name.into(),
                description: description.into(),
            }))
            .await?
            .into_inner();
        Ok((defined.scope.unwrap_or_default(), defined.changed))
    }

    pub async fn list_scopes(&self) -> Result<Vec<pb::ScopeInfo>, AdminError> {
        Ok(self
            .scopes()
            .list_scopes(self.request(pb::ListScopesRequest {}))
            .await?
            .into_inner()
            .scopes)
    }

    pub async fn retire_scope(&self, name: &str) -> Result<pb::ScopeInfo, AdminError> {
        Ok(self
            .scopes()
            .retire_scope(self.request(pb::RetireScopeRequest { name: name.into() }))
            .await?
            .into_inner()
            .scope
            .unwrap_or_default())
    }

    /// Imports `(name, description)` definitions in one change.
    pub async fn import_scopes(
        &self,
        definitions: Vec<(String, String)>,
        prune: bool,
    ) -> Result<pb::ImportScopesResponse, AdminError> {
        Ok(self
            .scopes()
            .import_scopes(
                self.request(pb::ImportScopesRequest {
                    scopes: definitions
                        .into_iter()
                        .map(|(name, description)| pb::ScopeDefinition { name, description })
                        .collect(),
                    prune,
                }),
            )
            .await?
            .into_inner())
    }

    /// Creates an account, with its owner when `owner` (username, password)
    /// is given.
    pub async fn create_account(
        &self,
        name: &str,
        owner: Option<(String, String)>,
    ) -> Result<pb::CreateAccountResponse, AdminError> {
        let (owner_username, owner_password) = owner.unwrap_or_default();
        Ok(AccountServiceClient::new(self.channel.clone())
            .create_account(self.request(pb::CreateAccountRequest {
                name: name.into(),
                owner_username,
                owner_password,
            }))
            .await?
            .into_inner())
    }

    pub async fn create_user(
        &self,
        account_id: &str,
        username: &str,
        password: String,
        scopes: Vec<String>,
    ) -> Result<pb::User, AdminError> {
        Ok(AccountServiceClient::new(self.channel.clone())
            .create_user(self.request(pb::CreateUserRequest {
                account_id: account_id.into(),
                username: username.into(),
                password,
                scopes,
            }))
            .await?
            .into_inner()
            .user
            .unwrap_or_default())
    }

    /// Asks the verifier whether this client's own credential holds `scopes`.
    pub async fn verify_self(&self, scopes: Vec<String>) -> Result<pb::Principal, AdminError> {
        Ok(VerifierServiceClient::new(self.channel.clone())
            .verify(pb::VerifyRequest {
                credential: self.credential.clone(),
                required_scopes: scopes,
                audience: String::new(),
            })
            .await?
            .into_inner()
            .principal
            .unwrap_or_default())
    }
}

/// `error` and its causes on one line (`transport error: tcp connect error:
/// Connection refused`), each cause once: tonic's own text is only the first.
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
