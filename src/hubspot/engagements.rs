//! Sales activity: calls, emails, meetings, notes and tasks, found through associations v4
//! (1,000 contacts per call) and read in batches of 100, then turned into the engine's events.

use super::types::parse_time;
use std::collections::{BTreeMap, HashMap, HashSet};

use reqwest::Method;
use serde::Serialize;

use super::client::{Call, HubSpotClient, HubSpotError};
use super::limiter::{Budget, Priority};
use super::types::{ASSOCIATION_BATCH_LIMIT, AssociationResult, BatchResponse, HubSpotObject};
use crate::lifecycle::snapshot::Direction;
use crate::lifecycle::{Event, EventKind};

/// An engagement object type and the properties the rules need from it.
#[derive(Debug, Clone, Copy)]
pub struct EngagementType {
    /// HubSpot object type (`calls`, …).
    pub object: &'static str,
    /// The event kind it becomes.
    pub kind: EventKind,
    /// Properties to read.
    pub properties: &'static [&'static str],
}

/// The engagement types leadsync reads.
pub const ENGAGEMENT_TYPES: [EngagementType; 5] = [
    EngagementType {
        object: "calls",
        kind: EventKind::Call,
        properties: &[
            "hs_timestamp",
            "hs_call_direction",
            "hs_call_status",
            "hubspot_owner_id",
        ],
    },
    EngagementType {
        object: "emails",
        kind: EventKind::SalesEmail,
        properties: &["hs_timestamp", "hs_email_direction", "hubspot_owner_id"],
    },
    EngagementType {
        object: "meetings",
        kind: EventKind::Meeting,
        properties: &[
            "hs_timestamp",
            "hs_meeting_outcome",
            "hs_meeting_source",
            "hubspot_owner_id",
        ],
    },
    EngagementType {
        object: "notes",
        kind: EventKind::Note,
        properties: &["hs_timestamp"],
    },
    EngagementType {
        object: "tasks",
        kind: EventKind::Task,
        properties: &["hs_timestamp"],
    },
];

impl HubSpotClient {
    /// For each `from` id, the ids of its associated `to` records (1,000 ids per call).
    pub async fn associations(
        &self,
        from: &str,
        to: &str,
        ids: &[String],
        priority: Priority,
    ) -> Result<BTreeMap<String, Vec<String>>, HubSpotError> {
        #[derive(Serialize)]
        struct Input<'a> {
            id: &'a str,
        }
        #[derive(Serialize)]
        struct Body<'a> {
            inputs: Vec<Input<'a>>,
        }
        let path = format!("/crm/v4/associations/{from}/{to}/batch/read");
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for chunk in ids.chunks(ASSOCIATION_BATCH_LIMIT) {
            let body = Body {
                inputs: chunk.iter().map(|id| Input { id }).collect(),
            };
            let resp: BatchResponse<AssociationResult> = self
                .call(Call {
                    endpoint: "associations.batch_read",
                    method: Method::POST,
                    path: &path,
                    query: &[],
                    body: Some(&body),
                    budget: Budget::General,
                    priority,
                })
                .await?;
            for r in resp.results {
                out.entry(r.from.id)
                    .or_default()
                    .extend(r.to.into_iter().map(|t| t.to_object_id));
            }
        }
        Ok(out)
    }

    /// Every engagement of `contacts`, as events per contact (see
    /// [`HubSpotClient::contact_engagements_except`]).
    pub async fn contact_engagements(
        &self,
        contacts: &[String],
        priority: Priority,
    ) -> Result<BTreeMap<String, Vec<Event>>, HubSpotError> {
        self.contact_engagements_except(contacts, &HashMap::new(), priority)
            .await
    }

    /// Every engagement of `contacts` that `held` does not already name, as events per contact:
    /// one association read per type and 1,000 contacts, one batch read per type and 100
    /// engagements. `held` is, per contact, the event ids its ledger has ([`event_id`]); an
    /// engagement every linked contact already holds is not read again (the ledger would drop
    /// it as a repeat), so a form from a known contact with no new activity costs the
    /// association reads only, not a second round trip. The types are read concurrently (the
    /// limiter paces them), so latency does not add up type after type.
    pub async fn contact_engagements_except(
        &self,
        contacts: &[String],
        held: &HashMap<String, HashSet<String>>,
        priority: Priority,
    ) -> Result<BTreeMap<String, Vec<Event>>, HubSpotError> {
        let per_type = ENGAGEMENT_TYPES.iter().map(|t| async move {
            let links = self.associations("contacts", t.object, contacts, priority).await?;
            let missing = |(contact, id): (&String, &String)| {
                !held.get(contact).is_some_and(|h| h.contains(&event_id(t.object, id)))
            };
            let mut ids: Vec<String> = links
                .iter()
                .flat_map(|(c, linked)| linked.iter().map(move |id| (c, id)))
                .filter(|pair| missing(*pair))
                .map(|(_, id)| id.clone())
                .collect();
            ids.sort();
            ids.dedup();
            if ids.is_empty() {
                return Ok::<_, HubSpotError>((t, links, Vec::new()));
            }
            let props: Vec<String> = t.properties.iter().map(|p| p.to_string()).collect();
            let records = self.batch_read(t.object, &ids, &props, None, priority).await?;
            Ok((t, links, records))
        });
        let mut out: BTreeMap<String, Vec<Event>> = BTreeMap::new();
        // Joined in the types' order, so each contact's events come out as a sequential read.
        for (t, links, records) in futures::future::try_join_all(per_type).await? {
            let events: BTreeMap<&str, Event> = records
                .iter()
                .filter_map(|r| to_event(t, r).map(|e| (r.id.as_str(), e)))
                .collect();
            for (contact, linked) in links {
                let list = out.entry(contact).or_default();
                list.extend(linked.iter().filter_map(|id| events.get(id.as_str()).cloned()));
            }
        }
        Ok(out)
    }

    /// Engagements of every type modified in `[from_ms, to_ms)`, as events per contact: one
    /// search page per 200 changed engagements and one association read per 1,000, so an
    /// incremental sync costs in proportion to activity, not to the number of contacts.
    pub async fn engagements_modified(
        &self,
        from_ms: i64,
        to_ms: i64,
        priority: Priority,
    ) -> Result<BTreeMap<String, Vec<Event>>, HubSpotError> {
        let mut out: BTreeMap<String, Vec<Event>> = BTreeMap::new();
        for t in ENGAGEMENT_TYPES {
            let props: Vec<String> = t.properties.iter().map(|p| p.to_string()).collect();
            let records = self
                .search_modified(t.object, "hs_lastmodifieddate", from_ms, to_ms, &props, priority)
                .await?;
            if records.is_empty() {
                continue;
            }
            let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
            let contacts = self.associations(t.object, "contacts", &ids, priority).await?;
            for r in &records {
                let Some(event) = to_event(&t, r) else { continue };
                for c in contacts.get(&r.id).into_iter().flatten() {
                    out.entry(c.clone()).or_default().push(event.clone());
                }
            }
        }
        Ok(out)
    }
}

/// `hs_meeting_source` values of a meeting the contact booked themself, on a meetings link
/// (`MEETINGS_PUBLIC`, the scheduling page) or a meetings widget embedded in a page
/// (`MEETINGS_EMBEDDED`). The others (`CRM_UI`, `BIDIRECTIONAL_SYNC`, `BIDIRECTIONAL_API`,
/// `INTEGRATION`, …) are meetings a rep logged or a calendar or app synced.
pub const SELF_BOOKED_MEETING_SOURCES: [&str; 2] = ["MEETINGS_PUBLIC", "MEETINGS_EMBEDDED"];

/// The ledger id of the event an engagement becomes: `hs-{object}-{id}`.
pub fn event_id(object: &str, id: &str) -> String {
    format!("hs-{object}-{id}")
}

/// An engagement record as the engine's event; `None` when it has no usable time.
pub fn to_event(t: &EngagementType, r: &HubSpotObject) -> Option<Event> {
    let at = parse_time(r.prop("hs_timestamp")?)?;
    let direction = match t.kind {
        EventKind::Call => r.prop("hs_call_direction").and_then(|d| match d {
            "INBOUND" => Some(Direction::Inbound),
            "OUTBOUND" => Some(Direction::Outbound),
            _ => None,
        }),
        EventKind::SalesEmail => r.prop("hs_email_direction").map(|d| {
            if d == "INCOMING_EMAIL" {
                Direction::Inbound
            } else {
                Direction::Outbound
            }
        }),
        // Booked by the contact on a scheduling page: the contact reached out. A meeting a rep
        // logged or a calendar synced says nothing of who started it.
        EventKind::Meeting => r
            .prop("hs_meeting_source")
            .filter(|s| {
                SELF_BOOKED_MEETING_SOURCES
                    .iter()
                    .any(|x| x.eq_ignore_ascii_case(s.trim()))
            })
            .map(|_| Direction::Inbound),
        _ => None,
    };
    let outcome = r
        .prop("hs_call_status")
        .or(r.prop("hs_meeting_outcome"))
        .map(|o| match o {
            "COMPLETED" => "connected".to_string(),
            other => other.to_ascii_lowercase(),
        });
    Some(Event {
        id: event_id(t.object, &r.id),
        kind: t.kind,
        at,
        url: None,
        form: None,
        campaign: None,
        direction,
        outcome,
        owner: r.prop("hubspot_owner_id").map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(id: &str, props: &[(&str, &str)]) -> HubSpotObject {
        HubSpotObject {
            id: id.into(),
            properties: props
                .iter()
                .map(|(k, v)| (k.to_string(), Some(v.to_string())))
                .collect(),
            archived: false,
        }
    }

    #[test]
    fn engagements_become_events() {
        let call = to_event(
            &ENGAGEMENT_TYPES[0],
            &object(
                "5",
                &[
                    ("hs_timestamp", "2026-11-20T10:00:00Z"),
                    ("hs_call_direction", "INBOUND"),
                ],
            ),
        )
        .unwrap();
        assert_eq!(
            (call.id.as_str(), call.kind, call.direction),
            ("hs-calls-5", EventKind::Call, Some(Direction::Inbound))
        );
        let reply = to_event(
            &ENGAGEMENT_TYPES[1],
            &object(
                "6",
                &[
                    ("hs_timestamp", "1763632800000"),
                    ("hs_email_direction", "INCOMING_EMAIL"),
                ],
            ),
        )
        .unwrap();
        assert_eq!(reply.direction, Some(Direction::Inbound));
        assert!(
            to_event(&ENGAGEMENT_TYPES[3], &object("7", &[])).is_none(),
            "no time, no event"
        );
    }

    #[test]
    fn a_meeting_booked_on_a_scheduling_page_is_inbound_and_a_logged_one_has_no_direction() {
        assert!(
            ENGAGEMENT_TYPES[2].properties.contains(&"hs_meeting_source"),
            "pulled with meetings"
        );
        for (source, direction) in [
            (Some("MEETINGS_PUBLIC"), Some(Direction::Inbound)),
            (Some("MEETINGS_EMBEDDED"), Some(Direction::Inbound)),
            (Some("CRM_UI"), None),
            (Some("BIDIRECTIONAL_SYNC"), None),
            (Some("INTEGRATION"), None),
            (None, None),
        ] {
            let mut props = vec![("hs_timestamp", "2026-11-20T10:00:00Z")];
            props.extend(source.map(|s| ("hs_meeting_source", s)));
            let e = to_event(&ENGAGEMENT_TYPES[2], &object("8", &props)).unwrap();
            assert_eq!((e.kind, e.direction), (EventKind::Meeting, direction), "{source:?}");
        }
    }
}
