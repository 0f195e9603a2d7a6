//! The way back: opportunities of promoted leads changed since a watermark, so that won makes
//! the HubSpot contact a customer, lost sets the lost status, and amount and close date reach
//! HubSpot. Client side only: this returns typed changes and the next watermark; the sync code
//! writes them to HubSpot and stores the watermark.
//!
//! Order is `SystemModstamp`, then `Id` as the tie-break. SOQL datetimes have second precision
//! and leadsync's SOQL subset has no `>=`, so the query starts one second before the watermark
//! and the records at or before `(stamp, id)` are dropped here: nothing changed in the same
//! second is skipped, nothing is returned twice.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use super::client::{SalesforceClient, SalesforceError};
use super::mapping::SalesforceMapping;
use crate::lifecycle::snapshot::HubSpotId;

/// Where the last poll stopped.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SalesforceWatermark {
    /// `SystemModstamp` of the last change seen.
    pub modstamp: DateTime<Utc>,
    /// Its `Id` (the tie-break).
    pub id: String,
}

/// One opportunity as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct OpportunityChange {
    /// The HubSpot contact it was promoted from (from `LeadSync_Key__c`).
    pub hubspot_contact_id: HubSpotId,
    /// The SQL cycle it belongs to.
    pub cycle: u32,
    /// Salesforce id.
    pub opportunity_id: String,
    /// `StageName`.
    pub stage_name: String,
    /// `IsWon`.
    pub is_won: bool,
    /// `IsClosed`.
    pub is_closed: bool,
    /// `Amount`.
    pub amount: Option<f64>,
    /// `CloseDate`.
    pub close_date: Option<NaiveDate>,
    /// `SystemModstamp`.
    pub modstamp: DateTime<Utc>,
    /// `LastModifiedById`: who changed it last (leadsync's integration user after a context
    /// write, which changes none of the values read here).
    pub last_modified_by: Option<String>,
}

/// What the change means for the lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpportunityResult {
    /// Still being worked.
    Open,
    /// Won: the contact becomes a customer.
    Won,
    /// Lost: the contact gets the lost status (recycled later by the rules).
    Lost,
}

impl OpportunityChange {
    /// Won, lost or open.
    pub fn result(&self) -> OpportunityResult {
        match (self.is_closed, self.is_won) {
            (_, true) => OpportunityResult::Won,
            (true, false) => OpportunityResult::Lost,
            (false, false) => OpportunityResult::Open,
        }
    }
}

/// `hs-{contact}-{cycle}` back to its parts.
pub fn parse_key(key: &str) -> Option<(HubSpotId, u32)> {
    let rest = key.strip_prefix("hs-")?;
    let (contact, cycle) = rest.rsplit_once('-')?;
    Some((HubSpotId::try_from(contact.to_string()).ok()?, cycle.parse().ok()?))
}

#[derive(Deserialize)]
struct Row {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "StageName", default)]
    stage_name: Option<String>,
    #[serde(rename = "IsWon", default)]
    is_won: bool,
    #[serde(rename = "IsClosed", default)]
    is_closed: bool,
    #[serde(rename = "Amount", default)]
    amount: Option<f64>,
    #[serde(rename = "CloseDate", default)]
    close_date: Option<String>,
    #[serde(rename = "SystemModstamp")]
    modstamp: String,
    #[serde(rename = "LastModifiedById", default)]
    last_modified_by: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// Salesforce writes `2026-11-25T10:00:00.000+0000`.
pub(super) fn parse_stamp(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(s))
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// The SOQL for one poll.
pub fn changes_query(mapping: &SalesforceMapping, since: Option<&SalesforceWatermark>, limit: u32) -> String {
    let key = &mapping.opportunity_external_id;
    let mut soql = format!(
        "SELECT Id, StageName, IsWon, IsClosed, Amount, CloseDate, SystemModstamp, LastModifiedById, {key} FROM Opportunity \
         WHERE {key} != null"
    );
    if let Some(w) = since {
        let from = w.modstamp - chrono::Duration::seconds(1);
        soql.push_str(&format!(" AND SystemModstamp > {}", from.format("%Y-%m-%dT%H:%M:%SZ")));
    }
    soql.push_str(&format!(" ORDER BY SystemModstamp ASC, Id ASC LIMIT {limit}"));
    soql
}

impl SalesforceClient {
    /// Opportunities promoted by leadsync changed after `since` (all of them when `None`), at most
    /// `limit` (capped at 2,000; every page of the answer is read), oldest first; with the watermark to pass next time (`since` when nothing changed).
    /// Records whose key is not leadsync's are skipped but still move the watermark.
    pub async fn opportunity_changes(
        &self,
        mapping: &SalesforceMapping,
        since: Option<&SalesforceWatermark>,
        limit: u32,
    ) -> Result<(Vec<OpportunityChange>, Option<SalesforceWatermark>), SalesforceError> {
        let rows: Vec<Row> = self.query(&changes_query(mapping, since, limit.clamp(1, 2000))).await?;
        let mut changes = Vec::new();
        let mut mark = since.cloned();
        let mut seen: Vec<(DateTime<Utc>, String, Row)> = rows
            .into_iter()
            .filter_map(|r| parse_stamp(&r.modstamp).map(|t| (t, r.id.clone(), r)))
            .collect();
        seen.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (stamp, id, row) in seen {
            let here = SalesforceWatermark { modstamp: stamp, id };
            if since.is_some_and(|s| here <= *s) {
                continue;
            }
            let key = row.rest.get(&mapping.opportunity_external_id).and_then(|v| v.as_str());
            if let Some((contact, cycle)) = key.and_then(parse_key) {
                changes.push(OpportunityChange {
                    hubspot_contact_id: contact,
                    cycle,
                    opportunity_id: row.id,
                    stage_name: row.stage_name.unwrap_or_default(),
                    is_won: row.is_won,
                    is_closed: row.is_closed,
                    amount: row.amount,
                    close_date: row
                        .close_date
                        .and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()),
                    modstamp: stamp,
                    last_modified_by: row.last_modified_by,
                });
            }
            mark = Some(here);
        }
        Ok((changes, mark))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_results() {
        assert_eq!(
            parse_key("hs-123-2"),
            Some((HubSpotId::try_from("123".to_string()).unwrap(), 2))
        );
        assert_eq!(parse_key("hs-abc-2"), None);
        assert_eq!(parse_key("sf-123-2"), None);
        let mut c = OpportunityChange {
            hubspot_contact_id: HubSpotId::try_from("1".to_string()).unwrap(),
            cycle: 1,
            opportunity_id: "006".into(),
            stage_name: "Closed Won".into(),
            is_won: true,
            is_closed: true,
            amount: None,
            close_date: None,
            modstamp: Utc::now(),
            last_modified_by: None,
        };
        assert_eq!(c.result(), OpportunityResult::Won);
        c.is_won = false;
        assert_eq!(c.result(), OpportunityResult::Lost);
        c.is_closed = false;
        assert_eq!(c.result(), OpportunityResult::Open);
        assert!(parse_stamp("2026-11-25T10:00:00.000+0000").is_some());
        assert!(parse_stamp("2026-11-25T10:00:00Z").is_some());
    }
}
