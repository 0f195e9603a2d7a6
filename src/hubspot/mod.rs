//! HubSpot: everything leadsync knows about HubSpot's API lives here.
