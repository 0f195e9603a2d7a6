use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::{DateTime, Duration, Utc};
use leadsync::lifecycle::model::EventKind;
use leadsync::lifecycle::snapshot::{Direction, StageEntry};
use leadsync::lifecycle::{ContactState, Decision, Event, Rules, Snapshot, Stage, evaluate};

/// The moment most tests evaluate at.
pub fn now() -> DateTime<Utc> {
    "2026-11-24T09:00:00Z".parse().unwrap()
}

pub fn days(d: f64) -> Duration {
    Duration::milliseconds((d * 86_400_000.0) as i64)
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped default rules, compiled once.
pub fn rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| Rules::load(&repo().join("mappings/lifecycle.toml")).unwrap_or_else(|e| panic!("{e}")))
}

pub fn default_rules_text() -> String {
    std::fs::read_to_string(repo().join("mappings/lifecycle.toml")).unwrap()
}

/// A contact being built for a test.
#[derive(Clone)]
pub struct C {
    pub snap: Snapshot,
    next_id: u32,
}

impl C {
    /// A contact HubSpot knows nothing about yet.
    pub fn blank() -> C {
        let snap: Snapshot = serde_json::from_str(r#"{"contact_id": "500"}"#).unwrap();
        C { snap, next_id: 0 }
    }
}

/// A contact known only by a business email.
pub fn contact() -> C {
    let snap: Snapshot =
        serde_json::from_str(r#"{"contact_id": "501", "properties": {"email": "sam@northwind.io"}}"#).unwrap();
    C { snap, next_id: 0 }
}

/// An ideal-customer-profile contact: fit 80 with the default rules.
pub fn icp() -> C {
    contact()
        .prop("firstname", "Sam")
        .prop("lastname", "Lee")
        .prop("company", "Northwind")
        .prop("jobtitle", "Head of Revenue Operations")
        .prop("numemployees", "300")
        .prop("industry", "COMPUTER_SOFTWARE")
        .prop("country", "FR")
}

impl C {
    pub fn prop(mut self, k: &str, v: &str) -> Self {
        self.snap.properties.insert(k.to_string(), v.to_string());
        self
    }

    /// Adds an event `ago` days before [`now`].
    pub fn ev(self, kind: EventKind, ago: f64) -> Self {
        self.ev_with(kind, ago, |_| {})
    }

    pub fn ev_with(mut self, kind: EventKind, ago: f64, f: impl FnOnce(&mut Event)) -> Self {
        self.next_id += 1;
        let mut e = Event {
            id: format!("e{}", self.next_id),
            kind,
            at: now() - days(ago),
            url: None,
            form: None,
            campaign: None,
            direction: None,
            outcome: None,
            owner: None,
        };
        f(&mut e);
        self.snap.events.push(e);
        self
    }

    pub fn page(self, url: &str, ago: f64) -> Self {
        let url = url.to_string();
        self.ev_with(EventKind::PageView, ago, |e| e.url = Some(url))
    }

    pub fn form(self, name: &str, ago: f64) -> Self {
        let name = name.to_string();
        self.ev_with(EventKind::FormSubmission, ago, |e| e.form = Some(name))
    }

    pub fn webinar(self, campaign: &str, ago: f64) -> Self {
        let c = campaign.to_string();
        self.ev_with(EventKind::WebinarAttended, ago, |e| e.campaign = Some(c))
    }

    pub fn inbound(self, kind: EventKind, ago: f64) -> Self {
        self.ev_with(kind, ago, |e| e.direction = Some(Direction::Inbound))
    }

    pub fn outbound(self, kind: EventKind, ago: f64) -> Self {
        self.ev_with(kind, ago, |e| e.direction = Some(Direction::Outbound))
    }

    /// Engagement of exactly 35 at [`now`] with the default rules: webinar 15 + meeting 20, both today.
    pub fn engaged_35(self) -> Self {
        self.webinar("w1", 0.0).ev(EventKind::Meeting, 0.0)
    }

    /// Puts the contact at `stage` in leadsync's state (entered 30 days ago), in sync with HubSpot.
    pub fn at(mut self, stage: Stage) -> Self {
        let rules = rules();
        let at = now() - days(30.0);
        for s in Stage::ALL.iter().filter(|s| **s <= stage) {
            self.snap.state.stages.insert(*s, StageEntry { at, skipped: false });
        }
        self.snap.state.stage = Some(stage);
        let hs = rules.hubspot_value(stage).to_string();
        self.snap.state.hubspot_stage_seen = Some(hs.clone());
        self.prop("lifecyclestage", &hs)
    }

    pub fn state(mut self, f: impl FnOnce(&mut ContactState)) -> Self {
        f(&mut self.snap.state);
        self
    }

    /// The decision, detached from this builder so tests can chain freely.
    pub fn eval(&self) -> Decision<'static> {
        self.eval_at(now())
    }

    pub fn eval_at(&self, t: DateTime<Utc>) -> Decision<'static> {
        evaluate(rules(), &self.snap, t).into_owned()
    }

    /// The contact as the next evaluation sees it once `d` was carried out: state stored and
    /// every HubSpot write applied.
    pub fn after(&self, d: &Decision<'_>) -> C {
        let mut c = self.clone();
        c.snap.state = d.state.clone();
        for a in &d.actions {
            match a {
                leadsync::lifecycle::Action::WriteHubSpot { properties } => {
                    for (k, v) in properties {
                        if v.is_empty() {
                            c.snap.properties.remove(k);
                        } else {
                            c.snap.properties.insert(k.clone(), v.clone());
                        }
                    }
                }
                leadsync::lifecycle::Action::SetLifecycleStage { value, .. } => {
                    c.snap.properties.insert("lifecyclestage".into(), value.clone());
                }
                _ => {}
            }
        }
        c
    }
}

/// The `leadsync` binary with `args` in `cwd`, the configuration file and store URL of the
/// environment the tests run in unset (a test names its own).
pub fn leadsync_in(cwd: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_leadsync"));
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("LEADSYNC_CONFIG")
        .env_remove("LEADSYNC__STORE__URL");
    cmd
}

/// Runs `cmd` to its end: its exit code, standard output and standard error.
pub fn said(cmd: &mut std::process::Command) -> (Option<i32>, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn run_bin(args: &[&str], cwd: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_leadsync"))
        .args(args)
        .current_dir(cwd)
        .env_remove("LEADSYNC_CONFIG")
        .output()
        .unwrap()
}

/// A test SLA file, written the way `mappings/sla.toml` is: its `[sla]` table, one team `team`
/// working round the clock in `time_zone` (so availability is only absences and caps), that
/// team's members, then the policies. The one builder of every test's SLA file.
#[derive(Clone)]
pub struct SlaText {
    version: String,
    team: String,
    time_zone: String,
    manager: Option<String>,
    fallback: Option<String>,
    members: String,
    policies: String,
}

impl SlaText {
    /// Version `version`, its one team `team` round the clock in `time_zone`, no one in it yet.
    pub fn round_the_clock(version: &str, team: &str, time_zone: &str) -> SlaText {
        SlaText {
            version: version.into(),
            team: team.into(),
            time_zone: time_zone.into(),
            manager: None,
            fallback: None,
            members: String::new(),
            policies: String::new(),
        }
    }

    /// The team's manager (a HubSpot owner id: the ladder's `manager_task`).
    pub fn manager(mut self, owner: &str) -> SlaText {
        self.manager = Some(owner.into());
        self
    }

    /// The team's fallback owner (a Salesforce user or queue id).
    pub fn fallback(mut self, owner: &str) -> SlaText {
        self.fallback = Some(owner.into());
        self
    }

    /// A member by `email`, with its other lines (`hubspot_owner`, `salesforce_user`,
    /// `absences`, `capacity`), as TOML.
    pub fn member(mut self, email: &str, lines: &str) -> SlaText {
        self.members
            .push_str(&format!("\n[[teams.members]]\nemail = \"{email}\"\n{}\n", lines.trim()));
        self
    }

    /// A policy `id` on entering `stage` on the team's clock, with its other lines as TOML.
    pub fn policy(mut self, id: &str, stage: &str, lines: &str) -> SlaText {
        self.policies.push_str(&format!(
            "\n[[policies]]\nid = \"{id}\"\nstage = \"{stage}\"\n{}\n",
            lines.trim()
        ));
        self
    }

    /// The same on the wall clock (`clock = "wall"`): due times in plain minutes or seconds.
    pub fn wall_policy(self, id: &str, stage: &str, lines: &str) -> SlaText {
        self.policy(id, stage, &format!("clock = \"wall\"\n{}", lines.trim()))
    }

    /// The file's text.
    pub fn text(&self) -> String {
        let (version, team, time_zone) = (&self.version, &self.team, &self.time_zone);
        let mut text = format!(
            "[sla]\nversion = \"{version}\"\ndefault_team = \"{team}\"\n\n[[teams]]\nid = \"{team}\"\ntime_zone = \"{time_zone}\"\n"
        );
        if let Some(manager) = &self.manager {
            text.push_str(&format!("manager = \"{manager}\"\n"));
        }
        if let Some(fallback) = &self.fallback {
            text.push_str(&format!("fallback_owner = \"{fallback}\"\n"));
        }
        text.push_str("[teams.hours]\n");
        for day in ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] {
            text.push_str(&format!("{day} = \"00:00-24:00\"\n"));
        }
        text + &self.members + &self.policies
    }

    /// The file compiled as `name`, panicking with its diagnostics when the text is wrong.
    pub fn compiled(&self, name: &str) -> leadsync::sla::SlaFile {
        leadsync::sla::SlaFile::from_source(&leadsync::diagnostics::SourceText::new(name, self.text()))
            .unwrap_or_else(|d| panic!("{d}"))
    }
}
