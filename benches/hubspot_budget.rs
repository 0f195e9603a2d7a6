//! `cargo bench --bench hubspot_budget`: the request rate the HubSpot client sustains against
//! its budget, on a loopback server that enforces exactly that budget over a rolling window
//! (answering 429 TEN_SECONDLY_ROLLING past it). The window is scaled from HubSpot's 10 s to
//! 1 s, and the budget to 50, so a run takes seconds; pacing scales with them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leadsync::hubspot::auth::HubSpotAuth;
use leadsync::hubspot::client::{HubSpotClient, HubSpotClientConfig};
use leadsync::hubspot::limiter::Priority;
use leadsync::hubspot::retry::RetryPolicy;
use secrecy::SecretString;
use serde_json::json;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const BUDGET: usize = 50;
const WINDOW: Duration = Duration::from_secs(1);
const REQUESTS: usize = 400;
const CALLERS: usize = 16;

/// Answers 200 while the rolling window holds at most `BUDGET` requests, 429 past it.
#[derive(Clone, Default)]
struct Enforcer {
    seen: Arc<Mutex<(VecDeque<Instant>, usize)>>,
}

impl Respond for Enforcer {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut guard = self.seen.lock().expect("lock");
        let now = Instant::now();
        while guard.0.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            guard.0.pop_front();
        }
        if guard.0.len() >= BUDGET {
            guard.1 += 1;
            return ResponseTemplate::new(429).set_body_json(json!({
                "status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                "policyName": "TEN_SECONDLY_ROLLING"
            }));
        }
        guard.0.push_back(now);
        ResponseTemplate::new(200).set_body_json(json!({"results": []}))
    }
}

#[tokio::main]
async fn main() {
    let server = MockServer::start().await;
    let enforcer = Enforcer::default();
    Mock::given(wiremock::matchers::any())
        .respond_with(enforcer.clone())
        .mount(&server)
        .await;
    let config = HubSpotClientConfig {
        base_url: server.uri().parse().expect("uri"),
        burst: BUDGET as u32,
        interval: WINDOW,
        search_per_second: 5,
        daily_reserve: 0,
        daily_allocation: None,
        time_zone: chrono_tz::Tz::UTC,
        timeout: Some(Duration::from_secs(5)),
        retry: RetryPolicy::default(),
    };
    let client = HubSpotClient::new(config, HubSpotAuth::static_token(None, SecretString::from("t"))).expect("client");
    let start = Instant::now();
    let per_caller = REQUESTS / CALLERS;
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move {
                for _ in 0..per_caller {
                    c.list_contacts(None, &[], Priority::Background).await.expect("call");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let sent = client.stats().total() as f64;
    let rejected = enforcer.seen.lock().expect("lock").1;
    let budget_rate = BUDGET as f64 / WINDOW.as_secs_f64();
    // The first request goes at t=0, so n requests span n-1 intervals.
    let achieved = (sent - 1.0) / elapsed;
    println!(
        "budget {BUDGET} per {:?} ({budget_rate:.0}/s): {sent} requests from {CALLERS} callers in {elapsed:.2} s = {achieved:.1}/s, \
         {:.1}% of the budget; 429 answers from the enforcing server: {rejected}",
        WINDOW,
        achieved / budget_rate * 100.0
    );
}
