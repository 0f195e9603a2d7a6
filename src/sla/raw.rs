//! The SLA file as written: these structs only mirror `mappings/sla.toml` and deserialize.
//! Every check and every derived structure lives in `policy.rs`.

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub sla: RawMeta,
    #[serde(default)]
    pub teams: Vec<Spanned<RawTeam>>,
    #[serde(default)]
    pub policies: Vec<Spanned<RawPolicy>>,
    #[serde(default)]
    pub marketing: Vec<Spanned<RawMarketing>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMeta {
    pub version: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// The team whose calendar applies when a contact's owner is in no team.
    pub default_team: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTeam {
    pub id: Spanned<String>,
    pub time_zone: Spanned<String>,
    #[serde(default)]
    pub hours: RawHours,
    #[serde(default)]
    pub holidays: Vec<Spanned<String>>,
    #[serde(default)]
    pub capacity: Option<Spanned<i64>>,
    #[serde(default)]
    pub manager: Option<Spanned<String>>,
    #[serde(default)]
    pub fallback_owner: Option<Spanned<String>>,
    #[serde(default)]
    pub members: Vec<Spanned<RawMember>>,
}

/// Working hours per weekday; a day left out is closed.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHours {
    pub mon: Option<Spanned<OneOrMany>>,
    pub tue: Option<Spanned<OneOrMany>>,
    pub wed: Option<Spanned<OneOrMany>>,
    pub thu: Option<Spanned<OneOrMany>>,
    pub fri: Option<Spanned<OneOrMany>>,
    pub sat: Option<Spanned<OneOrMany>>,
    pub sun: Option<Spanned<OneOrMany>>,
}

impl RawHours {
    /// The seven days, Monday first.
    pub fn days(&self) -> [(&'static str, &Option<Spanned<OneOrMany>>); 7] {
        [
            ("mon", &self.mon),
            ("tue", &self.tue),
            ("wed", &self.wed),
            ("thu", &self.thu),
            ("fri", &self.fri),
            ("sat", &self.sat),
            ("sun", &self.sun),
        ]
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMember {
    pub email: Spanned<String>,
    #[serde(default)]
    pub hubspot_owner: Option<Spanned<String>>,
    #[serde(default)]
    pub salesforce_user: Option<Spanned<String>>,
    #[serde(default)]
    pub capacity: Option<Spanned<i64>>,
    #[serde(default)]
    pub weight: Option<Spanned<i64>>,
    #[serde(default)]
    pub absences: Vec<Spanned<RawAbsence>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAbsence {
    pub from: Spanned<String>,
    pub to: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub id: Spanned<String>,
    pub stage: Spanned<String>,
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    #[serde(default)]
    pub clock: Option<Spanned<String>>,
    pub first_touch: Spanned<String>,
    #[serde(default)]
    pub attempts: Option<Spanned<RawAttempts>>,
    pub touches: Spanned<RawTouches>,
    #[serde(default)]
    pub ladder: Vec<Spanned<RawStep>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAttempts {
    pub count: Spanned<i64>,
    pub within: Spanned<String>,
    #[serde(default)]
    pub min_interval: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTouches {
    pub kinds: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub by: Option<Spanned<String>>,
    #[serde(default)]
    pub connected_calls_only: bool,
    #[serde(default)]
    pub same_touch_within: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub step: Spanned<String>,
    pub after: Spanned<String>,
    #[serde(default)]
    pub webhook: Option<Spanned<String>>,
    #[serde(default)]
    pub reason: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMarketing {
    pub id: Spanned<String>,
    pub mqls: Spanned<i64>,
    pub per: Spanned<String>,
    #[serde(default)]
    pub team: Option<Spanned<String>>,
    #[serde(default)]
    pub source: Option<Spanned<String>>,
}

/// A working-hours entry: one `"08:00-18:00"` or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn items(&self) -> Vec<&str> {
        match self {
            Self::One(s) => vec![s.as_str()],
            Self::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}
