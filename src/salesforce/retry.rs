//! Retry decisions for Salesforce answers, as plain data: one outcome in, one decision out, no
//! network and no clock (jitter is passed in).
//!
//! - 2xx: done.
//! - 401 or `INVALID_SESSION_ID`: mint a new token once and send again; a second one fails.
//! - 403 `REQUEST_LIMIT_EXCEEDED`: pause; nothing is lost, the work resumes later.
//! - `UNABLE_TO_LOCK_ROW` (any status), 5xx, timeouts, transport failures (refused, reset, TLS,
//!   a body cut off even on a 2xx): exponential backoff
//!   with equal jitter, capped, up to `max_attempts`.
//! - anything else: fail at once with Salesforce's codes and messages.

use std::time::Duration;

use super::errors::{Disposition, SalesforceRecordError, classify};
use crate::transport::TransportError;

/// How hard to try.
#[derive(Debug, Clone)]
pub struct SalesforceRetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// First backoff step.
    pub base: Duration,
    /// Longest single wait.
    pub cap: Duration,
}

impl Default for SalesforceRetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        }
    }
}

/// What came back.
#[derive(Debug, Clone, Copy)]
pub enum SalesforceOutcome<'a> {
    /// An HTTP answer.
    Response {
        /// Status code.
        status: u16,
        /// Body text.
        body: &'a str,
    },
    /// No answer in time.
    Timeout,
    /// No usable answer: refused, reset, TLS, or a body cut off (a 2xx included).
    Transport(TransportError),
}

/// The decision.
#[derive(Debug, Clone, PartialEq)]
pub enum SalesforceRetryDecision {
    /// Success: read the body.
    Done,
    /// Wait, then send the same request again.
    Retry {
        /// How long to wait.
        after: Duration,
        /// Why (an error code, `HTTP 503`, `timeout`).
        reason: String,
    },
    /// Mint a new token, then send again (once).
    Reauthenticate,
    /// The org's allocation is spent: stop cleanly, resume later.
    Pause(Vec<SalesforceRecordError>),
    /// Give up with these errors.
    Fail(Vec<SalesforceRecordError>),
}

/// Salesforce's error array, or one synthetic error holding the raw text.
pub fn read_errors(status: u16, body: &str) -> Vec<SalesforceRecordError> {
    serde_json::from_str::<Vec<SalesforceRecordError>>(body)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            vec![SalesforceRecordError {
                code: format!("HTTP_{status}"),
                message: body.chars().take(500).collect(),
                fields: vec![],
            }]
        })
}

/// Decides what to do with `outcome` of attempt `attempt` (0-based); `reauthenticated` is true
/// once a new token was minted for this call. `jitter` is in [0, 1).
pub fn decide(
    outcome: SalesforceOutcome<'_>,
    attempt: u32,
    reauthenticated: bool,
    policy: &SalesforceRetryPolicy,
    jitter: f64,
) -> SalesforceRetryDecision {
    let backoff = |reason: String, errors: Vec<SalesforceRecordError>| {
        if attempt + 1 >= policy.max_attempts {
            return SalesforceRetryDecision::Fail(errors);
        }
        let full = policy.base.saturating_mul(1u32 << attempt.min(16)).min(policy.cap);
        let after = full / 2 + full.mul_f64(jitter.clamp(0.0, 1.0) / 2.0);
        SalesforceRetryDecision::Retry { after, reason }
    };
    let (status, body) = match outcome {
        SalesforceOutcome::Response { status, body } => (status, body),
        SalesforceOutcome::Timeout => return backoff("timeout".into(), read_errors(0, "timeout")),
        SalesforceOutcome::Transport(kind) => {
            let error = SalesforceRecordError {
                code: "TRANSPORT".into(),
                message: format!("{kind} after {} attempt(s); {}", attempt + 1, kind.advice()),
                fields: vec![],
            };
            return backoff(kind.to_string(), vec![error]);
        }
    };
    if (200..300).contains(&status) {
        return SalesforceRetryDecision::Done;
    }
    let errors = read_errors(status, body);
    let dispositions: Vec<Disposition> = errors.iter().map(|e| classify(&e.code)).collect();
    if status == 401 || dispositions.contains(&Disposition::Reauthenticate) {
        return if reauthenticated {
            SalesforceRetryDecision::Fail(errors)
        } else {
            SalesforceRetryDecision::Reauthenticate
        };
    }
    if dispositions.contains(&Disposition::StopForToday) {
        return SalesforceRetryDecision::Pause(errors);
    }
    if status >= 500 || dispositions.contains(&Disposition::Retry) {
        let reason = errors
            .first()
            .map(|e| e.code.clone())
            .unwrap_or_else(|| format!("HTTP {status}"));
        return backoff(reason, errors);
    }
    SalesforceRetryDecision::Fail(errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use SalesforceRetryDecision::*;

    fn r(status: u16, body: &str) -> SalesforceOutcome<'_> {
        SalesforceOutcome::Response { status, body }
    }

    fn kind(d: &SalesforceRetryDecision) -> &'static str {
        match d {
            Done => "done",
            Retry { .. } => "retry",
            Reauthenticate => "reauth",
            Pause(_) => "pause",
            Fail(_) => "fail",
        }
    }

    #[test]
    fn table() {
        let p = SalesforceRetryPolicy::default();
        let expired = r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#;
        let limit = r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#;
        let lock = r#"[{"message":"unable to obtain exclusive access","errorCode":"UNABLE_TO_LOCK_ROW"}]"#;
        let bad = r#"[{"message":"No such column","errorCode":"INVALID_FIELD"}]"#;
        #[rustfmt::skip]
        let cases = [
            (r(200, "{}"), 0, false, "done"), (r(201, ""), 0, false, "done"), (r(204, ""), 0, false, "done"),
            (r(401, expired), 0, false, "reauth"), (r(401, expired), 0, true, "fail"), (r(401, ""), 0, false, "reauth"),
            (r(403, limit), 0, false, "pause"), (r(400, lock), 0, false, "retry"), (r(400, lock), 4, false, "fail"),
            (r(503, ""), 0, false, "retry"), (r(500, "oops"), 1, false, "retry"), (r(400, bad), 0, false, "fail"),
            (r(404, "[]"), 0, false, "fail"), (SalesforceOutcome::Timeout, 0, false, "retry"),
            (SalesforceOutcome::Transport(TransportError::Connect), 4, false, "fail"),
            (SalesforceOutcome::Transport(TransportError::BodyRead { status: 200 }), 0, false, "retry"),
        ];
        for (i, (outcome, attempt, reauth, want)) in cases.into_iter().enumerate() {
            assert_eq!(kind(&decide(outcome, attempt, reauth, &p, 0.5)), want, "case {i}");
        }
    }

    #[test]
    fn backoff_grows_with_equal_jitter_and_is_capped() {
        let p = SalesforceRetryPolicy::default();
        let wait = |attempt, jitter| match decide(r(503, ""), attempt, false, &p, jitter) {
            Retry { after, .. } => after,
            other => panic!("{other:?}"),
        };
        assert_eq!(wait(0, 0.0), Duration::from_millis(250));
        assert_eq!(wait(0, 0.999_999).as_millis(), 499);
        assert_eq!(wait(2, 0.0), Duration::from_secs(1));
        let capped = SalesforceRetryPolicy {
            max_attempts: 30,
            ..p.clone()
        };
        assert!(matches!(decide(r(503, ""), 20, false, &capped, 1.0), Retry { after, .. } if after <= capped.cap));
    }

    #[test]
    fn a_transport_failure_past_the_last_attempt_fails_naming_it() {
        let p = SalesforceRetryPolicy::default();
        match decide(SalesforceOutcome::Transport(TransportError::Tls), 4, false, &p, 0.0) {
            Fail(e) => {
                assert_eq!(e[0].code, "TRANSPORT");
                assert!(
                    e[0].message.starts_with("TLS failed after 5 attempt(s); check"),
                    "{}",
                    e[0].message
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_keep_salesforce_words() {
        let e = read_errors(400, r#"[{"message":"No such column","errorCode":"INVALID_FIELD"}]"#);
        assert_eq!(
            (e[0].code.as_str(), e[0].message.as_str()),
            ("INVALID_FIELD", "No such column")
        );
        assert_eq!(
            read_errors(502, "<html>").first().map(|e| e.code.as_str()),
            Some("HTTP_502")
        );
    }
}
