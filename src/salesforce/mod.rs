//! Salesforce: everything leadsync knows about Salesforce's API lives here.

/// Per-record outcomes of sObject Collections calls, classified.
pub mod errors;
/// `Sforce-Limit-Info` and leadsync's share of the org's daily allocation.
pub mod limits;
/// Owner assignment: account owner, territory, weighted round robin.
pub mod routing;
/// SOQL literals, batched lookups, company domains.
pub mod soql;
