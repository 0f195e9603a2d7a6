//! `HubSpotClient`: every HubSpot call goes through [`HubSpotClient::call`], which admits it
//! against the daily reserve, waits for a slot in its budget, adds the token, sends, reads the
//! rate-limit headers, and acts on the retry decision. Endpoints (`contacts.rs`, …) only build
//! requests and read answers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::Method;
use secrecy::ExposeSecret;
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::auth::{HubSpotAuth, HubSpotAuthError};
use super::limiter::{Budget, HubSpotLimits, Priority, ReserveReached};
use super::retry::{HubSpotApiError, Outcome, RetryDecision, RetryPolicy, decide};
use crate::transport::TransportError;

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

/// Calls made, by endpoint, and what they cost.
#[derive(Debug, Default)]
pub struct HubSpotStats {
    calls: Mutex<BTreeMap<&'static str, u64>>,
    retries: AtomicU64,
    rate_limited: AtomicU64,
}

impl HubSpotStats {
    /// Requests sent, by endpoint (retries included: each costs quota).
    pub fn calls(&self) -> BTreeMap<&'static str, u64> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Requests sent in all.
    pub fn total(&self) -> u64 {
        self.calls().values().sum()
    }

    /// Requests sent again after a retryable answer.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// 429 answers received.
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }

    fn count(&self, endpoint: &'static str) {
        if let Ok(mut c) = self.calls.lock() {
            *c.entry(endpoint).or_default() += 1;
        }
    }
}

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
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    config: HubSpotClientConfig,
    auth: HubSpotAuth,
    limits: HubSpotLimits,
    stats: HubSpotStats,
    jitter: crate::jitter::Jitter,
}

impl HubSpotClient {
    /// A client for one portal.
    pub fn new(config: HubSpotClientConfig, auth: HubSpotAuth) -> Result<Self, reqwest::Error> {
        let mut http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if let Some(t) = config.timeout {
            http = http.timeout(t);
        }
        let limits = HubSpotLimits::new(
            config.burst,
            config.interval,
            config.search_per_second,
            config.daily_reserve,
        )
        .with_daily(config.daily_allocation, config.time_zone);
        Ok(Self {
            inner: Arc::new(Inner {
                http: http.build()?,
                config,
                auth,
                limits,
                stats: HubSpotStats::default(),
                jitter: crate::jitter::Jitter::default(),
            }),
        })
    }

    /// What this client has spent.
    pub fn stats(&self) -> &HubSpotStats {
        &self.inner.stats
    }

    /// Its budgets.
    pub fn limits(&self) -> &HubSpotLimits {
        &self.inner.limits
    }

    /// Its credentials.
    pub fn auth(&self) -> &HubSpotAuth {
        &self.inner.auth
    }

    /// Sends `call`, retrying as the retry policy decides, and decodes the answer.
    pub(crate) async fn call<T: DeserializeOwned, B: Serialize>(&self, call: Call<'_, B>) -> Result<T, HubSpotError> {
        self.call_with(call, &self.inner.config.retry).await
    }

    /// The retry policy calls are sent with.
    pub(crate) fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.config.retry
    }

    /// [`HubSpotClient::call`] with another retry policy: a create that is not safe to repeat
    /// is sent once, and its caller looks up what it made before sending it again.
    pub(crate) async fn call_with<T: DeserializeOwned, B: Serialize>(
        &self,
        call: Call<'_, B>,
        policy: &RetryPolicy,
    ) -> Result<T, HubSpotError> {
        let inner = &*self.inner;
        inner.limits.admit(call.priority, chrono::Utc::now())?;
        let mut url = inner
            .config
            .base_url
            .join(call.path.trim_start_matches('/'))
            .map_err(|e| HubSpotError::Decode {
                endpoint: call.endpoint,
                message: format!("bad path {}: {e}", call.path),
            })?;
        if !call.query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(call.query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut attempt = 0;
        let mut refreshed = false;
        loop {
            inner.limits.acquire(call.budget).await;
            let token = inner.auth.token().await?;
            let mut request = inner
                .http
                .request(call.method.clone(), url.clone())
                .bearer_auth(token.secret.expose_secret());
            if let Some(body) = call.body {
                request = request.json(body);
            }
            inner.stats.count(call.endpoint);
            inner.limits.record_call(chrono::Utc::now());
            let sent = request.send().await;
            // Each failure is named: no transport error poses as a status, and a 2xx whose body
            // could not be read is retried, never read as an empty answer.
            let (status, body, retry_after, failure) = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers();
                    if let Some(left) = headers
                        .get("x-hubspot-ratelimit-daily-remaining")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                    {
                        inner.limits.observe_daily_remaining(left, chrono::Utc::now());
                    }
                    let retry_after = headers
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    match resp.text().await {
                        Ok(text) => (Some(status), text, retry_after, None),
                        Err(e) if e.is_timeout() => (None, String::new(), None, None),
                        Err(_) => (
                            Some(status),
                            String::new(),
                            retry_after,
                            Some(TransportError::BodyRead { status }),
                        ),
                    }
                }
                Err(e) if e.is_timeout() => (None, String::new(), None, None),
                Err(e) => (None, String::new(), None, Some(TransportError::of_send(&e))),
            };
            let outcome = match (status, failure) {
                (_, Some(kind)) => Outcome::Transport(kind),
                (None, None) => Outcome::Timeout,
                (Some(s), None) => Outcome::Response {
                    status: s,
                    body: &body,
                    retry_after: retry_after.as_deref(),
                },
            };
            if status == Some(429) {
                inner.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            }
            match decide(outcome, attempt, refreshed, policy, self.inner.jitter.next()) {
                RetryDecision::Done => {
                    let text = if body.trim().is_empty() { "null" } else { &body };
                    return serde_json::from_str(text).map_err(|e| HubSpotError::Decode {
                        endpoint: call.endpoint,
                        message: e.to_string(),
                    });
                }
                RetryDecision::Retry { after, reason } => {
                    tracing::info!(
                        endpoint = call.endpoint,
                        ?reason,
                        wait_ms = after.as_millis() as u64,
                        attempt,
                        "HubSpot call retried"
                    );
                    inner.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(after).await;
                    attempt += 1;
                }
                RetryDecision::RefreshToken => {
                    inner.auth.invalidate(token.generation).await;
                    refreshed = true;
                }
                RetryDecision::StopForToday(error) => {
                    return Err(HubSpotError::DailyLimit {
                        endpoint: call.endpoint,
                        error,
                    });
                }
                RetryDecision::Fail(error) => {
                    return Err(HubSpotError::Api {
                        endpoint: call.endpoint,
                        error,
                    });
                }
            }
        }
    }
}
