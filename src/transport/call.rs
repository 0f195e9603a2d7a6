//! The one call loop every API client sends through: admit, pace, token, send, read the
//! answer, judge it, then retry, refresh the token or return. [`Transport`] runs the loop;
//! what differs between APIs is an [`ApiPolicy`]: how a call is admitted and paced (which
//! budget), how it is authorised and addressed, which headers it learns from, and how an answer
//! is judged (the API's pure `retry::decide`, its decision mapped to a [`Verdict`]). HubSpot
//! (`hubspot::client::HubSpotApi`) and Salesforce (`salesforce::client::SalesforceApi`) are two
//! policies; a third API (Salesforce Bulk, a notification webhook) is a third policy and nothing
//! else.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::TransportError;

/// One call, as an endpoint function describes it.
#[derive(Debug)]
pub struct Request<'a, B> {
    /// Name for stats, logs and errors (`contacts batch read`, `composite`).
    pub endpoint: &'static str,
    /// The HTTP method.
    pub method: Method,
    /// The path, joined to the policy's base (see [`ApiPolicy::url`]).
    pub path: &'a str,
    /// Query pairs, form-encoded after the path.
    pub query: &'a [(&'a str, String)],
    /// A JSON body, when there is one.
    pub body: Option<&'a B>,
}

/// What came back from one send, before any judgement.
#[derive(Debug, Clone, Copy)]
pub enum Answer<'a> {
    /// An HTTP answer whose body was read to its end.
    Response {
        /// Status code.
        status: u16,
        /// Body text.
        body: &'a str,
        /// `Retry-After`, as sent.
        retry_after: Option<&'a str>,
    },
    /// No answer in time.
    Timeout,
    /// No usable answer: refused, reset, TLS, or a body cut off (a 2xx included).
    Transport(TransportError),
}

/// A policy's judgement of one answer, as data.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict<E> {
    /// Success: decode the body.
    Done,
    /// Wait, then send the same request again.
    Retry {
        /// How long to wait.
        after: Duration,
        /// Why, for the log.
        reason: String,
    },
    /// Invalidate the token the call was sent with, then send again.
    Refresh,
    /// Stop with this error.
    Fail(E),
}

/// Where a call stands when an answer is judged.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// Which call (for the error).
    pub endpoint: &'static str,
    /// 0 for the first send.
    pub number: u32,
    /// True once the token was refreshed for this call.
    pub refreshed: bool,
    /// Backoff jitter, in [0, 1).
    pub jitter: f64,
}

/// What makes one API different from another; everything else is [`Transport`]'s loop.
pub trait ApiPolicy: Send + Sync {
    /// The API's name in logs (`HubSpot`).
    const NAME: &'static str;
    /// Which budget a call draws on (HubSpot: its rolling window or search, and a priority).
    type Lane: Copy + Send + Sync;
    /// How hard to try (the retry policy `judge` is given).
    type Retry: Sync;
    /// A credential for one send.
    type Token: Send + Sync;
    /// Why a call failed.
    type Error: Send;

    /// Once per call, before the first send: refuse it (a daily reserve) or let it through.
    fn admit(&self, _lane: Self::Lane) -> Result<(), Self::Error> {
        Ok(())
    }
    /// Before every send: wait for a slot in the budget, or refuse.
    fn pace(&self, lane: Self::Lane) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// The credential to send with (cached, refreshed when invalidated).
    fn token(&self) -> impl Future<Output = Result<Self::Token, Self::Error>> + Send;
    /// Forgets `token` after the API refused it, so that the next [`ApiPolicy::token`] is new.
    fn refresh(&self, token: &Self::Token) -> impl Future<Output = ()> + Send;
    /// Where `path` lives, for this token (query pairs are added by the loop).
    fn url(&self, token: &Self::Token, path: &str) -> Result<Url, url::ParseError>;
    /// Adds the credential to the request.
    fn authorise(&self, request: RequestBuilder, token: &Self::Token) -> RequestBuilder;
    /// A request is about to be sent (it costs quota whatever comes back).
    fn sent(&self) {}
    /// Learns from an answer's headers (remaining daily calls, the org's usage).
    fn observe(&self, _headers: &HeaderMap) {}
    /// The decision on `answer` to the call at `at`, under `retry`.
    fn judge(&self, answer: Answer<'_>, at: Attempt, retry: &Self::Retry) -> Verdict<Self::Error>;
    /// A 2xx whose body is not what the endpoint sends, or a path that makes no URL.
    fn decode_error(&self, endpoint: &'static str, message: String) -> Self::Error;
}

/// Calls made, by endpoint, and what they cost.
#[derive(Debug, Default)]
pub struct CallStats {
    calls: Mutex<BTreeMap<&'static str, u64>>,
    retries: AtomicU64,
    rate_limited: AtomicU64,
}

impl CallStats {
    /// Requests sent, by endpoint (retries included: each costs quota).
    pub fn calls(&self) -> BTreeMap<&'static str, u64> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Requests sent in all (token requests excluded).
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

/// One API's HTTP client, its policy, its stats and its backoff jitter: the call loop.
#[derive(Debug)]
pub struct Transport<P> {
    http: reqwest::Client,
    policy: P,
    stats: CallStats,
    jitter: crate::jitter::Jitter,
}

impl<P: ApiPolicy> Transport<P> {
    /// A transport for `policy`; `timeout` bounds each request (`None`: none, for tests on a
    /// paused clock). Redirects are never followed.
    pub fn new(policy: P, timeout: Option<Duration>) -> Result<Self, reqwest::Error> {
        let mut http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if let Some(t) = timeout {
            http = http.timeout(t);
        }
        Ok(Self {
            http: http.build()?,
            policy,
            stats: CallStats::default(),
            jitter: crate::jitter::Jitter::default(),
        })
    }

    /// The API's policy (its budgets and credentials).
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// What this transport has spent.
    pub fn stats(&self) -> &CallStats {
        &self.stats
    }

    /// Sends `request` on `lane`, retrying as `policy.judge` decides under `retry`, and decodes
    /// the answer (an empty body reads as JSON `null`).
    pub async fn send<T: DeserializeOwned, B: Serialize>(
        &self,
        request: Request<'_, B>,
        lane: P::Lane,
        retry: &P::Retry,
    ) -> Result<T, P::Error> {
        let policy = &self.policy;
        let endpoint = request.endpoint;
        policy.admit(lane)?;
        let mut attempt = 0;
        let mut refreshed = false;
        loop {
            policy.pace(lane).await?;
            let token = policy.token().await?;
            let mut url = policy
                .url(&token, request.path.trim_start_matches('/'))
                .map_err(|e| policy.decode_error(endpoint, format!("bad path {}: {e}", request.path)))?;
            if !request.query.is_empty() {
                url.query_pairs_mut()
                    .extend_pairs(request.query.iter().map(|(k, v)| (*k, v.as_str())));
            }
            let mut builder = policy.authorise(self.http.request(request.method.clone(), url), &token);
            if let Some(body) = request.body {
                builder = builder.json(body);
            }
            self.stats.count(endpoint);
            policy.sent();
            // One line per call sent (debug): with the log's timestamps, how calls spread in time.
            tracing::debug!(endpoint, attempt, "{} call sent", P::NAME);
            // Each failure is named: no transport error poses as a status, and a 2xx whose body
            // could not be read is retried, never read as an empty answer.
            let (status, body, retry_after, failure) = match builder.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    policy.observe(resp.headers());
                    let retry_after = resp
                        .headers()
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
            if status == Some(429) {
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            }
            let answer = match (status, failure) {
                (_, Some(kind)) => Answer::Transport(kind),
                (None, None) => Answer::Timeout,
                (Some(status), None) => Answer::Response {
                    status,
                    body: &body,
                    retry_after: retry_after.as_deref(),
                },
            };
            let at = Attempt {
                endpoint,
                number: attempt,
                refreshed,
                jitter: self.jitter.next(),
            };
            match policy.judge(answer, at, retry) {
                Verdict::Done => {
                    let text = if body.trim().is_empty() { "null" } else { &body };
                    return serde_json::from_str(text).map_err(|e| policy.decode_error(endpoint, e.to_string()));
                }
                Verdict::Retry { after, reason } => {
                    tracing::info!(
                        endpoint,
                        %reason,
                        wait_ms = after.as_millis() as u64,
                        attempt,
                        "{} call retried",
                        P::NAME
                    );
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(after).await;
                    attempt += 1;
                }
                Verdict::Refresh => {
                    policy.refresh(&token).await;
                    refreshed = true;
                }
                Verdict::Fail(error) => return Err(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! A third API, a notification webhook, given only its policy: the loop admits, paces,
    //! authorises, retries, refreshes and decodes for it as it does for HubSpot and Salesforce.

    use std::sync::atomic::AtomicU32;

    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;

    #[derive(Debug, PartialEq)]
    enum HookError {
        Refused(u16),
        Closed,
        Decode(String),
    }

    /// A webhook receiver's API: a bearer token that rotates on 401, 503 retried at once.
    struct Hook {
        base: Url,
        open: bool,
        generation: AtomicU64,
        paced: AtomicU32,
        sent: AtomicU32,
    }

    impl Hook {
        fn new(base: &str) -> Self {
            Self {
                base: Url::parse(base).unwrap(),
                open: true,
                generation: AtomicU64::new(0),
                paced: AtomicU32::new(0),
                sent: AtomicU32::new(0),
            }
        }
    }

    impl ApiPolicy for Hook {
        const NAME: &'static str = "Hook";
        type Lane = ();
        type Retry = u32;
        type Token = u64;
        type Error = HookError;

        fn admit(&self, _: ()) -> Result<(), HookError> {
            if self.open { Ok(()) } else { Err(HookError::Closed) }
        }
        async fn pace(&self, _: ()) -> Result<(), HookError> {
            self.paced.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        async fn token(&self) -> Result<u64, HookError> {
            Ok(self.generation.load(Ordering::Relaxed))
        }
        async fn refresh(&self, token: &u64) {
            let _ = self
                .generation
                .compare_exchange(*token, token + 1, Ordering::Relaxed, Ordering::Relaxed);
        }
        fn url(&self, _: &u64, path: &str) -> Result<Url, url::ParseError> {
            self.base.join(path)
        }
        fn authorise(&self, request: RequestBuilder, token: &u64) -> RequestBuilder {
            request.bearer_auth(format!("t{token}"))
        }
        fn sent(&self) {
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
        fn judge(&self, answer: Answer<'_>, at: Attempt, max: &u32) -> Verdict<HookError> {
            match answer {
                Answer::Response { status: 200..=299, .. } => Verdict::Done,
                Answer::Response { status: 401, .. } if !at.refreshed => Verdict::Refresh,
                Answer::Response { status: 503, .. } if at.number + 1 < *max => Verdict::Retry {
                    after: Duration::ZERO,
                    reason: "HTTP 503".into(),
                },
                Answer::Response { status, .. } => Verdict::Fail(HookError::Refused(status)),
                Answer::Timeout | Answer::Transport(_) => Verdict::Fail(HookError::Refused(0)),
            }
        }
        fn decode_error(&self, _: &'static str, message: String) -> HookError {
            HookError::Decode(message)
        }
    }

    fn notify<'a>(query: &'a [(&'a str, String)]) -> Request<'a, serde_json::Value> {
        Request {
            endpoint: "notify",
            method: Method::POST,
            path: "/hooks/lead",
            query,
            body: None,
        }
    }

    /// The hook answers each of `statuses` once, in order, then `last` for good.
    async fn hook_answering(statuses: &[u16], last: ResponseTemplate) -> MockServer {
        let server = MockServer::start().await;
        for status in statuses {
            let once = Mock::given(path("/hooks/lead")).respond_with(ResponseTemplate::new(*status));
            once.up_to_n_times(1).mount(&server).await;
        }
        Mock::given(method("POST"))
            .and(path("/hooks/lead"))
            .respond_with(last)
            .mount(&server)
            .await;
        server
    }

    #[tokio::test]
    async fn a_third_api_given_only_its_policy_is_refreshed_once_retried_and_decoded() {
        let ok = ResponseTemplate::new(200).set_body_string(r#"{"ok":true}"#);
        let server = hook_answering(&[401, 503], ok).await;
        let transport = Transport::new(Hook::new(&server.uri()), None).unwrap();
        let query = [("lead", "a b".to_string())];
        let answer: serde_json::Value = transport.send(notify(&query), (), &3).await.unwrap();
        assert_eq!(answer, serde_json::json!({"ok": true}));
        let sent = server.received_requests().await.unwrap();
        let auth: Vec<&str> = sent
            .iter()
            .map(|r| r.headers["authorization"].to_str().unwrap())
            .collect();
        // The 401 refreshed the token once; the 503 was sent again with the new one.
        assert_eq!(auth, ["Bearer t0", "Bearer t1", "Bearer t1"]);
        assert!(sent.iter().all(|r| r.url.query() == Some("lead=a+b")), "{sent:?}");
        let stats = transport.stats();
        assert_eq!((stats.total(), stats.retries(), stats.rate_limited()), (3, 1, 0));
        assert_eq!(stats.calls(), BTreeMap::from([("notify", 3)]));
        let hook = transport.policy();
        assert_eq!(
            (hook.paced.load(Ordering::Relaxed), hook.sent.load(Ordering::Relaxed)),
            (3, 3)
        );
    }

    #[tokio::test]
    async fn the_policy_decides_when_to_stop_and_an_empty_body_reads_as_null() {
        let server = hook_answering(&[429], ResponseTemplate::new(401)).await;
        let transport = Transport::new(Hook::new(&server.uri()), None).unwrap();
        // A 429 this policy does not retry fails at once, and is counted.
        let first = transport.send::<serde_json::Value, _>(notify(&[]), (), &3).await;
        assert_eq!(first.unwrap_err(), HookError::Refused(429));
        assert_eq!(transport.stats().rate_limited(), 1);
        // Two 401s: one refresh, then the policy's failure.
        let second = transport.send::<serde_json::Value, _>(notify(&[]), (), &3).await;
        assert_eq!(second.unwrap_err(), HookError::Refused(401));
        assert_eq!((transport.stats().total(), transport.stats().retries()), (3, 0));

        let empty = hook_answering(&[], ResponseTemplate::new(204)).await;
        let transport = Transport::new(Hook::new(&empty.uri()), None).unwrap();
        let answer: Option<u32> = transport.send(notify(&[]), (), &3).await.unwrap();
        assert_eq!(answer, None);
    }

    #[tokio::test]
    async fn a_call_the_policy_does_not_admit_is_never_sent() {
        let server = hook_answering(&[], ResponseTemplate::new(200)).await;
        let hook = Hook {
            open: false,
            ..Hook::new(&server.uri())
        };
        let transport = Transport::new(hook, None).unwrap();
        let refused = transport.send::<serde_json::Value, _>(notify(&[]), (), &3).await;
        assert_eq!(refused.unwrap_err(), HookError::Closed);
        assert!(server.received_requests().await.unwrap().is_empty());
        assert_eq!(
            (
                transport.stats().total(),
                transport.policy().paced.load(Ordering::Relaxed)
            ),
            (0, 0)
        );
    }
}
