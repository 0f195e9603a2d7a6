//! HubSpot: everything leadsync knows about HubSpot's API lives here.
pub mod analytics;
pub mod auth;
pub mod limiter;
pub mod search;
pub mod types;
