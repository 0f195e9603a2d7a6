//! `HubSpotClient`: every HubSpot call goes through [`HubSpotClient::call`], which sends it
//! through the shared call loop ([`crate::transport::call::Transport`]) under HubSpot's policy,
//! [`HubSpotApi`]: admitted against the daily reserve, paced by its budget, sent with the token,
//! the rate-limit headers read, the answer judged by [`decide`]. Endpoints (`contacts.rs`, …)
//! only build requests and read answers.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use secrecy::ExposeSecret;
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::auth::{HubSpotAuth, HubSpotAuthError, HubSpotToken};
use super::limiter::{Budget, HubSpotLimits, Priority, ReserveReached};
use super::retry::{HubSpotApiError, RetryDecision, RetryPolicy, decide};
use crate::transport::call::{Answer, ApiPolicy, Attempt, Request, Transport, Verdict};

/// Why a HubSpot call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum HubSpotError {
    /// HubSpot refused the request (a 4xx other than 401/429, or retries exhausted).
    #[error("{endpoint}: {error}")]
    Api {
        /// Which call.
        endpoint: &'static str,
        /// HubSpot's own words.
        error: HubSpotApiError,
    },
    /// The portal's daily limit is spent: stop, keep the checkpoint, resume after HubSpot's reset
    /// (midnight in the portal's time zone).
    #[error(
        "{endpoint}: HubSpot daily limit reached ({error}); stopping with the checkpoint kept, resume after the portal's midnight"
    )]
    DailyLimit {
        /// Which call.
        endpoint: &'static str,
        /// HubSpot's own words.
        error: HubSpotApiError,
    },
    /// Background work paused to keep the daily reserve for real-time work.
    #[error(transparent)]
    Reserve(#[from] ReserveReached),
    /// No token.
    #[error(transparent)]
    Auth(#[from] HubSpotAuthError),
    /// A 2xx whose body is not what the endpoint sends.
    #[error("{endpoint}: unexpected answer from HubSpot: {message}")]
    Decode {
        /// Which call.
        endpoint: &'static str,
        /// The parse error.
        message: String,
    },
}

impl HubSpotError {
    /// True when the job should stop for now and resume later, with nothing lost.
    pub fn is_pause(&self) -> bool {
        matches!(self, HubSpotError::DailyLimit { .. } | HubSpotError::Reserve(_))
    }
}

/// Client settings beyond credentials.
#[derive(Debug, Clone)]
pub struct HubSpotClientConfig {
    /// API base URL.
    pub base_url: Url,
    /// General calls allowed per `interval`.
    pub burst: u32,
    /// The rolling window HubSpot counts `burst` in (10 s).
    pub interval: Duration,
    /// Search calls per second.
    pub search_per_second: u32,
    /// Daily calls kept for real-time work.
    pub daily_reserve: u64,
    /// OAuth apps: calls per HubSpot day leadsync may spend (HubSpot reports no daily count
    /// to them); `None`: no daily budget unless HubSpot reports one.
    pub daily_allocation: Option<u64>,
    /// The portal's time zone: its daily limit resets at midnight there.
    pub time_zone: chrono_tz::Tz,
    /// Per-request timeout; `None` for none (tests on a paused clock).
    pub timeout: Option<Duration>,
    /// Retry policy.
    pub retry: RetryPolicy,
}

impl HubSpotClientConfig {
    /// From the `[hubspot]` settings.
    pub fn from_settings(s: &crate::config::HubSpotSettings) -> Result<Self, url::ParseError> {
        Ok(Self {
            base_url: Url::parse(&s.api_base_url)?,
            burst: s.burst_per_10s,
            interval: Duration::from_secs(10),
            search_per_second: s.search_per_second,
            daily_reserve: s.daily_reserve,
            daily_allocation: s.daily_allocation,
            time_zone: s.time_zone,
            timeout: Some(Duration::from_secs(30)),
            retry: RetryPolicy::default(),
        })
    }
}

/// Calls made, by endpoint, and what they cost (retries and 429s counted).
pub type HubSpotStats = crate::transport::call::CallStats;

/// One call, as the endpoint functions describe it.
pub(crate) struct Call<'a, B: Serialize> {
    pub endpoint: &'static str,
    pub method: Method,
    pub path: &'a str,
    pub query: &'a [(&'a str, String)],
    pub body: Option<&'a B>,
    pub budget: Budget,
    pub priority: Priority,
}

/// A HubSpot portal's API, within its budgets.
#[derive(Debug, Clone)]
pub struct HubSpotClient {
    inner: Arc<Transport<HubSpotApi>>,
}

/// HubSpot's [`ApiPolicy`]: the daily reserve admits a call, its budget (the rolling window or
/// search) paces it, the portal's token authorises it, `X-HubSpot-RateLimit-Daily-Remaining` is
/// read from every answer, and [`decide`] judges it.
#[derive(Debug)]
pub struct HubSpotApi {
    config: HubSpotClientConfig,
    auth: HubSpotAuth,
    limits: HubSpotLimits,
}

impl ApiPolicy for HubSpotApi {
    const NAME: &'static str = "HubSpot";
    type Lane = (Budget, Priority);
    type Retry = RetryPolicy;
    type Token = HubSpotToken;
    type Error = HubSpotError;

    fn admit(&self, (_, priority): (Budget, Priority)) -> Result<(), HubSpotError> {
        Ok(self.limits.admit(priority, chrono::Utc::now())?)
    }

    async fn pace(&self, (budget, priority): (Budget, Priority)) -> Result<(), HubSpotError> {
        self.limits.acquire_for(budget, priority).await;
        Ok(())
    }

    async fn token(&self) -> Result<HubSpotToken, HubSpotError> {
        Ok(self.auth.token().await?)
    }

    async fn refresh(&self, token: &HubSpotToken) {
        self.auth.invalidate(token.generation).await;
    }

    fn url(&self, _: &HubSpotToken, path: &str) -> Result<Url, url::ParseError> {
        self.config.base_url.join(path)
    }

    fn authorise(&self, request: reqwest::RequestBuilder, token: &HubSpotToken) -> reqwest::RequestBuilder {
        request.bearer_auth(token.secret.expose_secret())
    }

    fn sent(&self) {
        self.limits.record_call(chrono::Utc::now());
    }

    fn observe(&self, headers: &reqwest::header::HeaderMap) {
        if let Some(left) = headers
            .get("x-hubspot-ratelimit-daily-remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
        {
            self.limits.observe_daily_remaining(left, chrono::Utc::now());
        }
    }

    fn judge(&self, answer: Answer<'_>, at: Attempt, retry: &RetryPolicy) -> Verdict<HubSpotError> {
        match decide(answer, at.number, at.refreshed, retry, at.jitter) {
            RetryDecision::Done => Verdict::Done,
            RetryDecision::Retry { after, reason } => Verdict::Retry {
                after,
                reason: format!("{reason:?}"),
            },
            RetryDecision::RefreshToken => Verdict::Refresh,
            RetryDecision::StopForToday(error) => Verdict::Fail(HubSpotError::DailyLimit {
                endpoint: at.endpoint,
                error,
            }),
            RetryDecision::Fail(error) => Verdict::Fail(HubSpotError::Api {
                endpoint: at.endpoint,
                error,
            }),
        }
    }

    fn decode_error(&self, endpoint: &'static str, message: String) -> HubSpotError {
        HubSpotError::Decode { endpoint, message }
    }
}

impl HubSpotClient {
    /// A client for one portal.
    pub fn new(config: HubSpotClientConfig, auth: HubSpotAuth) -> Result<Self, reqwest::Error> {
        let limits = HubSpotLimits::new(
            config.burst,
            config.interval,
            config.search_per_second,
            config.daily_reserve,
        )
        .with_daily(config.daily_allocation, config.time_zone);
        let timeout = config.timeout;
        let api = HubSpotApi { config, auth, limits };
        Ok(Self {
            inner: Arc::new(Transport::new(api, timeout)?),
        })
    }

    /// What this client has spent.
    pub fn stats(&self) -> &HubSpotStats {
        self.inner.stats()
    }

    /// Its budgets.
    pub fn limits(&self) -> &HubSpotLimits {
        &self.inner.policy().limits
    }

    /// Its credentials.
    pub fn auth(&self) -> &HubSpotAuth {
        &self.inner.policy().auth
    }

    /// Sends `call`, retrying as the retry policy decides, and decodes the answer.
    pub(crate) async fn call<T: DeserializeOwned, B: Serialize>(&self, call: Call<'_, B>) -> Result<T, HubSpotError> {
        self.call_with(call, self.retry_policy()).await
    }

    /// The retry policy calls are sent with.
    pub(crate) fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.policy().config.retry
    }

    /// [`HubSpotClient::call`] with another retry policy: a create that is not safe to repeat
    /// is sent once, and its caller looks up what it made before sending it again.
    pub(crate) async fn call_with<T: DeserializeOwned, B: Serialize>(
        &self,
        call: Call<'_, B>,
        policy: &RetryPolicy,
    ) -> Result<T, HubSpotError> {
        let request = Request {
            endpoint: call.endpoint,
            method: call.method,
            path: call.path,
            query: call.query,
            body: call.body,
        };
        self.inner.send(request, (call.budget, call.priority), policy).await
    }
}
