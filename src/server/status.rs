//! The status page: `GET /` (server-rendered HTML, usable without JavaScript) and
//! `GET /status.json` (the same [`Status`]): the funnel with conversion rates, open SLA
//! breaches, each job's last run, the API budgets, the inbox, the outbox, dead letters and the
//! review list. Nothing personal beyond contact ids and owner names.
//!
//! Open without a token only when the server is bound to loopback; on any other address it
//! needs `server.status_token` as a bearer token, compared in constant time, and without one
//! configured the page is refused to everyone. The webhook intake is not concerned.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tracing::warn;

use super::{AppState, Portals};
use crate::report::ORDER;
use crate::report::html::{funnel_bars, page};
use crate::report::svg::{self, escape};
use crate::store::status::{JobRun, OpenBreach};
use crate::store::{OutboxKind, OutboxState, Store, StoreError};

/// The jobs whose last run the page shows, as `sync::schedule` names them.
pub const JOBS: [&str; 4] = ["sync", "rescore", "sla", "opportunities"];

/// Breaches listed (the most overdue); the count covers them all.
const BREACHES_SHOWN: usize = 100;

/// Who may read the status page.
#[derive(Clone, Default)]
pub enum StatusAccess {
    /// Anyone who reaches the server (it listens on loopback only).
    Open,
    /// Whoever sends `Authorization: Bearer TOKEN`.
    Token(SecretString),
    /// Nobody: the server listens beyond loopback and no token is configured.
    #[default]
    Closed,
}

impl StatusAccess {
    /// The access a server bound to `bind` gets: a configured token always applies; without
    /// one, the page is open on loopback and closed elsewhere.
    pub fn for_bind(bind: &str, token: Option<SecretString>) -> StatusAccess {
        match token {
            Some(t) => StatusAccess::Token(t),
            None if bind.parse::<SocketAddr>().is_ok_and(|a| a.ip().is_loopback()) => StatusAccess::Open,
            None => StatusAccess::Closed,
        }
    }

    /// `Err` says why the request is refused (never the token).
    fn check(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let refuse = Err;
        match self {
            StatusAccess::Open => Ok(()),
            StatusAccess::Closed => refuse(
                "the status page is off: the server listens beyond loopback and server.status_token is not set\n",
            ),
            StatusAccess::Token(want) => {
                let given = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or("");
                let want = want.expose_secret().as_bytes();
                if given.len() == want.len() && bool::from(given.as_bytes().ct_eq(want)) {
                    Ok(())
                } else {
                    refuse("the status page needs the bearer token configured as server.status_token\n")
                }
            }
        }
    }
}

/// What the page shows of the API budgets, from the clients' limiters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ApiBudget {
    /// HubSpot's day (midnight in the portal's time zone).
    pub hubspot: HubSpotBudget,
    /// Salesforce's rolling 24 hours; `None` without Salesforce credentials.
    pub salesforce: Option<SalesforceBudget>,
}

/// HubSpot today.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HubSpotBudget {
    /// Calls leadsync sent this HubSpot day.
    pub leadsync_calls_today: u64,
    /// Calls left today for the whole portal as HubSpot last reported (private apps), else
    /// leadsync's allocation less its calls (OAuth apps), else unknown.
    pub remaining_today: Option<u64>,
}

/// Salesforce over the rolling 24 hours.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SalesforceBudget {
    /// Calls by every integration of the org, as `Sforce-Limit-Info` last said (none before
    /// the first answer).
    pub org_used: Option<u64>,
    /// The org's daily allocation.
    pub org_max: Option<u64>,
    /// Calls leadsync made.
    pub leadsync_calls: u64,
    /// The percent of the allocation leadsync may use.
    pub leadsync_share_percent: u8,
}

/// Where the status page's figures come from beyond the store.
#[derive(Clone)]
pub struct StatusSources {
    /// Who may read it.
    pub access: StatusAccess,
    /// The budgets at a time, read from the clients' limiters.
    pub budget: Arc<dyn Fn(DateTime<Utc>) -> ApiBudget + Send + Sync>,
    /// This replica and the key of the portal's lease (`replica::Replica`), so the page says
    /// whether this replica does the portal's work or stands by; `None` outside `run`.
    pub replica: Option<(String, String)>,
}

impl Default for StatusSources {
    fn default() -> Self {
        StatusSources {
            access: StatusAccess::Closed,
            budget: Arc::new(|_| ApiBudget::default()),
            replica: None,
        }
    }
}

/// Who does the portal's CRM work: the holder of its lease, seen from the replica asked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeaseLine {
    /// The replica asked (`host-pid-random`).
    pub replica: String,
    /// `holds` (this replica runs the portal's jobs and workers) or `stands_by` (it serves the
    /// portal's webhooks; another replica, or none yet, holds the lease).
    pub role: &'static str,
    /// The replica holding the lease, if one does (an expired lease counts as none).
    pub holder: Option<String>,
    /// The lease's generation (grows at every takeover).
    pub generation: Option<i64>,
}

/// One stage of the current funnel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunnelStage {
    /// The stage.
    pub stage: &'static str,
    /// Contacts at it now.
    pub contacts: u64,
    /// Contacts at it or past it.
    pub reached: u64,
    /// Of those, the share at the next stage or past it.
    pub to_next: Option<f64>,
}

/// A job and its last run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobLine {
    /// The job's name.
    pub job: &'static str,
    /// Its last run, `None` when it never ran.
    pub last_run: Option<JobRun>,
}

/// An open breach and how late it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreachLine {
    /// The timer.
    #[serde(flatten)]
    pub breach: OpenBreach,
    /// Minutes since the first touch was due.
    pub late_minutes: i64,
}

/// An outbox item that needs a person: a dead letter or a review.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemLine {
    /// Outbox row id (`leadsync retry --id N`).
    pub id: i64,
    /// `hubspot_write`, `promote` or `sla_step`.
    pub kind: &'static str,
    /// HubSpot contact id.
    pub contact_id: String,
    /// Attempts made.
    pub attempts: u32,
    /// The CRM's own message (Salesforce's for promotions).
    pub message: Option<String>,
}

/// Everything the status page shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// When it was read.
    pub at: DateTime<Utc>,
    /// Contacts without a stage (not in the funnel).
    pub no_stage: u64,
    /// The funnel from subscriber to customer.
    pub funnel: Vec<FunnelStage>,
    /// Breached SLA timers without a first touch, all of them.
    pub open_breaches: u64,
    /// The most overdue of them.
    pub breaches: Vec<BreachLine>,
    /// Each job's last run.
    pub jobs: Vec<JobLine>,
    /// API budgets.
    pub budget: ApiBudget,
    /// Webhook events waiting.
    pub inbox_depth: u64,
    /// Age of the oldest, seconds.
    pub inbox_oldest_secs: Option<i64>,
    /// Dead inbox events.
    pub inbox_dead: u64,
    /// Outbox items by kind and state.
    pub outbox: Vec<(String, String, u64)>,
    /// Dead letters of every kind.
    pub dead_letters: Vec<ItemLine>,
    /// Promotions Salesforce refused that need a person.
    pub review: Vec<ItemLine>,
    /// With several portals (`[[portals]]`): the portal shown (`?portal=ID`, default the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portal: Option<u64>,
    /// With several portals: every portal of the deployment, for the page's links.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub portals: Vec<u64>,
    /// Under `leadsync run`: whether this replica holds the portal's lease.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseLine>,
}

fn items(kind: OutboxKind, list: Vec<crate::store::OutboxItem>) -> impl Iterator<Item = ItemLine> {
    list.into_iter().map(move |it| ItemLine {
        id: it.id,
        kind: kind.as_str(),
        contact_id: it.contact_id,
        attempts: it.attempts,
        message: it.last_error,
    })
}

/// Reads the status from the store at `now`, with `budget` from the limiters.
pub async fn gather(store: &Store, budget: ApiBudget, now: DateTime<Utc>) -> Result<Status, StoreError> {
    let rows = store.funnel().await?;
    let at = |stage: &str| rows.iter().filter(|r| r.stage == stage).map(|r| r.count).sum::<u64>();
    let counts: Vec<(&'static str, u64)> = ORDER[1..].iter().map(|s| (*s, at(s))).collect();
    let reached = |i: usize| counts[i..].iter().map(|(_, n)| n).sum::<u64>();
    let funnel = (0..counts.len())
        .map(|i| FunnelStage {
            stage: counts[i].0,
            contacts: counts[i].1,
            reached: reached(i),
            to_next: (i + 1 < counts.len() && reached(i) > 0).then(|| reached(i + 1) as f64 / reached(i) as f64),
        })
        .collect();
    let (open_breaches, list) = store.open_breaches(BREACHES_SHOWN).await?;
    let breaches = list
        .into_iter()
        .map(|b| BreachLine {
            late_minutes: (now - b.due_at).num_minutes(),
            breach: b,
        })
        .collect();
    let mut jobs = Vec::new();
    for job in JOBS {
        jobs.push(JobLine {
            job,
            last_run: store.job_run(job).await?,
        });
    }
    let (inbox_depth, oldest) = store.inbox_depth().await?;
    let mut dead_letters = Vec::new();
    for kind in [
        OutboxKind::HubSpotWrite,
        OutboxKind::Promote,
        OutboxKind::SlaStep,
        OutboxKind::OwnerAlert,
        OutboxKind::SalesforceContext,
    ] {
        dead_letters.extend(items(kind, store.outbox_in(kind, OutboxState::Dead).await?));
    }
    let review = items(
        OutboxKind::Promote,
        store.outbox_in(OutboxKind::Promote, OutboxState::Review).await?,
    )
    .collect();
    Ok(Status {
        at: now,
        no_stage: at("none"),
        funnel,
        open_breaches,
        breaches,
        jobs,
        budget,
        inbox_depth,
        inbox_oldest_secs: oldest.map(|t| (now - t).num_seconds().max(0)),
        inbox_dead: store.inbox_dead_list().await?.len() as u64,
        outbox: store.outbox_counts().await?,
        dead_letters,
        review,
        portal: None,
        portals: Vec::new(),
        lease: None,
    })
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "unknown".into(), |v| v.to_string())
}

fn item_table(out: &mut String, title: &str, list: &[ItemLine]) {
    let _ = writeln!(out, "<h2>{} ({})</h2>", escape(title), list.len());
    if list.is_empty() {
        out.push_str("<p class=\"muted\">none</p>\n");
        return;
    }
    out.push_str("<table><tr><th>item</th><th>kind</th><th>contact</th><th>attempts</th><th>message</th></tr>\n");
    for it in list {
        let _ = writeln!(
            out,
            "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            it.id,
            escape(it.kind),
            escape(&it.contact_id),
            it.attempts,
            escape(it.message.as_deref().unwrap_or(""))
        );
    }
    out.push_str("</table>\n");
}

/// The status as one HTML page (inline CSS and SVG, no JavaScript).
pub fn render(s: &Status) -> String {
    let mut b = String::new();
    if let Some(portal) = s.portal {
        let links: Vec<String> = s
            .portals
            .iter()
            .map(|p| {
                if *p == portal {
                    format!("<strong>{p}</strong>")
                } else {
                    format!("<a href=\"/?portal={p}\">{p}</a>")
                }
            })
            .collect();
        let _ = writeln!(
            b,
            "<h2>Portal {portal}</h2>\n<p class=\"muted\">portals: {} · <a href=\"/status.json?portal={portal}\">status.json</a></p>",
            links.join(" · ")
        );
    }
    let _ = writeln!(
        b,
        "<p class=\"muted\">as of {} · <a href=\"/status.json\">status.json</a></p>",
        escape(&s.at.to_rfc3339())
    );
    let _ = writeln!(b, "<h2>Funnel (contacts now; {} without a stage)</h2>", s.no_stage);
    let bars = funnel_bars(s.funnel.iter().map(|f| (f.stage, f.contacts, f.to_next)));
    b.push_str(&svg::bars(
        "funnel",
        "Contacts at each stage, share reaching the next",
        &bars,
    ));
    let _ = writeln!(b, "\n<h2>Open SLA breaches ({})</h2>", s.open_breaches);
    if s.breaches.is_empty() {
        b.push_str("<p class=\"muted\">none</p>\n");
    } else {
        b.push_str(
            "<table><tr><th>contact</th><th>owner</th><th>team</th><th>policy</th><th>due</th><th>late</th></tr>\n",
        );
        for l in &s.breaches {
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{} h {} min</td></tr>",
                escape(&l.breach.contact_id),
                escape(l.breach.owner.as_deref().unwrap_or("(none)")),
                escape(l.breach.team.as_deref().unwrap_or("(none)")),
                escape(&l.breach.policy),
                escape(&l.breach.due_at.to_rfc3339()),
                l.late_minutes / 60,
                l.late_minutes % 60
            );
        }
        b.push_str("</table>\n");
    }
    b.push_str(
        "<h2>Jobs</h2>\n<table><tr><th>job</th><th>last run</th><th>outcome</th><th>took</th><th>error</th></tr>\n",
    );
    for j in &s.jobs {
        match &j.last_run {
            None => {
                let _ = writeln!(b, "<tr><td>{}</td><td colspan=\"4\">never ran</td></tr>", escape(j.job));
            }
            Some(r) => {
                let _ = writeln!(
                    b,
                    "<tr><td>{}</td><td>{}</td><td>{:?}</td><td class=\"n\">{} ms</td><td>{}</td></tr>",
                    escape(j.job),
                    escape(&r.at.to_rfc3339()),
                    r.outcome,
                    r.ms,
                    escape(r.error.as_deref().unwrap_or(""))
                );
            }
        }
    }
    b.push_str("</table>\n");
    if let Some(l) = &s.lease {
        let _ = writeln!(
            b,
            "<p>Replica {}: {}</p>",
            escape(&l.replica),
            match (l.role, &l.holder) {
                ("holds", _) => "holds the portal's lease and runs its jobs and workers".to_string(),
                (_, Some(h)) => format!("stands by (serving webhooks); replica {} holds the lease", escape(h)),
                (_, None) => "stands by (serving webhooks); no replica holds the lease".to_string(),
            }
        );
    }
    b.push_str("<h2>API budget</h2>\n<table>");
    let hs = &s.budget.hubspot;
    let _ = writeln!(
        b,
        "<tr><td>HubSpot today</td><td>leadsync {} calls · {} left for the portal</td></tr>",
        hs.leadsync_calls_today,
        opt(hs.remaining_today)
    );
    match &s.budget.salesforce {
        None => b.push_str("<tr><td>Salesforce</td><td>not configured</td></tr>\n"),
        Some(sf) => {
            let _ = writeln!(
                b,
                "<tr><td>Salesforce, 24 h</td><td>leadsync {} calls (its share: {} % of the allocation) · the org {} of {}</td></tr>",
                sf.leadsync_calls,
                sf.leadsync_share_percent,
                opt(sf.org_used),
                opt(sf.org_max)
            );
        }
    }
    let _ = writeln!(
        b,
        "</table>\n<h2>Inbox</h2>\n<p>{} waiting · oldest {} s · {} dead</p>",
        s.inbox_depth,
        opt(s.inbox_oldest_secs),
        s.inbox_dead
    );
    b.push_str("<h2>Outbox</h2>\n<table><tr><th>kind</th><th>state</th><th>items</th></tr>\n");
    for (kind, state, n) in &s.outbox {
        let _ = writeln!(
            b,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{n}</td></tr>",
            escape(kind),
            escape(state)
        );
    }
    b.push_str("</table>\n");
    item_table(&mut b, "Review list (needs a person)", &s.review);
    item_table(&mut b, "Dead letters", &s.dead_letters);
    page("leadsync status", &b)
}

/// `?portal=ID`: which portal's status, with several (`[[portals]]`); default the first.
#[derive(Debug, Deserialize)]
pub struct PortalQuery {
    /// The HubSpot portal id.
    pub portal: Option<u64>,
}

async fn read(portals: &Portals, query: &PortalQuery, headers: &HeaderMap) -> Result<Status, Response> {
    let state: &AppState = &portals.first().app;
    state
        .status
        .access
        .check(headers)
        .map_err(|why| (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], why).into_response())?;
    let route = portals.find(query.portal).ok_or_else(|| {
        let ids: Vec<String> = portals.ids().iter().map(u64::to_string).collect();
        let served = if ids.is_empty() {
            "one portal, without ?portal=".to_string()
        } else {
            ids.join(", ")
        };
        (
            StatusCode::NOT_FOUND,
            format!(
                "no portal {} here; this deployment serves {served}\n",
                query.portal.unwrap_or_default()
            ),
        )
            .into_response()
    })?;
    let state = &route.app;
    let now = Utc::now();
    let mut status = gather(&state.store, (state.status.budget)(now), now)
        .await
        .map_err(|e| {
            warn!(error = %e, portal = ?route.id, "the status page could not read the store");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("store: {e}\n")).into_response()
        })?;
    status.portals = portals.ids();
    if !status.portals.is_empty() {
        status.portal = route.id;
    }
    if let Some((replica, key)) = &state.status.replica {
        let row = state.store.lease(key).await.map_err(|e| {
            warn!(error = %e, portal = ?route.id, "the status page could not read the portal's lease");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("store: {e}\n")).into_response()
        })?;
        status.lease = Some(lease_line(replica, row, now));
    }
    Ok(status)
}

/// The lease row as the replica `replica` sees it at `now`.
fn lease_line(replica: &str, row: Option<crate::store::LeaseRow>, now: DateTime<Utc>) -> LeaseLine {
    let live = row.filter(|r| r.expires_at > now);
    LeaseLine {
        replica: replica.to_string(),
        role: if live.as_ref().is_some_and(|r| r.holder == replica) {
            "holds"
        } else {
            "stands_by"
        },
        holder: live.as_ref().map(|r| r.holder.clone()),
        generation: live.map(|r| r.generation),
    }
}

/// `GET /` (`?portal=ID` with several portals).
pub async fn page_html(
    State(portals): State<Arc<Portals>>,
    Query(q): Query<PortalQuery>,
    headers: HeaderMap,
) -> Response {
    match read(&portals, &q, &headers).await {
        Ok(s) => Html(render(&s)).into_response(),
        Err(r) => r,
    }
}

/// `GET /status.json` (`?portal=ID` with several portals).
pub async fn json(State(portals): State<Arc<Portals>>, Query(q): Query<PortalQuery>, headers: HeaderMap) -> Response {
    match read(&portals, &q, &headers).await {
        Ok(s) => Json(s).into_response(),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
        h
    }

    #[test]
    fn loopback_is_open_elsewhere_a_token_is_needed() {
        assert!(matches!(
            StatusAccess::for_bind("127.0.0.1:8080", None),
            StatusAccess::Open
        ));
        assert!(matches!(StatusAccess::for_bind("[::1]:8080", None), StatusAccess::Open));
        assert!(matches!(
            StatusAccess::for_bind("0.0.0.0:8080", None),
            StatusAccess::Closed
        ));
        assert!(matches!(
            StatusAccess::for_bind("127.0.0.1:8080", Some("t".to_string().into())),
            StatusAccess::Token(_)
        ));
    }

    #[test]
    fn only_the_exact_token_passes() {
        let access = StatusAccess::for_bind("0.0.0.0:80", Some("s3cret-token".to_string().into()));
        assert!(access.check(&bearer("s3cret-token")).is_ok());
        assert!(access.check(&bearer("s3cret-tokeN")).is_err());
        assert!(access.check(&bearer("s3cret")).is_err());
        assert!(access.check(&HeaderMap::new()).is_err());
        assert!(StatusAccess::Closed.check(&bearer("anything")).is_err());
    }
}
