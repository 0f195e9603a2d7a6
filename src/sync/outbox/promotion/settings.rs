//! The promoter wired from the `[salesforce]` settings, and what its mapping reads.

use std::sync::Arc;

use anyhow::Context;

use super::Promoter;
use crate::config::Loaded;
use crate::salesforce::auth::SalesforceAuth;
use crate::salesforce::client::{SalesforceClient, SalesforceClientConfig};
use crate::salesforce::mapping::{SalesforceMapping, SalesforceSource};
use crate::sync::owners::OwnersCache;

fn sources(mapping: &SalesforceMapping) -> Vec<SalesforceSource> {
    let mut all: Vec<SalesforceSource> = mapping
        .account
        .iter()
        .chain(&mapping.contact)
        .chain(&mapping.opportunity)
        .flat_map(|f| f.sources())
        .collect();
    all.extend(mapping.opportunity_name.sources());
    all.extend(
        [
            &mapping.contact_email,
            &mapping.company_domain,
            &mapping.routing.country,
            &mapping.routing.employees,
            &mapping.routing.industry,
        ]
        .into_iter()
        .cloned(),
    );
    all.extend(mapping.routing.hubspot_owner.clone());
    all
}

impl Promoter {
    /// From the `[salesforce]` settings; `None` when no credentials are configured. A refresh
    /// token rotated by an earlier run (kept in the store) wins over the configured one.
    pub async fn from_settings(loaded: &Loaded, store: &crate::store::Store) -> anyhow::Result<Option<Promoter>> {
        let s = &loaded.settings.salesforce;
        if s.client_id.is_none() {
            return Ok(None);
        }
        let rotated = super::token::kept(s, store).await?;
        let auth = match rotated {
            Some(token) => SalesforceAuth::refresh_token(
                &s.login_url,
                s.client_id.as_deref().unwrap_or_default(),
                s.client_secret.clone(),
                token,
            ),
            None => SalesforceAuth::from_settings(s),
        }
        .context("salesforce credentials")?;
        let client =
            SalesforceClient::new(SalesforceClientConfig::from_settings(s), auth).context("salesforce client")?;
        let path = loaded.resolve(&s.mapping_path);
        let mapping = SalesforceMapping::load(&path).map_err(|d| anyhow::anyhow!("{d}"))?;
        Ok(Some(Promoter {
            client: Arc::new(client),
            mapping,
            owners: OwnersCache::default(),
        }))
    }

    /// Contact properties the Salesforce mapping reads.
    pub fn contact_properties(&self) -> Vec<String> {
        sources(&self.mapping)
            .into_iter()
            .filter_map(|s| match s {
                SalesforceSource::Contact(p) => Some(p),
                SalesforceSource::Company(_) => None,
            })
            .collect()
    }

    /// Company properties the Salesforce mapping reads.
    pub fn company_properties(&self) -> Vec<String> {
        sources(&self.mapping)
            .into_iter()
            .filter_map(|s| match s {
                SalesforceSource::Company(p) => Some(p),
                SalesforceSource::Contact(_) => None,
            })
            .collect()
    }
}
