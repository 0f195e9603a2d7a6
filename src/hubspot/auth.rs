//! HubSpot credentials: a static private-app / service-key token, or OAuth 2.0 refresh tokens.
//!
//! OAuth access tokens last 30 minutes. The token is refreshed ahead of expiry, once for all
//! concurrent callers (they wait on one lock and find the fresh token). After a 401 the caller
//! invalidates the token it used, by generation, so fifty requests failing together cause one
//! refresh, not fifty. A refused refresh token (`BAD_REFRESH_TOKEN`: the app was uninstalled or
//! the token revoked) is fatal and says what to do; nothing retries it in a loop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, RefreshToken, RequestTokenError, TokenResponse,
    TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Refresh this long before the access token expires.
const REFRESH_AHEAD: Duration = Duration::from_secs(5 * 60);
/// Assumed lifetime when the token response does not say.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(30 * 60);

type OAuthClient = BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum HubSpotAuthError {
    /// The refresh token is revoked or invalid: a person must reinstall or reconnect.
    #[error(
        "HubSpot refused the refresh token for portal {portal} (BAD_REFRESH_TOKEN): the app was uninstalled \
         or its token revoked. Reinstall the app in that portal and set hubspot.refresh_token \
         (or LEADSYNC__HUBSPOT__REFRESH_TOKEN) to the new refresh token"
    )]
    BadRefreshToken {
        /// Portal id, or `unknown`.
        portal: String,
    },
    /// The token endpoint could not be reached or answered something else; worth a retry later.
    #[error("HubSpot token refresh failed for portal {portal}: {message}")]
    Refresh {
        /// Portal id, or `unknown`.
        portal: String,
        /// What went wrong (never the token).
        message: String,
    },
    /// The configuration holds neither a private-app token nor OAuth credentials.
    #[error("no HubSpot credentials: set hubspot.private_app_token, or client_id, client_secret and refresh_token")]
    NotConfigured,
}

/// A bearer token and the generation it belongs to (for [`HubSpotAuth::invalidate`]).
#[derive(Debug, Clone)]
pub struct HubSpotToken {
    /// The bearer token.
    pub secret: SecretString,
    /// Which refresh produced it (0 for a static token).
    pub generation: u64,
}

/// The credentials of one portal.
#[derive(Debug)]
pub struct HubSpotAuth {
    portal: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Static(SecretString),
    OAuth(Box<OAuth>),
}

#[derive(Debug)]
struct OAuth {
    client: OAuthClient,
    http: reqwest::Client,
    state: Mutex<OAuthState>,
    refreshes: AtomicU64,
}

#[derive(Debug)]
struct OAuthState {
    refresh_token: SecretString,
    current: Option<(HubSpotToken, Instant)>,
    generation: u64,
}

impl HubSpotAuth {
    /// A static private-app or service-key token.
    pub fn static_token(portal: Option<u64>, token: SecretString) -> Self {
        Self {
            portal: portal_name(portal),
            kind: Kind::Static(token),
        }
    }

    /// OAuth refresh-token flow against `token_url`.
    pub fn oauth(
        portal: Option<u64>,
        token_url: &str,
        client_id: &str,
        client_secret: SecretString,
        refresh_token: SecretString,
    ) -> Result<Self, HubSpotAuthError> {
        let portal = portal_name(portal);
        let url = TokenUrl::new(token_url.to_string()).map_err(|e| HubSpotAuthError::Refresh {
            portal: portal.clone(),
            message: format!("token URL `{token_url}`: {e}"),
        })?;
        let client = BasicClient::new(ClientId::new(client_id.to_string()))
            .set_client_secret(ClientSecret::new(client_secret.expose_secret().to_string()))
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(url);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| HubSpotAuthError::Refresh {
                portal: portal.clone(),
                message: e.to_string(),
            })?;
        Ok(Self {
            portal,
            kind: Kind::OAuth(Box::new(OAuth {
                client,
                http,
                state: Mutex::new(OAuthState {
                    refresh_token,
                    current: None,
                    generation: 0,
                }),
                refreshes: AtomicU64::new(0),
            })),
        })
    }

    /// From the `[hubspot]` settings: the private-app token wins when both are set.
    pub fn from_settings(s: &crate::config::HubSpotSettings) -> Result<Self, HubSpotAuthError> {
        if let Some(t) = &s.private_app_token {
            return Ok(Self::static_token(s.portal_id, t.clone()));
        }
        match (&s.client_id, &s.client_secret, &s.refresh_token) {
            (Some(id), Some(secret), Some(refresh)) => {
                Self::oauth(s.portal_id, &s.token_url, id, secret.clone(), refresh.clone())
            }
            _ => Err(HubSpotAuthError::NotConfigured),
        }
    }

    /// The portal this is for, as shown in messages.
    pub fn portal(&self) -> &str {
        &self.portal
    }

    /// A valid bearer token, refreshing first when the current one is close to expiry.
    pub async fn token(&self) -> Result<HubSpotToken, HubSpotAuthError> {
        let oauth = match &self.kind {
            Kind::Static(t) => {
                return Ok(HubSpotToken {
                    secret: t.clone(),
                    generation: 0,
                });
            }
            Kind::OAuth(o) => o,
        };
        let mut state = oauth.state.lock().await;
        if let Some((token, expires)) = &state.current {
            if Instant::now() + REFRESH_AHEAD < *expires {
                return Ok(token.clone());
            }
        }
        self.refresh(oauth, &mut state).await
    }

    /// Forgets the token of `generation` after HubSpot answered 401 to it; a newer one is kept.
    pub async fn invalidate(&self, generation: u64) {
        if let Kind::OAuth(o) = &self.kind {
            let mut state = o.state.lock().await;
            if state.current.as_ref().is_some_and(|(t, _)| t.generation == generation) {
                state.current = None;
            }
        }
    }

    /// How many refreshes were made (for tests and metrics).
    pub fn refresh_count(&self) -> u64 {
        match &self.kind {
            Kind::Static(_) => 0,
            Kind::OAuth(o) => o.refreshes.load(Ordering::Relaxed),
        }
    }

    async fn refresh(&self, oauth: &OAuth, state: &mut OAuthState) -> Result<HubSpotToken, HubSpotAuthError> {
        oauth.refreshes.fetch_add(1, Ordering::Relaxed);
        let refresh = RefreshToken::new(state.refresh_token.expose_secret().to_string());
        let response = oauth
            .client
            .exchange_refresh_token(&refresh)
            .request_async(&oauth.http)
            .await
            .map_err(|e| self.refresh_error(e))?;
        // A provider that rotates refresh tokens returns a new one: keep it.
        if let Some(r) = response.refresh_token() {
            state.refresh_token = SecretString::from(r.secret().clone());
        }
        let lifetime = response.expires_in().unwrap_or(DEFAULT_LIFETIME);
        state.generation += 1;
        let token = HubSpotToken {
            secret: SecretString::from(response.access_token().secret().clone()),
            generation: state.generation,
        };
        state.current = Some((token.clone(), Instant::now() + lifetime));
        tracing::debug!(portal = %self.portal, generation = token.generation, "HubSpot access token refreshed");
        Ok(token)
    }

    fn refresh_error<RE: std::error::Error + 'static>(
        &self,
        e: RequestTokenError<RE, oauth2::basic::BasicErrorResponse>,
    ) -> HubSpotAuthError {
        let portal = self.portal.clone();
        match e {
            RequestTokenError::ServerResponse(r) if *r.error() == BasicErrorResponseType::InvalidGrant => {
                HubSpotAuthError::BadRefreshToken { portal }
            }
            RequestTokenError::ServerResponse(r) => HubSpotAuthError::Refresh {
                portal,
                message: format!("{} {}", r.error(), r.error_description().map_or("", String::as_str)),
            },
            RequestTokenError::Request(e) => HubSpotAuthError::Refresh {
                portal,
                message: format!("request failed: {e}"),
            },
            RequestTokenError::Parse(e, _) => HubSpotAuthError::Refresh {
                portal,
                message: format!("unreadable token response: {e}"),
            },
            RequestTokenError::Other(m) => HubSpotAuthError::Refresh { portal, message: m },
        }
    }
}

fn portal_name(portal: Option<u64>) -> String {
    portal.map_or_else(|| "unknown".to_string(), |p| p.to_string())
}
