//! The lifecycle's vocabulary: stages, side statuses, event kinds and rule durations.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A stage of the funnel, in order: automatic moves only go up this list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Consented to receive content; email only.
    Subscriber,
    /// Fits the ideal customer profile well enough to be judged.
    Lead,
    /// Marketing qualified: scores crossed the thresholds, or a decisive action.
    Mql,
    /// Sales accepted to engage.
    Sal,
    /// Sales qualified: converted into Salesforce records.
    Sql,
    /// An opportunity with an amount and a close date.
    Opportunity,
    /// Signed.
    Customer,
}

impl Stage {
    /// Every stage, lowest first.
    pub const ALL: [Stage; 7] = [
        Stage::Subscriber,
        Stage::Lead,
        Stage::Mql,
        Stage::Sal,
        Stage::Sql,
        Stage::Opportunity,
        Stage::Customer,
    ];

    /// The identifier used in rules files, state and HubSpot's `leadsync_stage`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Subscriber => "subscriber",
            Stage::Lead => "lead",
            Stage::Mql => "mql",
            Stage::Sal => "sal",
            Stage::Sql => "sql",
            Stage::Opportunity => "opportunity",
            Stage::Customer => "customer",
        }
    }

    /// Position in [`Stage::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Stage::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
            format!(
                "unknown stage `{s}` (expected one of {})",
                names(Stage::ALL.iter().map(|s| s.as_str()))
            )
        })
    }
}

/// A side status: beside the stage, it blocks or changes automatic moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Nothing special.
    #[default]
    Active,
    /// Does not fit the ICP (competitor, student, out of market); lifted when the inputs change.
    Disqualified,
    /// An opportunity that did not close; recycled after a delay.
    Lost,
    /// Sent back to the top (sales rejection, lost, a person moving it back); cooling down.
    Recycle,
    /// Answers everything with no buying signal; its engagement is damped.
    Fan,
    /// Pre-MQL with no activity for a long time.
    Dormant,
    /// Opted out of all email (or cannot be reached by it): not nurtured, no automatic MQL.
    OptedOut,
}

impl Status {
    /// Every status, in the order HubSpot's `leadsync_status` options list them.
    pub const ALL: [Status; 7] = [
        Status::Active,
        Status::Disqualified,
        Status::Lost,
        Status::Recycle,
        Status::Fan,
        Status::Dormant,
        Status::OptedOut,
    ];

    /// The identifier written to HubSpot's `leadsync_status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Disqualified => "disqualified",
            Status::Lost => "lost",
            Status::Recycle => "recycle",
            Status::Fan => "fan",
            Status::Dormant => "dormant",
            Status::OptedOut => "opted_out",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown status `{s}`"))
    }
}

/// What a dated event is; HubSpot's engagements and analytics map onto these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A web page view (`url`).
    PageView,
    /// A marketing email opened (`campaign`).
    EmailOpen,
    /// A link clicked in a marketing email (`campaign`, `url`).
    EmailClick,
    /// Unsubscribed from marketing email.
    EmailUnsubscribe,
    /// A form submitted (`form`, classified into `form_kind`).
    FormSubmission,
    /// Attended a webinar (`campaign`).
    WebinarAttended,
    /// A meeting booked or held (`direction`).
    Meeting,
    /// A phone call (`direction`, `outcome`).
    Call,
    /// A one-to-one sales email (`direction`: inbound is a reply).
    SalesEmail,
    /// A chat conversation (`direction`).
    Chat,
    /// A note logged by a salesperson.
    Note,
    /// A task logged by a salesperson.
    Task,
}

impl EventKind {
    /// Every kind, for validation messages.
    pub const ALL: [EventKind; 12] = [
        EventKind::PageView,
        EventKind::EmailOpen,
        EventKind::EmailClick,
        EventKind::EmailUnsubscribe,
        EventKind::FormSubmission,
        EventKind::WebinarAttended,
        EventKind::Meeting,
        EventKind::Call,
        EventKind::SalesEmail,
        EventKind::Chat,
        EventKind::Note,
        EventKind::Task,
    ];

    /// The identifier used in rules files and snapshots.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::PageView => "page_view",
            EventKind::EmailOpen => "email_open",
            EventKind::EmailClick => "email_click",
            EventKind::EmailUnsubscribe => "email_unsubscribe",
            EventKind::FormSubmission => "form_submission",
            EventKind::WebinarAttended => "webinar_attended",
            EventKind::Meeting => "meeting",
            EventKind::Call => "call",
            EventKind::SalesEmail => "sales_email",
            EventKind::Chat => "chat",
            EventKind::Note => "note",
            EventKind::Task => "task",
        }
    }

    /// Human words for explanations ("webinar", "pricing page" comes from the rule id).
    pub fn label(self) -> &'static str {
        match self {
            EventKind::PageView => "page view",
            EventKind::EmailOpen => "email open",
            EventKind::EmailClick => "email click",
            EventKind::EmailUnsubscribe => "unsubscribe",
            EventKind::FormSubmission => "form",
            EventKind::WebinarAttended => "webinar",
            EventKind::Meeting => "meeting",
            EventKind::Call => "call",
            EventKind::SalesEmail => "sales email",
            EventKind::Chat => "chat",
            EventKind::Note => "note",
            EventKind::Task => "task",
        }
    }
}

impl FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            format!(
                "unknown event kind `{s}` (expected one of {})",
                names(EventKind::ALL.iter().map(|k| k.as_str()))
            )
        })
    }
}

/// An attribute of an event that rules may test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventAttr {
    /// Page or link URL.
    Url,
    /// Form name or id as HubSpot gave it.
    Form,
    /// The form's kind, from the rules' `[forms]` patterns.
    FormKind,
    /// Campaign, email or webinar identifier.
    Campaign,
    /// `inbound` or `outbound`.
    Direction,
    /// A call's or meeting's outcome.
    Outcome,
}

impl FromStr for EventAttr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "url" => EventAttr::Url,
            "form" => EventAttr::Form,
            "form_kind" => EventAttr::FormKind,
            "campaign" => EventAttr::Campaign,
            "direction" => EventAttr::Direction,
            "outcome" => EventAttr::Outcome,
            _ => {
                return Err(format!(
                    "unknown event attribute `{s}` (expected one of url, form, form_kind, campaign, direction, outcome)"
                ));
            }
        })
    }
}

/// A length of time in rules files: `90m`, `12h`, `30d`, `2w`, or `inf`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct RuleDuration {
    seconds: f64,
}

impl RuleDuration {
    /// Never ends (a half-life of `inf` means no decay).
    pub const INFINITE: RuleDuration = RuleDuration { seconds: f64::INFINITY };
    /// The longest finite duration a rules file may write: 100 years.
    pub const LONGEST: RuleDuration = RuleDuration {
        seconds: 36_500.0 * 86_400.0,
    };

    /// A duration of whole days.
    pub fn days(days: f64) -> Self {
        Self {
            seconds: days * 86_400.0,
        }
    }

    /// Length in seconds (may be infinite).
    pub fn seconds(self) -> f64 {
        self.seconds
    }

    /// Length in days (may be infinite).
    pub fn as_days(self) -> f64 {
        self.seconds / 86_400.0
    }

    /// True for `inf`.
    pub fn is_infinite(self) -> bool {
        self.seconds.is_infinite()
    }

    /// As a chrono duration; `None` for `inf`.
    pub fn to_chrono(self) -> Option<chrono::Duration> {
        if self.is_infinite() {
            None
        } else {
            Some(chrono::Duration::milliseconds((self.seconds * 1000.0).round() as i64))
        }
    }
}

impl FromStr for RuleDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t == "inf" || t == "never" {
            return Ok(Self::INFINITE);
        }
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a duration (write 90m, 12h, 30d, 2w or inf)"))?;
        if n < 0.0 {
            return Err(format!("`{s}` is negative; durations must be zero or more"));
        }
        let unit_seconds = match unit {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 7.0 * 86_400.0,
            _ => return Err(format!("`{s}` has an unknown unit `{unit}` (use m, h, d, w, or inf)")),
        };
        let seconds = n * unit_seconds;
        // Past this a date plus the duration leaves what a calendar holds; `inf` says "never".
        if seconds > Self::LONGEST.seconds {
            return Err(format!("`{s}` is longer than 100 years (36500d); write inf for never"));
        }
        Ok(Self { seconds })
    }
}

impl fmt::Display for RuleDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_infinite() {
            return f.write_str("inf");
        }
        let d = self.as_days();
        if d >= 1.0 && (d - d.round()).abs() < 1e-9 {
            write!(f, "{} d", d.round())
        } else {
            write!(f, "{} h", (self.seconds / 3600.0 * 10.0).round() / 10.0)
        }
    }
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!("30d".parse::<RuleDuration>().unwrap().as_days(), 30.0);
        assert_eq!("12h".parse::<RuleDuration>().unwrap().seconds(), 43_200.0);
        assert_eq!("2w".parse::<RuleDuration>().unwrap().as_days(), 14.0);
        assert!("inf".parse::<RuleDuration>().unwrap().is_infinite());
        assert!("-3d".parse::<RuleDuration>().unwrap_err().contains("negative"));
        assert!("3y".parse::<RuleDuration>().unwrap_err().contains("unknown unit"));
        assert!("soon".parse::<RuleDuration>().is_err());
        assert_eq!("36500d".parse::<RuleDuration>().unwrap().as_days(), 36_500.0);
        assert!(
            "36501d"
                .parse::<RuleDuration>()
                .unwrap_err()
                .contains("longer than 100 years")
        );
        assert!(
            "99999999999999999999d"
                .parse::<RuleDuration>()
                .unwrap_err()
                .contains("write inf")
        );
    }

    #[test]
    fn stages_are_ordered_and_round_trip() {
        assert!(Stage::Subscriber < Stage::Customer);
        for s in Stage::ALL {
            assert_eq!(s.as_str().parse::<Stage>().unwrap(), s);
        }
        assert!("prospect".parse::<Stage>().unwrap_err().contains("unknown stage"));
    }
}
