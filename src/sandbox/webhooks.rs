//! Webhook deliveries as HubSpot sends them: a JSON array of events, signed v3
//! (`X-HubSpot-Signature-v3`, `X-HubSpot-Request-Timestamp`), retried with growing waits when the
//! target fails (a connection error, a timeout, or any status other than 2xx), up to a bounded
//! number of attempts. HubSpot spreads 10 attempts over 24 hours; the sandbox keeps the count and
//! compresses the waits.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use serde::Serialize;

use crate::hubspot::signature::sign_v3;

/// One event of a delivery, in HubSpot's Webhooks API shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Unique per event.
    pub event_id: u64,
    /// The app's subscription.
    pub subscription_id: u64,
    /// Portal id.
    pub portal_id: u64,
    /// App id.
    pub app_id: u64,
    /// When it happened (epoch ms, sandbox clock).
    pub occurred_at: i64,
    /// `contact.propertyChange`, `contact.creation`, …
    pub subscription_type: String,
    /// Attempt number of this delivery (0 first).
    pub attempt_number: u32,
    /// Contact id.
    pub object_id: u64,
    /// Property changed (property changes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub property_name: Option<String>,
    /// Its new value (property changes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub property_value: Option<String>,
    /// `FORM`, `API`, `CRM_UI`, …
    pub change_source: String,
}

/// What happened to one delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookDelivery {
    /// Event ids it carried.
    pub event_ids: Vec<u64>,
    /// The events it carried, in the order sent (first attempt).
    pub events: Vec<Event>,
    /// Attempts made.
    pub attempts: u32,
    /// Status of each attempt (`None`: no answer).
    pub statuses: Vec<Option<u16>>,
    /// Whether an attempt was answered 2xx.
    pub delivered: bool,
    /// Delivered, or every attempt made: nothing more will be sent.
    pub finished: bool,
}

/// A delivery as HubSpot posts it: `body` (JSON) to `url`, signed v3 with the app's `secret`
/// for `signed_uri` (the URL HubSpot called: `url`, or a proxy's in front of it) at
/// `timestamp_ms`. The sandbox's deliveries, and the tests' and benches' own, are built here.
pub fn signed_post<B>(
    http: &reqwest::Client,
    url: &str,
    signed_uri: &str,
    secret: &SecretString,
    timestamp_ms: i64,
    body: B,
) -> reqwest::RequestBuilder
where
    B: AsRef<[u8]> + Into<reqwest::Body>,
{
    let ts = timestamp_ms.to_string();
    let signature = sign_v3(secret, "POST", signed_uri, body.as_ref(), &ts);
    http.post(url)
        .header("content-type", "application/json")
        .header("x-hubspot-signature-v3", signature)
        .header("x-hubspot-request-timestamp", ts)
        .body(body)
}

pub(crate) struct Job {
    pub(crate) http: reqwest::Client,
    pub(crate) url: String,
    pub(crate) secret: SecretString,
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Duration,
    pub(crate) log: Arc<Mutex<Vec<WebhookDelivery>>>,
}

impl Job {
    pub(crate) async fn run(self, mut events: Vec<Event>) {
        let slot = {
            let mut log = super::lock(&self.log);
            log.push(WebhookDelivery {
                event_ids: events.iter().map(|e| e.event_id).collect(),
                events: events.clone(),
                attempts: 0,
                statuses: Vec::new(),
                delivered: false,
                finished: false,
            });
            log.len() - 1
        };
        for attempt in 0..self.max_attempts {
            for e in &mut events {
                e.attempt_number = attempt;
            }
            let body = serde_json::to_vec(&events).unwrap_or_default();
            // The receiver checks the timestamp against its own wall clock, so this one is real.
            let now = chrono::Utc::now().timestamp_millis();
            let status = signed_post(&self.http, &self.url, &self.url, &self.secret, now, body)
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16());
            let ok = status.is_some_and(|s| (200..300).contains(&s));
            {
                let mut log = super::lock(&self.log);
                let d = &mut log[slot];
                d.attempts = attempt + 1;
                d.statuses.push(status);
                d.delivered = ok;
                d.finished = ok || attempt + 1 == self.max_attempts;
            }
            if ok {
                return;
            }
            if attempt + 1 < self.max_attempts {
                tokio::time::sleep(self.backoff.saturating_mul(1 << attempt.min(16))).await;
            }
        }
    }
}
