//! HubSpot: everything leadsync knows about HubSpot's API lives here.
pub mod analytics;
pub mod auth;
pub mod client;
pub mod contacts;
pub mod engagements;
pub mod limiter;
pub mod retry;
pub mod search;
pub mod types;
