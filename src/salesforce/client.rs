//! `SalesforceClient`: every Salesforce REST call goes through [`SalesforceClient::call`], which
//! checks leadsync's share of the org's daily allocation, adds the token, sends to the token's
//! `instance_url`, reads `Sforce-Limit-Info` on every answer, and acts on the retry decision.
//! Endpoints (`rest.rs`) only build requests and read answers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::Method;
use secrecy::ExposeSecret;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::auth::{SalesforceAuth, SalesforceAuthError};
use super::errors::SalesforceRecordError;
use super::limits::{BudgetHold, SalesforceShare, SalesforceUsage, parse_limit_info};
use super::retry::{SalesforceOutcome, SalesforceRetryDecision, SalesforceRetryPolicy, decide};
use crate::transport::TransportError;

/// The window Salesforce counts its daily allocation in.
const WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a Salesforce call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SalesforceError {
    /// Salesforce refused the request (or retries ran out); its codes and messages kept.
    #[error("{endpoint}: {}", describe(errors))]
    Api {
        /// Which call.
        endpoint: &'static str,
        /// Salesforce's own words.
        errors: Vec<SalesforceRecordError>,
    },
    /// `REQUEST_LIMIT_EXCEEDED`: the org's allocation is spent; stop, nothing lost, resume later.
    #[error(
        "{endpoint}: Salesforce API limit reached ({}); promotions wait and resume later",
        describe(errors)
    )]
    RequestLimit {
        /// Which call.
        endpoint: &'static str,
        /// Salesforce's own words.
        errors: Vec<SalesforceRecordError>,
    },
    /// leadsync's configured share of the daily allocation is spent.
    #[error(transparent)]
    Budget(#[from] BudgetHold),
    /// No token.
    #[error(transparent)]
    Auth(#[from] SalesforceAuthError),
    /// A 2xx whose body is not what the endpoint sends.
    #[error("{endpoint}: unexpected answer from Salesforce: {message}")]
    Decode {
        /// Which call.
        endpoint: &'static str,
        /// The parse error.
        message: String,
    },
}

fn describe(errors: &[SalesforceRecordError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.code, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl SalesforceError {
    /// True when the work should stop for now and resume later, with nothing lost.
    pub fn is_pause(&self) -> bool {
        matches!(self, SalesforceError::RequestLimit { .. } | SalesforceError::Budget(_))
    }
}

/// Client settings beyond credentials.
#[derive(Debug, Clone)]
pub struct SalesforceClientConfig {
    /// REST API version, `v62.0`.
    pub api_version: String,
    /// leadsync's share of the org's daily allocation.
    pub share: SalesforceShare,
    /// Per-request timeout; `None` for none (tests on a paused clock).
    pub timeout: Option<Duration>,
    /// Retry policy.
    pub retry: SalesforceRetryPolicy,
}

impl SalesforceClientConfig {
    /// From the `[salesforce]` settings.
    pub fn from_settings(s: &crate::config::SalesforceSettings) -> Self {
        Self {
            api_version: s.api_version.clone(),
            share: SalesforceShare {
                percent: s.daily_share_percent,
            },
            timeout: Some(Duration::from_secs(120)),
            retry: SalesforceRetryPolicy::default(),
        }
    }
}

/// Calls made, by endpoint.
#[derive(Debug, Default)]
pub struct SalesforceStats {
    calls: Mutex<BTreeMap<&'static str, u64>>,
    retries: AtomicU64,
}

impl SalesforceStats {
    /// Requests sent, by endpoint (retries included: each costs allocation).
    pub fn calls(&self) -> BTreeMap<&'static str, u64> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Requests sent in all (token requests excluded: they do not count against the allocation).
    pub fn total(&self) -> u64 {
        self.calls().values().sum()
    }

    /// Requests sent again after a retryable answer.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    fn count(&self, endpoint: &'static str) {
        if let Ok(mut c) = self.calls.lock() {
            *c.entry(endpoint).or_default() += 1;
        }
    }
}

/// One call, as the endpoint functions describe it.
pub(crate) struct Call<'a, B: Serialize> {
    /// Name for stats and errors (`query`, `composite`, `upsert Account`).
    pub endpoint: &'static str,
    pub method: Method,
    /// Path under `/services/data/{version}/`.
    pub path: &'a str,
    pub query: &'a [(&'a str, String)],
    pub body: Option<&'a B>,
}

/// A Salesforce org's REST API, within leadsync's share.
#[derive(Debug)]
pub struct SalesforceClient {
    http: reqwest::Client,
    config: SalesforceClientConfig,
    auth: SalesforceAuth,
    stats: SalesforceStats,
    usage: Mutex<Option<SalesforceUsage>>,
    ours: Mutex<VecDeque<Instant>>,
    jitter: crate::jitter::Jitter,
}

impl SalesforceClient {
    /// A client for one org.
    pub fn new(config: SalesforceClientConfig, auth: SalesforceAuth) -> Result<Self, reqwest::Error> {
        let mut http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if let Some(t) = config.timeout {
            http = http.timeout(t);
        }
        // Token requests wait no longer than the client's own requests, nor than TOKEN_TIMEOUT.
        let auth = auth.with_timeout(config.timeout.map(|t| t.min(super::auth::TOKEN_TIMEOUT)));
        Ok(Self {
            http: http.build()?,
            config,
            auth,
            stats: SalesforceStats::default(),
            usage: Mutex::new(None),
            ours: Mutex::new(VecDeque::new()),
            jitter: crate::jitter::Jitter::default(),
        })
    }

    /// What this client has spent.
    pub fn stats(&self) -> &SalesforceStats {
        &self.stats
    }

    /// The REST API version in use (`v62.0`).
    pub fn api_version(&self) -> &str {
        &self.config.api_version
    }

    /// Its credentials.
    pub fn auth(&self) -> &SalesforceAuth {
        &self.auth
    }

    /// The org's usage as last reported by `Sforce-Limit-Info`.
    pub fn usage(&self) -> Option<SalesforceUsage> {
        self.usage.lock().ok().and_then(|u| *u)
    }

    /// leadsync's configured share of the org's allocation.
    pub fn share(&self) -> SalesforceShare {
        self.config.share
    }

    /// Calls leadsync made in the last 24 hours (as this process counted them).
    pub fn calls_in_window(&self) -> u64 {
        let mut ours = self.ours.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        while ours.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            ours.pop_front();
        }
        ours.len() as u64
    }

    /// `Ok` when `needed` more calls fit in leadsync's share (always, before the first answer).
    pub fn check_budget(&self, needed: u64) -> Result<(), BudgetHold> {
        match self.usage() {
            Some(usage) => self.config.share.check(usage, self.calls_in_window(), needed),
            None => Ok(()),
        }
    }

    /// Sends `call`, retrying as the retry policy decides, and decodes the answer (an empty body
    /// reads as JSON `null`).
    pub(crate) async fn call<T: DeserializeOwned, B: Serialize>(
        &self,
        call: Call<'_, B>,
    ) -> Result<T, SalesforceError> {
        self.call_with(call, &self.config.retry).await
    }

    /// The retry policy calls are sent with.
    pub(crate) fn retry_policy(&self) -> &SalesforceRetryPolicy {
        &self.config.retry
    }

    /// [`SalesforceClient::call`] with another retry policy: a create that is not safe to repeat
    /// is sent once, and its caller looks up what it made before sending it again.
    pub(crate) async fn call_with<T: DeserializeOwned, B: Serialize>(
        &self,
        call: Call<'_, B>,
        policy: &SalesforceRetryPolicy,
    ) -> Result<T, SalesforceError> {
        let mut attempt = 0;
        let mut reauthenticated = false;
        loop {
            self.check_budget(1)?;
            let token = self.auth.token().await?;
            let mut url = format!(
                "{}/services/data/{}/{}",
                token.instance_url,
                self.config.api_version,
                call.path.trim_start_matches('/')
            );
            if !call.query.is_empty() {
                let mut q = url::form_urlencoded::Serializer::new(String::new());
                for (k, v) in call.query {
                    q.append_pair(k, v);
                }
                url = format!("{url}?{}", q.finish());
            }
            let mut request = self
                .http
                .request(call.method.clone(), &url)
                .bearer_auth(token.secret.expose_secret());
            if let Some(body) = call.body {
                request = request.json(body);
            }
            self.stats.count(call.endpoint);
            if let Ok(mut ours) = self.ours.lock() {
                ours.push_back(Instant::now());
            }
            // Each failure is named: no transport error poses as a status, and a 2xx whose body
            // could not be read is retried, never read as an empty answer.
            let (status, body, failure) = match request.send().await {
                Ok(resp) => {
                    if let Some(u) = resp
                        .headers()
                        .get("sforce-limit-info")
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_limit_info)
                    {
                        if let Ok(mut usage) = self.usage.lock() {
                            *usage = Some(u);
                        }
                    }
                    let status = resp.status().as_u16();
                    match resp.text().await {
                        Ok(text) => (Some(status), text, None),
                        Err(e) if e.is_timeout() => (None, String::new(), None),
                        Err(_) => (Some(status), String::new(), Some(TransportError::BodyRead { status })),
                    }
                }
                Err(e) if e.is_timeout() => (None, String::new(), None),
                Err(e) => (None, String::new(), Some(TransportError::of_send(&e))),
            };
            let outcome = match (status, failure) {
                (_, Some(kind)) => SalesforceOutcome::Transport(kind),
                (None, None) => SalesforceOutcome::Timeout,
                (Some(status), None) => SalesforceOutcome::Response { status, body: &body },
            };
            match decide(outcome, attempt, reauthenticated, policy, self.jitter.next()) {
                SalesforceRetryDecision::Done => {
                    let text = if body.trim().is_empty() { "null" } else { &body };
                    return serde_json::from_str(text).map_err(|e| SalesforceError::Decode {
                        endpoint: call.endpoint,
                        message: e.to_string(),
                    });
                }
                SalesforceRetryDecision::Retry { after, reason } => {
                    tracing::info!(
                        endpoint = call.endpoint,
                        reason,
                        wait_ms = after.as_millis() as u64,
                        attempt,
                        "Salesforce call retried"
                    );
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(after).await;
                    attempt += 1;
                }
                SalesforceRetryDecision::Reauthenticate => {
                    self.auth.invalidate(token.generation).await;
                    reauthenticated = true;
                }
                SalesforceRetryDecision::Pause(errors) => {
                    return Err(SalesforceError::RequestLimit {
                        endpoint: call.endpoint,
                        errors,
                    });
                }
                SalesforceRetryDecision::Fail(errors) => {
                    return Err(SalesforceError::Api {
                        endpoint: call.endpoint,
                        errors,
                    });
                }
            }
        }
    }
}
