//! Retry decisions as plain data: one HTTP outcome in, one decision out. No network, no clock:
//! the jitter is passed in, so every case is a one-line table test.
//!
//! - 2xx: done.
//! - 429 `TEN_SECONDLY_ROLLING` (or an unknown policy): wait the ten-second window, retry.
//! - 429 "secondly" (the search API): wait a second, retry.
//! - 429 `DAILY`: stop the job cleanly; its checkpoint is kept and it resumes tomorrow.
//! - 401: refresh the token once and retry; a second 401 fails.
//! - 423 (record locked): wait at least 2 s. 477 (migration): honour Retry-After.
//! - 500, 502, 503, 504, timeouts, transport failures (refused, reset, TLS, a body cut off even
//!   on a 2xx): exponential backoff with equal jitter,
//!   capped, up to `max_attempts`.
//! - any other 4xx: fail at once, never retried, with HubSpot's category, message and
//!   correlation id kept.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::transport::TransportError;

/// How hard to try.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// First backoff step.
    pub base: Duration,
    /// Longest single wait.
    pub cap: Duration,
    /// Wait after a ten-secondly 429.
    pub ten_secondly_wait: Duration,
    /// Wait after a search (secondly) 429.
    pub secondly_wait: Duration,
    /// Shortest wait after a 423.
    pub locked_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
            ten_secondly_wait: Duration::from_secs(10),
            secondly_wait: Duration::from_secs(1),
            locked_wait: Duration::from_secs(2),
        }
    }
}

/// What came back: the shared call loop's [`Answer`](crate::transport::call::Answer)
/// (`retry_after` in seconds, when sent).
pub use crate::transport::call::Answer as Outcome;

/// Why a request is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    /// 429 on the ten-second window.
    TenSecondly,
    /// 429 on the search API's per-second limit.
    Secondly,
    /// 423: the record is locked.
    Locked,
    /// A 5xx or 477.
    Server(u16),
    /// No answer in time.
    Timeout,
    /// A transport failure.
    Transport(TransportError),
}

/// The decision.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryDecision {
    /// Success: read the body.
    Done,
    /// Wait, then send the same request again.
    Retry {
        /// How long to wait.
        after: Duration,
        /// Why.
        reason: RetryReason,
    },
    /// Get a new token, then send again (once).
    RefreshToken,
    /// The daily limit is spent: stop the job, keep its checkpoint.
    StopForToday(HubSpotApiError),
    /// Give up: the error to report.
    Fail(HubSpotApiError),
}

/// An error as HubSpot reported it; every field but the status is optional in HubSpot's bodies.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubSpotApiError {
    /// HTTP status (0 for a timeout or connection failure).
    #[serde(skip)]
    pub status: u16,
    /// `VALIDATION_ERROR`, `OBJECT_NOT_FOUND`, `RATE_LIMITS`, …
    #[serde(default)]
    pub category: Option<String>,
    /// HubSpot's message.
    #[serde(default)]
    pub message: Option<String>,
    /// Quote this to HubSpot support.
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// For 429s: `TEN_SECONDLY_ROLLING`, `DAILY`, …
    #[serde(default)]
    pub policy_name: Option<String>,
}

impl fmt::Display for HubSpotApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            0 => write!(f, "HubSpot did not answer")?,
            s => write!(f, "HubSpot {s}")?,
        }
        if let Some(c) = &self.category {
            write!(f, " {c}")?;
        }
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        if let Some(id) = &self.correlation_id {
            write!(f, " (correlationId {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for HubSpotApiError {}

/// Reads HubSpot's error body; a body that is not JSON becomes the message, shortened.
pub fn parse_error_body(status: u16, body: &str) -> HubSpotApiError {
    let mut e = serde_json::from_str::<HubSpotApiError>(body).unwrap_or_else(|_| HubSpotApiError {
        message: (!body.trim().is_empty()).then(|| body.trim().chars().take(200).collect()),
        ..HubSpotApiError::default()
    });
    e.status = status;
    e
}

/// The decision for `outcome` on attempt `attempt` (0 for the first send). `jitter` is in [0, 1).
pub fn decide(
    outcome: Outcome<'_>,
    attempt: u32,
    already_refreshed: bool,
    policy: &RetryPolicy,
    jitter: f64,
) -> RetryDecision {
    let last = attempt + 1 >= policy.max_attempts;
    let backoff = |reason| {
        if last {
            return None;
        }
        let exp = policy
            .base
            .saturating_mul(2u32.saturating_pow(attempt.min(20)))
            .min(policy.cap);
        let half = exp / 2;
        Some(RetryDecision::Retry {
            after: half + half.mul_f64(jitter.clamp(0.0, 1.0)),
            reason,
        })
    };
    let (status, body, retry_after) = match outcome {
        Outcome::Timeout => {
            return backoff(RetryReason::Timeout).unwrap_or_else(|| {
                RetryDecision::Fail(HubSpotApiError {
                    message: Some(format!("no answer after {} attempts", attempt + 1)),
                    ..Default::default()
                })
            });
        }
        Outcome::Transport(kind) => {
            return backoff(RetryReason::Transport(kind)).unwrap_or_else(|| {
                RetryDecision::Fail(HubSpotApiError {
                    message: Some(format!("{kind} after {} attempts; {}", attempt + 1, kind.advice())),
                    ..Default::default()
                })
            });
        }
        Outcome::Response {
            status,
            body,
            retry_after,
        } => (status, body, retry_after),
    };
    if (200..300).contains(&status) {
        return RetryDecision::Done;
    }
    let error = parse_error_body(status, body);
    let told = retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(policy.cap));
    let wait = |at_least: Duration, reason| {
        if last {
            None
        } else {
            Some(RetryDecision::Retry {
                after: told.map_or(at_least, |t| t.max(at_least)),
                reason,
            })
        }
    };
    let decision = match status {
        401 if !already_refreshed => Some(RetryDecision::RefreshToken),
        429 => {
            let policy_name = error.policy_name.as_deref().unwrap_or("");
            let message = error.message.as_deref().unwrap_or("");
            if policy_name.eq_ignore_ascii_case("DAILY") {
                return RetryDecision::StopForToday(error);
            }
            if message.contains("secondly limit") && !policy_name.contains("TEN_SECONDLY") {
                wait(policy.secondly_wait, RetryReason::Secondly)
            } else {
                wait(policy.ten_secondly_wait, RetryReason::TenSecondly)
            }
        }
        423 => wait(policy.locked_wait, RetryReason::Locked),
        477 => wait(told.unwrap_or(policy.base), RetryReason::Server(477)),
        500 | 502 | 503 | 504 => match told {
            Some(t) if !last => Some(RetryDecision::Retry {
                after: t,
                reason: RetryReason::Server(status),
            }),
            _ => backoff(RetryReason::Server(status)),
        },
        _ => None,
    };
    decision.unwrap_or(RetryDecision::Fail(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN: &str = r#"{"status":"error","message":"You have reached your ten_secondly_rolling limit.","errorType":"RATE_LIMIT","correlationId":"c1","policyName":"TEN_SECONDLY_ROLLING"}"#;
    const DAILY: &str = r#"{"status":"error","message":"You have reached your daily limit.","errorType":"RATE_LIMIT","correlationId":"c2","policyName":"DAILY"}"#;
    const SEARCH: &str = r#"{"status":"error","message":"You have reached your secondly limit.","category":"RATE_LIMITS","correlationId":"c3"}"#;
    const BAD: &str = r#"{"status":"error","message":"Property values were not valid","correlationId":"c4","category":"VALIDATION_ERROR"}"#;

    fn resp(status: u16, body: &'static str) -> Outcome<'static> {
        Outcome::Response {
            status,
            body,
            retry_after: None,
        }
    }

    fn retry(after_ms: u64, reason: RetryReason) -> RetryDecision {
        RetryDecision::Retry {
            after: Duration::from_millis(after_ms),
            reason,
        }
    }

    #[test]
    fn decisions() {
        use RetryReason::*;
        let p = RetryPolicy::default();
        #[rustfmt::skip]
        let cases: Vec<(Outcome<'static>, u32, bool, f64, RetryDecision)> = vec![
            (resp(200, "{}"),                    0, false, 0.0, RetryDecision::Done),
            (resp(207, "{}"),                    0, false, 0.0, RetryDecision::Done),
            (resp(429, TEN),                     0, false, 0.0, retry(10_000, TenSecondly)),
            (resp(429, TEN),                     1, false, 0.9, retry(10_000, TenSecondly)),
            (resp(429, ""),                      0, false, 0.0, retry(10_000, TenSecondly)),
            (resp(429, SEARCH),                  0, false, 0.0, retry(1_000, Secondly)),
            (resp(423, "{}"),                    0, false, 0.0, retry(2_000, Locked)),
            (resp(500, "oops"),                  0, false, 0.0, retry(250, Server(500))),
            (resp(502, ""),                      0, false, 1.0, retry(500, Server(502))),
            (resp(503, ""),                      2, false, 0.5, retry(1_500, Server(503))),
            (resp(504, ""),                      30, false, 0.0, RetryDecision::Fail(HubSpotApiError { status: 504, ..Default::default() })),
            (Outcome::Timeout,                   1, false, 0.0, retry(500, Timeout)),
            (Outcome::Transport(TransportError::Connect), 0, false, 0.0, retry(250, Transport(TransportError::Connect))),
            (Outcome::Transport(TransportError::BodyRead { status: 200 }), 0, false, 0.0, retry(250, Transport(TransportError::BodyRead { status: 200 }))),
            (resp(401, "{}"),                    0, false, 0.0, RetryDecision::RefreshToken),
        ];
        for (i, (outcome, attempt, refreshed, jitter, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                decide(outcome, attempt, refreshed, &p, jitter),
                want,
                "case {i}: {outcome:?} attempt {attempt}"
            );
        }
    }

    #[test]
    fn a_transport_failure_past_the_last_attempt_fails_naming_it_and_what_to_check() {
        let p = RetryPolicy::default();
        let last = p.max_attempts - 1;
        for (kind, words) in [
            (
                TransportError::Reset,
                "connection reset after 6 attempts; the connection kept dropping",
            ),
            (
                TransportError::Tls,
                "TLS failed after 6 attempts; check the host's certificate",
            ),
            (
                TransportError::BodyRead { status: 200 },
                "HTTP 200 body could not be read after 6 attempts",
            ),
        ] {
            match decide(Outcome::Transport(kind), last, false, &p, 0.0) {
                RetryDecision::Fail(e) => {
                    assert_eq!(e.status, 0);
                    assert!(e.to_string().contains(words), "{e}");
                }
                other => panic!("{kind:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn daily_limit_stops_and_keeps_hubspots_words() {
        match decide(resp(429, DAILY), 0, false, &RetryPolicy::default(), 0.0) {
            RetryDecision::StopForToday(e) => {
                assert_eq!(e.policy_name.as_deref(), Some("DAILY"));
                assert_eq!(e.correlation_id.as_deref(), Some("c2"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_client_errors_fail_at_once_with_category_message_and_correlation_id() {
        let p = RetryPolicy::default();
        for status in [400, 403, 404, 409, 414] {
            match decide(resp(status, BAD), 0, false, &p, 0.0) {
                RetryDecision::Fail(e) => {
                    assert_eq!(e.status, status);
                    assert_eq!(
                        e.to_string(),
                        format!("HubSpot {status} VALIDATION_ERROR: Property values were not valid (correlationId c4)")
                    );
                }
                other => panic!("{status}: {other:?}"),
            }
        }
        // a second 401, after a refresh, fails too
        assert!(matches!(
            decide(resp(401, "{}"), 1, true, &p, 0.0),
            RetryDecision::Fail(_)
        ));
    }

    #[test]
    fn retry_after_is_honoured_but_never_shortens_the_minimum_and_backoff_is_capped() {
        let p = RetryPolicy::default();
        let told = |status, secs: &'static str| Outcome::Response {
            status,
            body: "",
            retry_after: Some(secs),
        };
        assert_eq!(
            decide(told(503, "7"), 0, false, &p, 0.0),
            retry(7_000, RetryReason::Server(503))
        );
        assert_eq!(
            decide(told(477, "3"), 0, false, &p, 0.0),
            retry(3_000, RetryReason::Server(477))
        );
        assert_eq!(
            decide(told(429, "1"), 0, false, &p, 0.0),
            retry(10_000, RetryReason::TenSecondly)
        );
        assert_eq!(
            decide(told(429, "99999"), 0, false, &p, 0.0),
            retry(60_000, RetryReason::TenSecondly)
        );
        let generous = RetryPolicy { max_attempts: 100, ..p };
        for attempt in [10, 30, 63, 98] {
            match decide(resp(500, ""), attempt, false, &generous, 0.999) {
                RetryDecision::Retry { after, .. } => assert!(after <= generous.cap, "attempt {attempt}: {after:?}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_body_that_is_not_json_is_kept_short_and_never_panics() {
        let e = parse_error_body(502, &"<html>".repeat(100));
        assert_eq!(e.status, 502);
        assert_eq!(e.message.unwrap().chars().count(), 200);
        assert_eq!(parse_error_body(500, "").message, None);
    }
}
