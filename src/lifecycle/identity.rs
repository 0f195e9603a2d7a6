//! Decision identity: a fixed, seeded population of generated contacts evaluated in chains (each
//! decision carried out, new events and sales' inputs added, evaluated again later) and with their
//! events reversed, under the shipped rules. The digest of every serialized decision, its
//! explanation and the signals that fed it is pinned: an optimisation of the engine must leave
//! every byte of every decision as it was. When a change of behaviour is intended, the digest is
//! recomputed and the change said in the commit.

use std::fmt::Write as _;

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use super::explain::render_text;
use super::model::{EventKind, Stage};
use super::snapshot::{Direction, Event, HubSpotId, Snapshot, StageEntry};
use super::{Action, Change, Decision, Rules, Status, evaluate, evaluate_signalled, headline, signals};

/// Contacts generated; each gives `CHAIN` chained decisions and as many with reversed events.
const CONTACTS: u64 = 3_000;
const CHAIN: usize = 3;
/// SHA-256 of the population's decisions, computed on the engine before its speed work.
const DIGEST: &str = "918c50949a7d3a6ead8c05061a70e7bffcb8ba66d9e9e378a4668d3ba74c5b3a";

/// splitmix64: small, seeded, the same on every platform and every version of every crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const TITLES: &[&str] = &[
    "Head of Revenue Operations",
    "VP Marketing",
    "Marketing Manager",
    "CMO",
    "Student",
    "Stagiaire marketing",
    "Directeur Général",
    "Sales Manager",
    "CTO",
    "Software Engineer",
    "Chef de projet digital",
    "Responsable RevOps",
    "Account Executive",
    "Founder & CEO",
    "Growth Lead",
    "",
    "  Head of  IT ",
    "Business Development Representative",
    "Information Security Officer",
    "Operations Director",
    "Chief Revenue Officer",
    "Demand Gen Specialist",
    "Directrice marketing",
    "Vice President, Sales Ops",
    "Office manager",
    "Étudiant en commerce",
    "Head of Growth",
    "Consultant",
];
const DOMAINS: &[&str] = &[
    "northwind.io",
    "acme-logistics.fr",
    "gmail.com",
    "Yahoo.FR",
    "rivalsync.io",
    "eu.crmbridge.com",
    "hotmail.com",
    "contoso.com",
    "orange.fr",
    "globex.de",
];
const EMPLOYEES: &[&str] = &[
    "5", "9", "10", "49", "50", "320", "1,200", "2000", "2001", "15000", "lots", " ",
];
const INDUSTRIES: &[&str] = &[
    "COMPUTER_SOFTWARE",
    "Computer Software",
    "RETAIL",
    "Financial Services",
    "saas",
    "INTERNET",
    "",
];
const COUNTRIES: &[&str] = &[
    "France",
    "FR",
    "Germany",
    "Brazil",
    "US",
    "united kingdom",
    "  ",
    "Japan",
    "Belgique",
];
const HUBSPOT_STAGES: &[&str] = &[
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "",
];
const URLS: &[&str] = &[
    "https://www.example.com/pricing",
    "https://www.example.fr/tarifs",
    "https://www.example.com/careers",
    "https://www.example.com/features",
    "https://www.example.com/blog/scoring",
    "https://www.example.com/integrations/salesforce",
    "https://www.example.com/case-studies/acme",
    "https://www.example.com/jobs/sdr",
    "https://www.example.com/",
    "https://www.example.com/product/tour",
];
const FORMS: &[&str] = &[
    "Request a demo",
    "Demander une démo",
    "Ebook: RevOps",
    "Newsletter",
    "Free trial",
    "Contact sales",
    "Book a meeting",
    "Pricing request",
    "Random form",
    "Livre blanc 2026",
    "Webinar replay",
    "Checklist",
];

/// A generated event; `burst` events are marketing's alone (what makes a fan).
fn event(rng: &mut Rng, id: String, at: DateTime<Utc>, burst: bool) -> Event {
    use EventKind::*;
    let kind = if burst {
        *rng.pick(&[PageView, PageView, EmailOpen, EmailClick, WebinarAttended])
    } else {
        *rng.pick(&[
            PageView,
            PageView,
            PageView,
            PageView,
            EmailOpen,
            EmailOpen,
            EmailClick,
            EmailUnsubscribe,
            FormSubmission,
            FormSubmission,
            WebinarAttended,
            Meeting,
            Call,
            SalesEmail,
            Chat,
            Note,
            Task,
        ])
    };
    let url = matches!(kind, PageView | EmailClick).then(|| rng.pick(URLS).to_string());
    let form = (kind == FormSubmission && !rng.chance(5)).then(|| rng.pick(FORMS).to_string());
    let campaign = matches!(kind, EmailOpen | EmailClick | WebinarAttended | FormSubmission)
        .then(|| format!("c-{}", rng.below(8)));
    let direction = matches!(kind, Meeting | Call | SalesEmail | Chat)
        .then(|| *rng.pick(&[Some(Direction::Inbound), Some(Direction::Outbound), None]))
        .flatten();
    let outcome = matches!(kind, Call | Meeting)
        .then(|| {
            rng.pick(&[Some("connected"), Some("no_answer"), None])
                .map(str::to_string)
        })
        .flatten();
    let owner = (direction.is_some() && rng.chance(50)).then(|| format!("{}", 7000 + rng.below(3)));
    Event {
        id,
        kind,
        at,
        url,
        form,
        campaign,
        direction,
        outcome,
        owner,
    }
}

fn minutes(m: u64) -> Duration {
    Duration::minutes(m as i64)
}

/// One generated contact as first seen at `now`.
fn contact(rng: &mut Rng, n: u64, now: DateTime<Utc>) -> Snapshot {
    let mut s = Snapshot {
        contact_id: HubSpotId::try_from((1000 + n).to_string()).expect("digits"),
        properties: Default::default(),
        events: Vec::new(),
        state: Default::default(),
    };
    let mut set = |rng: &mut Rng, percent: u64, key: &str, values: &[&str]| {
        if rng.chance(percent) {
            let v = rng.pick(values).to_string();
            s.properties.insert(key.to_string(), v);
        }
    };
    set(rng, 50, "firstname", &["Camille", "Sam"]);
    set(rng, 50, "lastname", &["Durand", "Lee"]);
    set(rng, 30, "phone", &["+33 1 23 45 67 89", " "]);
    set(rng, 50, "company", &["Acme", "Globex", ""]);
    set(rng, 80, "jobtitle", TITLES);
    set(
        rng,
        25,
        "hs_persona",
        &["persona_1", "marketing_leader", "revops_leader"],
    );
    set(rng, 70, "numemployees", EMPLOYEES);
    set(rng, 60, "industry", INDUSTRIES);
    set(rng, 60, "country", COUNTRIES);
    set(rng, 35, "lifecyclestage", HUBSPOT_STAGES);
    set(rng, 10, "hs_email_optout", &["true", "false"]);
    set(rng, 5, "hs_email_hard_bounce_reason_enum", &["HARD_BOUNCE"]);
    set(rng, 15, "leadsync_sal_decision", &["accepted", "rejected", "Rejected "]);
    set(
        rng,
        12,
        "leadsync_rejection_reason",
        &["false_hot", "not_ready", "bogus", ""],
    );
    set(rng, 10, "leadsync_sql_qualified", &["true", "false"]);
    set(rng, 5, "leadsync_met_in_person", &["true"]);
    set(rng, 12, "leadsync_opportunity_status", &["open", "won", "lost", "Lost"]);
    set(rng, 12, "leadsync_opportunity_amount", &["0", "12000", "1,500.50"]);
    set(
        rng,
        10,
        "leadsync_opportunity_close_date",
        &["2026-12-15", "1796000000000"],
    );
    set(
        rng,
        12,
        "leadsync_opportunity_closed_at",
        &["2026-06-01", "2026-10-30T10:00:00Z", "1790000000000", "garbage"],
    );
    set(rng, 15, "leadsync_engagement_score", &["0", "12", "35", "61"]);
    set(rng, 10, "leadsync_grade", &["A1", "C3"]);
    if rng.chance(90) {
        let local = rng.pick(&["camille.durand", "sam", "Jo.Smith"]).to_string();
        let domain = rng.pick(DOMAINS).to_string();
        s.properties.insert("email".into(), format!("{local}@{domain}"));
    }

    // Most contacts have a few months of activity; some a burst (fans); some nothing.
    let (count, span_minutes, burst) = match rng.below(10) {
        0 => (0, 1, false),
        1 => (40 + rng.below(40), 30 * 1440, true),
        _ => (rng.below(30), 400 * 1440, false),
    };
    for j in 0..count {
        let id = if j > 0 && rng.chance(4) {
            format!("e{}", rng.below(j)) // a repeated id: counted once
        } else {
            format!("e{j}")
        };
        let at = if rng.chance(3) {
            now + minutes(1 + rng.below(2 * 1440)) // clock skew
        } else {
            now - minutes(rng.below(span_minutes))
        };
        s.events.push(event(rng, id, at, burst));
    }

    // A third were seen before: a stored state, sometimes far along or recycled.
    if rng.chance(33) {
        let stage = *rng.pick(&Stage::ALL);
        let since = now - minutes(rng.below(200 * 1440));
        for st in Stage::ALL.iter().filter(|x| **x <= stage) {
            s.state.stages.insert(
                *st,
                StageEntry {
                    at: since,
                    skipped: rng.chance(10),
                },
            );
        }
        s.state.stage = Some(stage);
        if rng.chance(70) {
            let hs = match stage {
                Stage::Subscriber => "subscriber",
                Stage::Lead => "lead",
                Stage::Mql | Stage::Sal => "marketingqualifiedlead",
                Stage::Sql => "salesqualifiedlead",
                Stage::Opportunity => "opportunity",
                Stage::Customer => "customer",
            };
            s.state.hubspot_stage_seen = Some(hs.to_string());
        }
        s.state.status = *rng.pick(&Status::ALL);
        s.state.status_since = Some(since);
        if rng.chance(30) {
            s.state.status_reason = Some("recycled earlier".into());
        }
        s.state.recycle_count = rng.below(5) as u32;
        if rng.chance(20) {
            s.state.cooldown_until = Some(now + minutes(rng.below(40 * 1440)) - minutes(20 * 1440));
        }
        if rng.chance(15) {
            s.state.engagement_reset_at = Some(now - minutes(rng.below(100 * 1440)));
        }
        if rng.chance(10) {
            s.state
                .consumed
                .insert("leadsync_sal_decision".into(), "rejected".into());
        }
        s.state.promotion_pending = stage >= Stage::Sql && rng.chance(30);
        if rng.chance(10) {
            s.state.engagement_written_at = Some(now - minutes(rng.below(3 * 1440)));
        }
    }
    s
}

/// The snapshot after `d` was carried out: state stored, HubSpot writes applied.
fn carried_out(mut s: Snapshot, d: &Decision<'_>) -> Snapshot {
    s.state = d.state.clone();
    for a in &d.actions {
        match a {
            Action::WriteHubSpot { properties } => {
                for (k, v) in properties {
                    if v.is_empty() {
                        s.properties.remove(k);
                    } else {
                        s.properties.insert(k.clone(), v.clone());
                    }
                }
            }
            Action::SetLifecycleStage { value, .. } => {
                s.properties.insert("lifecyclestage".into(), value.clone());
            }
            Action::PromoteToSalesforce => s.state.promotion_pending = false,
        }
    }
    s
}

/// Sales' and HubSpot's inputs between two decisions.
fn outside_changes(rng: &mut Rng, s: &mut Snapshot) {
    let p = &mut s.properties;
    match rng.below(12) {
        0 => {
            p.insert("leadsync_sal_decision".into(), "accepted".into());
        }
        1 => {
            p.insert("leadsync_sal_decision".into(), "rejected".into());
            p.insert(
                "leadsync_rejection_reason".into(),
                rng.pick(&["false_hot", "no_budget", "whatever", ""]).to_string(),
            );
        }
        2 => {
            p.insert("leadsync_sql_qualified".into(), "true".into());
        }
        3 => {
            p.insert("leadsync_opportunity_status".into(), "lost".into());
            p.insert("leadsync_opportunity_closed_at".into(), "2026-08-01".into());
        }
        4 => {
            p.insert("lifecyclestage".into(), rng.pick(HUBSPOT_STAGES).to_string());
        }
        5 => {
            p.insert("jobtitle".into(), rng.pick(TITLES).to_string());
        }
        6 => {
            p.insert("leadsync_opportunity_amount".into(), "5000".into());
            p.insert("leadsync_opportunity_close_date".into(), "2027-01-31".into());
        }
        _ => {}
    }
}

/// One decision's bytes: its JSON, its explanation and headline, and the signals that fed it.
fn record(out: &mut Sha256, lines: &mut u64, d: &Decision<'_>, fired: &[super::Signal]) {
    let json = serde_json::to_string(d).expect("a decision serialises");
    out.update(json.as_bytes());
    out.update(render_text(d).as_bytes());
    out.update(headline(d).as_bytes());
    let mut s = String::new();
    let _ = write!(s, "{fired:?}");
    out.update(s.as_bytes());
    out.update(b"\n");
    *lines += 1;
}

/// What the population exercised, so a digest over trivial decisions cannot pass unnoticed.
#[derive(Default, Debug)]
struct Seen {
    stages: [usize; 7],
    statuses: [usize; 7],
    recycles: usize,
    shortcuts: usize,
    skipped: usize,
    signals: usize,
    notes: usize,
    promotions: usize,
}

fn population(rules: &Rules) -> (String, u64, Seen) {
    let base: DateTime<Utc> = "2026-11-24T09:00:00Z".parse().expect("time");
    let mut rng = Rng(0x5eed_1eadu64);
    let mut digest = Sha256::new();
    let mut lines = 0;
    let mut seen = Seen::default();
    for n in 0..CONTACTS {
        let mut now = base - minutes(rng.below(60 * 1440));
        let mut snap = contact(&mut rng, n, now);
        let mut new: Vec<Event> = snap.events.clone();
        for step in 0..CHAIN {
            let fired = signals(rules, &snap, &new, now);
            let d = evaluate_signalled(rules, &snap, &fired, now);
            record(&mut digest, &mut lines, &d, &fired);

            // The same contact with its events in the opposite order decides the same.
            let mut reversed = snap.clone();
            reversed.events.reverse();
            let r = if fired.is_empty() {
                evaluate(rules, &reversed, now)
            } else {
                evaluate_signalled(rules, &reversed, &fired, now)
            };
            assert_eq!(
                serde_json::to_string(&r).expect("serialises"),
                serde_json::to_string(&d).expect("serialises"),
                "contact {n}, step {step}: event order changed the decision"
            );
            record(&mut digest, &mut lines, &r, &fired);

            if let Some(s) = d.stage {
                seen.stages[s.index()] += 1;
            }
            seen.statuses[Status::ALL.iter().position(|s| *s == d.status).expect("listed")] += 1;
            seen.recycles += d
                .transitions
                .iter()
                .filter(|t| matches!(t.change, Change::Recycle { .. }))
                .count();
            seen.skipped += d
                .transitions
                .iter()
                .filter(|t| matches!(t.change, Change::Skipped { .. }))
                .count();
            seen.shortcuts += usize::from(d.via_shortcut);
            seen.signals += fired.len();
            seen.notes += d.notes.len();
            seen.promotions += usize::from(d.promotes());

            // Carried out; later, a few new events and perhaps a person's change in HubSpot.
            let later = now + minutes(rng.below(40 * 1440));
            let mut next = carried_out(snap.clone(), &d);
            outside_changes(&mut rng, &mut next);
            new.clear();
            for j in 0..rng.below(6) {
                let at = later - minutes(rng.below((later - now).num_minutes().max(1) as u64));
                let e = event(&mut rng, format!("n{step}-{j}"), at, false);
                new.push(e.clone());
                next.events.push(e);
            }
            snap = next;
            now = later;
        }
    }
    let hex = digest.finalize().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    (hex, lines, seen)
}

#[test]
fn generated_decisions_are_byte_identical_to_the_pinned_digest() {
    let rules = crate::defaults::embedded_rules().expect("the shipped rules compile");
    let (digest, lines, seen) = population(&rules);
    assert_eq!(lines, CONTACTS * CHAIN as u64 * 2);
    // The population reaches every stage and status and the engine's rarer paths.
    assert!(seen.stages.iter().all(|n| *n > 0), "{seen:?}");
    assert!(seen.statuses.iter().all(|n| *n > 0), "{seen:?}");
    for (what, n) in [
        ("recycles", seen.recycles),
        ("shortcuts", seen.shortcuts),
        ("skipped stages", seen.skipped),
        ("signals", seen.signals),
        ("notes", seen.notes),
        ("promotions", seen.promotions),
    ] {
        assert!(n >= 20, "only {n} {what}: {seen:?}");
    }
    assert_eq!(digest, DIGEST, "decisions changed ({seen:?})");
}
