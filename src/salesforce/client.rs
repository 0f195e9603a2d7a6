//! `SalesforceClient`: every Salesforce REST call goes through [`SalesforceClient::call`], which
//! sends it through the shared call loop ([`crate::transport::call::Transport`]) under
//! Salesforce's policy, [`SalesforceApi`]: leadsync's share of the org's daily allocation
//! checked, the token added, sent to the token's `instance_url`, `Sforce-Limit-Info` read on
//! every answer, the answer judged by [`decide`]. Endpoints (`rest.rs`) only build requests and
//! read answers.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use url::Url;

use super::auth::{SalesforceAuth, SalesforceAuthError, SalesforceToken};
use super::errors::SalesforceRecordError;
use super::limits::{BudgetHold, SalesforceShare, SalesforceUsage, parse_limit_info};
use super::retry::{SalesforceOutcome, SalesforceRetryDecision, SalesforceRetryPolicy, decide};
use crate::transport::call::{Answer, ApiPolicy, Attempt, Request, Transport, Verdict};

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

/// Calls made, by endpoint (retries included: each costs allocation; token requests excluded).
pub type SalesforceStats = crate::transport::call::CallStats;

/// One call, as the endpoint functions describe it: its `path` is under
/// `/services/data/{version}/`, and it draws on one budget (leadsync's share).
pub(crate) type Call<'a, B> = Request<'a, B>;

/// A Salesforce org's REST API, within leadsync's share.
#[derive(Debug)]
pub struct SalesforceClient {
    transport: Transport<SalesforceApi>,
}

/// Salesforce's [`ApiPolicy`]: every send is checked against leadsync's share of the org's daily
/// allocation, sent with the token to its `instance_url`, `Sforce-Limit-Info` read from every
/// answer, and the answer judged by [`decide`].
#[derive(Debug)]
pub struct SalesforceApi {
    config: SalesforceClientConfig,
    auth: SalesforceAuth,
    usage: Mutex<Option<SalesforceUsage>>,
    ours: Mutex<VecDeque<Instant>>,
}

impl SalesforceApi {
    fn usage(&self) -> Option<SalesforceUsage> {
        self.usage.lock().ok().and_then(|u| *u)
    }

    fn calls_in_window(&self) -> u64 {
        let mut ours = self.ours.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        while ours.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            ours.pop_front();
        }
        ours.len() as u64
    }

    fn check_budget(&self, needed: u64) -> Result<(), BudgetHold> {
        match self.usage() {
            Some(usage) => self.config.share.check(usage, self.calls_in_window(), needed),
            None => Ok(()),
        }
    }
}

impl ApiPolicy for SalesforceApi {
    const NAME: &'static str = "Salesforce";
    type Lane = ();
    type Retry = SalesforceRetryPolicy;
    type Token = SalesforceToken;
    type Error = SalesforceError;

    async fn pace(&self, _: ()) -> Result<(), SalesforceError> {
        Ok(self.check_budget(1)?)
    }

    async fn token(&self) -> Result<SalesforceToken, SalesforceError> {
        Ok(self.auth.token().await?)
    }

    async fn refresh(&self, token: &SalesforceToken) {
        self.auth.invalidate(token.generation).await;
    }

    fn url(&self, token: &SalesforceToken, path: &str) -> Result<Url, url::ParseError> {
        Url::parse(&format!(
            "{}/services/data/{}/{path}",
            token.instance_url, self.config.api_version
        ))
    }

    fn authorise(&self, request: reqwest::RequestBuilder, token: &SalesforceToken) -> reqwest::RequestBuilder {
        request.bearer_auth(token.secret.expose_secret())
    }

    fn sent(&self) {
        if let Ok(mut ours) = self.ours.lock() {
            ours.push_back(Instant::now());
        }
    }

    fn observe(&self, headers: &reqwest::header::HeaderMap) {
        if let Some(u) = headers
            .get("sforce-limit-info")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_limit_info)
        {
            if let Ok(mut usage) = self.usage.lock() {
                *usage = Some(u);
            }
        }
    }

    fn judge(&self, answer: Answer<'_>, at: Attempt, retry: &SalesforceRetryPolicy) -> Verdict<SalesforceError> {
        let outcome = match answer {
            Answer::Response { status, body, .. } => SalesforceOutcome::Response { status, body },
            Answer::Timeout => SalesforceOutcome::Timeout,
            Answer::Transport(kind) => SalesforceOutcome::Transport(kind),
        };
        match decide(outcome, at.number, at.refreshed, retry, at.jitter) {
            SalesforceRetryDecision::Done => Verdict::Done,
            SalesforceRetryDecision::Retry { after, reason } => Verdict::Retry { after, reason },
            SalesforceRetryDecision::Reauthenticate => Verdict::Refresh,
            SalesforceRetryDecision::Pause(errors) => Verdict::Fail(SalesforceError::RequestLimit {
                endpoint: at.endpoint,
                errors,
            }),
            SalesforceRetryDecision::Fail(errors) => Verdict::Fail(SalesforceError::Api {
                endpoint: at.endpoint,
                errors,
            }),
        }
    }

    fn decode_error(&self, endpoint: &'static str, message: String) -> SalesforceError {
        SalesforceError::Decode { endpoint, message }
    }
}

impl SalesforceClient {
    /// A client for one org.
    pub fn new(config: SalesforceClientConfig, auth: SalesforceAuth) -> Result<Self, reqwest::Error> {
        // Token requests wait no longer than the client's own requests, nor than TOKEN_TIMEOUT.
        let auth = auth.with_timeout(config.timeout.map(|t| t.min(super::auth::TOKEN_TIMEOUT)));
        let timeout = config.timeout;
        let api = SalesforceApi {
            config,
            auth,
            usage: Mutex::new(None),
            ours: Mutex::new(VecDeque::new()),
        };
        Ok(Self {
            transport: Transport::new(api, timeout)?,
        })
    }

    /// What this client has spent.
    pub fn stats(&self) -> &SalesforceStats {
        self.transport.stats()
    }

    /// The REST API version in use (`v62.0`).
    pub fn api_version(&self) -> &str {
        &self.transport.policy().config.api_version
    }

    /// Its credentials.
    pub fn auth(&self) -> &SalesforceAuth {
        &self.transport.policy().auth
    }

    /// The org's usage as last reported by `Sforce-Limit-Info`.
    pub fn usage(&self) -> Option<SalesforceUsage> {
        self.transport.policy().usage()
    }

    /// leadsync's configured share of the org's allocation.
    pub fn share(&self) -> SalesforceShare {
        self.transport.policy().config.share
    }

    /// Calls leadsync made in the last 24 hours (as this process counted them).
    pub fn calls_in_window(&self) -> u64 {
        self.transport.policy().calls_in_window()
    }

    /// `Ok` when `needed` more calls fit in leadsync's share (always, before the first answer).
    pub fn check_budget(&self, needed: u64) -> Result<(), BudgetHold> {
        self.transport.policy().check_budget(needed)
    }

    /// Sends `call`, retrying as the retry policy decides, and decodes the answer (an empty body
    /// reads as JSON `null`).
    pub(crate) async fn call<T: DeserializeOwned, B: Serialize>(
        &self,
        call: Call<'_, B>,
    ) -> Result<T, SalesforceError> {
        self.call_with(call, self.retry_policy()).await
    }

    /// The retry policy calls are sent with.
    pub(crate) fn retry_policy(&self) -> &SalesforceRetryPolicy {
        &self.transport.policy().config.retry
    }

    /// [`SalesforceClient::call`] with another retry policy: a create that is not safe to repeat
    /// is sent once, and its caller looks up what it made before sending it again.
    pub(crate) async fn call_with<T: DeserializeOwned, B: Serialize>(
        &self,
        call: Call<'_, B>,
        policy: &SalesforceRetryPolicy,
    ) -> Result<T, SalesforceError> {
        self.transport.send(call, (), policy).await
    }
}
