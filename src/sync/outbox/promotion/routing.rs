//! Routing on the promotion path, and for reassignment: who can take a lead comes from the
//! SLA file's teams (caps, absences, working hours, fallback) and the store (each rep's open
//! leads, the contact's owner, the company's rep); who is offered it, in which order, from the
//! Salesforce mapping (territories, the round robin's users and weights). Nothing is read from
//! HubSpot or Salesforce for it.

use chrono::{DateTime, Utc};

use super::ROUND_ROBIN;
use crate::lifecycle::HubSpotId;
use crate::salesforce::mapping::LeadProperties;
use crate::salesforce::promote::{KnownOwners, PromotionInput};
use crate::salesforce::routing::{Context, Hours, Lead, Roster, Routed};
use crate::sla::SlaFile;
use crate::store::{Store, StoreError};
use crate::sync::{SyncError, Syncer};

/// The roster as of `now`: the SLA file's teams with each rep's open leads (one store query)
/// and the stored rotation position. Working hours hold nobody back at first assignment.
pub(super) async fn roster(
    store: &Store,
    sla: &SlaFile,
    now: DateTime<Utc>,
    hours: Hours,
) -> Result<Roster, StoreError> {
    let open = store.open_leads().await?;
    let position = store.counter(ROUND_ROBIN).await?;
    Ok(Roster::of_teams(&sla.teams, &open, now, hours, position))
}

/// Fills what the store knows of each input's owners: the contact's own, its company's rep,
/// and the fallback of the team of its owner (else of its HubSpot owner, else the default team).
pub(super) async fn known_owners(
    store: &Store,
    sla: &SlaFile,
    inputs: &mut [PromotionInput],
) -> Result<(), StoreError> {
    let ids: Vec<HubSpotId> = inputs.iter().map(|i| i.contact_id.clone()).collect();
    let mut companies: Vec<String> = inputs.iter().filter_map(|i| i.company_id.clone()).collect();
    companies.sort_unstable();
    companies.dedup();
    let owners = store.owners(&ids).await?;
    let company_owners = store.company_owners(&companies).await?;
    for input in inputs.iter_mut() {
        let current = owners.get(input.contact_id.as_str()).cloned();
        let team_of = current
            .clone()
            .or_else(|| input.contact.get("hubspot_owner_id").cloned());
        input.owners = KnownOwners {
            company: input.company_id.as_ref().and_then(|c| company_owners.get(c).cloned()),
            fallback: sla.team_for(team_of.as_deref()).fallback_owner.clone(),
            current,
        };
    }
    Ok(())
}

impl Syncer {
    /// Routes a stored contact now, away from its owner and from `excluded` (the reassignment
    /// of the SLA's breach ladder): only reps at work now, under their cap (open leads counted
    /// by [`Store::open_leads`]) and not absent; the company's rep, the Salesforce mapping's
    /// territories and round robin when Salesforce is configured, the teams' reps in rotation
    /// otherwise, then the fallback of the owner's team. The same roster, caps and rotation as
    /// the promotion path. Reads the store only; the rotation position it uses is saved. `None`
    /// when the contact is not stored. The caller saves the new owner, with
    /// [`Store::record_assignment`].
    pub async fn route_now(
        &self,
        contact: &HubSpotId,
        excluded: &[String],
        now: DateTime<Utc>,
    ) -> Result<Option<Routed>, SyncError> {
        let store = &self.store;
        let rows = store.contacts(std::slice::from_ref(contact)).await?;
        let Some(row) = rows.get(contact) else {
            return Ok(None);
        };
        let mut input = PromotionInput {
            contact_id: contact.clone(),
            contact: row.properties.clone(),
            company_id: row.company_id.clone(),
            company: row.company.clone(),
            cycle: 0,
            owner_email: None,
            owners: KnownOwners::default(),
        };
        known_owners(store, &self.sla, std::slice::from_mut(&mut input)).await?;
        let mut roster = roster(store, &self.sla, now, Hours::Now).await?;
        let lead = LeadProperties {
            contact: &input.contact,
            company: &input.company,
        };
        let mapping = self.promoter.as_ref().map(|p| &p.mapping);
        let ctx = Context {
            current_owner: input.owners.current.as_deref(),
            reroute: true,
            company_owner: input.owners.company.as_deref(),
            fallback: input.owners.fallback.as_deref(),
            excluded,
        };
        let routed = match mapping {
            Some(m) => roster.route(&m.routing.lead(&lead), &m.territories, &m.round_robin, &ctx),
            None => roster.route(&Lead::default(), &[], &[], &ctx),
        };
        store.set_counter(ROUND_ROBIN, roster.position).await?;
        Ok(Some(routed))
    }
}
