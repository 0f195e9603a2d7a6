//! Salesforce credentials: the JWT bearer flow (an RS256 assertion signed with the connected
//! app's key; no refresh token, a new token is minted on expiry), the refresh-token flow (with
//! rotation: a refresh token returned by a refresh replaces the held one) and client credentials.
//!
//! Salesforce returns no `expires_in`: a token is used until it is older than `max_age` or until
//! an API call answers 401 / `INVALID_SESSION_ID`, then the caller invalidates it by generation,
//! so fifty requests failing together mint one token, not fifty. Concurrent callers wait on one
//! lock and find the fresh token (single flight). API calls go to the `instance_url` the token
//! endpoint returns, never to the login URL.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Lifetime of a JWT assertion (Salesforce accepts up to 3 minutes).
const ASSERTION_LIFETIME_SECS: i64 = 180;
/// Token requests wait this long at most (less when the client's own request timeout is shorter).
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Re-mint a token older than this (the org's default session timeout is 2 hours).
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(90 * 60);

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum SalesforceAuthError {
    /// The configuration names no complete flow.
    #[error(
        "no Salesforce credentials: set salesforce.client_id with username and private_key_path (JWT bearer), \
         or refresh_token (with client_secret if the app requires it), or client_secret (client credentials)"
    )]
    NotConfigured,
    /// The private key could not be read or parsed.
    #[error("Salesforce private key {path}: {message}")]
    Key {
        /// Key file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The token endpoint refused the grant (`invalid_grant`, `invalid_client`, …): a person must act.
    #[error(
        "Salesforce refused the {flow} grant: {error}: {description}. Check the connected app, its \
         pre-authorized users and the configured credentials"
    )]
    Refused {
        /// Which flow.
        flow: &'static str,
        /// OAuth error code.
        error: String,
        /// Salesforce's description.
        description: String,
    },
    /// The token endpoint could not be reached or answered something unreadable; worth a retry later.
    #[error("Salesforce token request ({flow}) failed: {message}")]
    Token {
        /// Which flow.
        flow: &'static str,
        /// What went wrong (never a secret).
        message: String,
    },
}

/// An access token, the instance it is valid for, and the generation that minted it.
#[derive(Debug, Clone)]
pub struct SalesforceToken {
    /// Bearer token.
    pub secret: SecretString,
    /// `instance_url` from the token response (`https://acme.my.salesforce.com`).
    pub instance_url: String,
    /// Which mint produced it (for [`SalesforceAuth::invalidate`]).
    pub generation: u64,
    /// The user the token acts as (the last part of the response's identity URL `id`):
    /// leadsync's integration user, whose own edits the opportunity feedback recognises.
    pub user_id: Option<String>,
}

/// The connected app's private key; never printed.
struct SigningKey(jsonwebtoken::EncodingKey);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([REDACTED])")
    }
}

/// The OAuth flow in use.
#[derive(Debug)]
enum Flow {
    Jwt {
        client_id: String,
        username: String,
        key: Box<SigningKey>,
    },
    Refresh {
        client_id: String,
        client_secret: Option<SecretString>,
    },
    ClientCredentials {
        client_id: String,
        client_secret: SecretString,
    },
}

impl Flow {
    fn name(&self) -> &'static str {
        match self {
            Flow::Jwt { .. } => "JWT bearer",
            Flow::Refresh { .. } => "refresh token",
            Flow::ClientCredentials { .. } => "client credentials",
        }
    }
}

#[derive(Debug)]
struct State {
    refresh_token: Option<SecretString>,
    current: Option<(SalesforceToken, Instant)>,
    generation: u64,
}

/// The credentials of one org.
#[derive(Debug)]
pub struct SalesforceAuth {
    login_url: String,
    flow: Flow,
    http: reqwest::Client,
    state: Mutex<State>,
    mints: AtomicU64,
    max_age: Duration,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    instance_url: String,
    #[serde(default)]
    refresh_token: Option<String>,
    /// `https://login.salesforce.com/id/{org id}/{user id}`.
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: String,
}

impl SalesforceAuth {
    /// JWT bearer flow with a PEM private key (PKCS#1 or PKCS#8).
    pub fn jwt(
        login_url: &str,
        client_id: &str,
        username: &str,
        private_key_pem: &[u8],
    ) -> Result<Self, SalesforceAuthError> {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem).map_err(|e| SalesforceAuthError::Key {
            path: "(in memory)".into(),
            message: e.to_string(),
        })?;
        Self::build(
            login_url,
            Flow::Jwt {
                client_id: client_id.into(),
                username: username.into(),
                key: Box::new(SigningKey(key)),
            },
            None,
        )
    }

    /// Refresh-token flow; a rotated refresh token replaces `refresh_token` in memory
    /// (see [`SalesforceAuth::current_refresh_token`] to persist it).
    pub fn refresh_token(
        login_url: &str,
        client_id: &str,
        client_secret: Option<SecretString>,
        refresh_token: SecretString,
    ) -> Result<Self, SalesforceAuthError> {
        Self::build(
            login_url,
            Flow::Refresh {
                client_id: client_id.into(),
                client_secret,
            },
            Some(refresh_token),
        )
    }

    /// Client-credentials flow (the connected app's "Run As" user).
    pub fn client_credentials(
        login_url: &str,
        client_id: &str,
        client_secret: SecretString,
    ) -> Result<Self, SalesforceAuthError> {
        Self::build(
            login_url,
            Flow::ClientCredentials {
                client_id: client_id.into(),
                client_secret,
            },
            None,
        )
    }

    /// From `[salesforce]`: JWT when a key and username are set, else refresh token, else client credentials.
    pub fn from_settings(s: &crate::config::SalesforceSettings) -> Result<Self, SalesforceAuthError> {
        let client_id = s.client_id.as_deref().ok_or(SalesforceAuthError::NotConfigured)?;
        if let (Some(path), Some(user)) = (&s.private_key_path, &s.username) {
            let pem = std::fs::read(path).map_err(|e| SalesforceAuthError::Key {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            return Self::jwt(&s.login_url, client_id, user, &pem).map_err(|e| match e {
                SalesforceAuthError::Key { message, .. } => SalesforceAuthError::Key {
                    path: path.display().to_string(),
                    message,
                },
                other => other,
            });
        }
        if let Some(refresh) = &s.refresh_token {
            return Self::refresh_token(&s.login_url, client_id, s.client_secret.clone(), refresh.clone());
        }
        match &s.client_secret {
            Some(secret) => Self::client_credentials(&s.login_url, client_id, secret.clone()),
            None => Err(SalesforceAuthError::NotConfigured),
        }
    }

    fn build(login_url: &str, flow: Flow, refresh_token: Option<SecretString>) -> Result<Self, SalesforceAuthError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TOKEN_TIMEOUT)
            .build()
            .map_err(|e| SalesforceAuthError::Token {
                flow: flow.name(),
                message: e.to_string(),
            })?;
        Ok(Self {
            login_url: login_url.trim_end_matches('/').to_string(),
            flow,
            http,
            state: Mutex::new(State {
                refresh_token,
                current: None,
                generation: 0,
            }),
            mints: AtomicU64::new(0),
            max_age: DEFAULT_MAX_AGE,
        })
    }

    /// Token-request timeout (default [`TOKEN_TIMEOUT`]); `None` for none. The client sets it
    /// from its own request timeout (see `SalesforceClient::new`), so a client without one (a
    /// paused clock) has token requests without one either.
    pub(super) fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        let mut http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if let Some(t) = timeout {
            http = http.timeout(t);
        }
        if let Ok(http) = http.build() {
            self.http = http;
        }
        self
    }

    /// A valid token, minted first when none is held or it is too old.
    pub async fn token(&self) -> Result<SalesforceToken, SalesforceAuthError> {
        let mut state = self.state.lock().await;
        if let Some((token, minted)) = &state.current {
            if minted.elapsed() < self.max_age {
                return Ok(token.clone());
            }
        }
        self.mint(&mut state).await
    }

    /// Forgets the token of `generation` after Salesforce refused it; a newer one is kept.
    pub async fn invalidate(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state.current.as_ref().is_some_and(|(t, _)| t.generation == generation) {
            state.current = None;
        }
    }

    /// Tokens minted so far (for tests and metrics).
    pub fn mint_count(&self) -> u64 {
        self.mints.load(Ordering::Relaxed)
    }

    /// The refresh token held now (rotated ones included), for the caller to persist.
    pub async fn current_refresh_token(&self) -> Option<SecretString> {
        self.state.lock().await.refresh_token.clone()
    }

    async fn mint(&self, state: &mut State) -> Result<SalesforceToken, SalesforceAuthError> {
        self.mints.fetch_add(1, Ordering::Relaxed);
        let flow = self.flow.name();
        let mut form: Vec<(&str, String)> = Vec::new();
        match &self.flow {
            Flow::Jwt {
                client_id,
                username,
                key,
            } => {
                let claims = Claims {
                    iss: client_id,
                    sub: username,
                    aud: &self.login_url,
                    exp: chrono::Utc::now().timestamp() + ASSERTION_LIFETIME_SECS,
                };
                let assertion = jsonwebtoken::encode(
                    &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
                    &claims,
                    &key.0,
                )
                .map_err(|e| SalesforceAuthError::Token {
                    flow,
                    message: format!("cannot sign the assertion: {e}"),
                })?;
                form.push(("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer".into()));
                form.push(("assertion", assertion));
            }
            Flow::Refresh {
                client_id,
                client_secret,
            } => {
                let refresh = state.refresh_token.as_ref().ok_or(SalesforceAuthError::NotConfigured)?;
                form.push(("grant_type", "refresh_token".into()));
                form.push(("client_id", client_id.clone()));
                if let Some(s) = client_secret {
                    form.push(("client_secret", s.expose_secret().to_string()));
                }
                form.push(("refresh_token", refresh.expose_secret().to_string()));
            }
            Flow::ClientCredentials {
                client_id,
                client_secret,
            } => {
                form.push(("grant_type", "client_credentials".into()));
                form.push(("client_id", client_id.clone()));
                form.push(("client_secret", client_secret.expose_secret().to_string()));
            }
        }
        let url = format!("{}/services/oauth2/token", self.login_url);
        let resp = self
            .http
            .post(&url)
            .form(&form)
            .send()
            .await
            .map_err(|e| SalesforceAuthError::Token {
                flow,
                message: format!("request failed: {e}"),
            })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(match serde_json::from_str::<TokenError>(&text) {
                Ok(e) if status.is_client_error() => SalesforceAuthError::Refused {
                    flow,
                    error: e.error,
                    description: e.error_description,
                },
                _ => SalesforceAuthError::Token {
                    flow,
                    message: format!("HTTP {status}"),
                },
            });
        }
        let body: TokenResponse = serde_json::from_str(&text).map_err(|e| SalesforceAuthError::Token {
            flow,
            message: format!("unreadable token response: {e}"),
        })?;
        // Rotation: the new refresh token replaces the old, which Salesforce has invalidated.
        if let (Some(new), Flow::Refresh { .. }) = (body.refresh_token, &self.flow) {
            state.refresh_token = Some(SecretString::from(new));
        }
        state.generation += 1;
        let token = SalesforceToken {
            secret: SecretString::from(body.access_token),
            instance_url: body.instance_url.trim_end_matches('/').to_string(),
            generation: state.generation,
            user_id: body
                .id
                .as_deref()
                .and_then(|id| id.trim_end_matches('/').rsplit('/').next())
                .filter(|u| u.starts_with("005"))
                .map(str::to_string),
        };
        state.current = Some((token.clone(), Instant::now()));
        tracing::debug!(flow, generation = token.generation, "Salesforce access token minted");
        Ok(token)
    }
}
