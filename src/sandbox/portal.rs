//! A deterministic synthetic portal: every contact, company and engagement is a pure function of
//! `(seed, index)`, so nothing is stored for records nobody changed and a million contacts cost a
//! few bytes each (their `lastmodifieddate`, kept for the search index, and the form-submission
//! index). The same seed gives the same portal, byte for byte.
//!
//! The kinds of contacts follow `DOMAIN.md`, with the values `mappings/lifecycle.toml` reacts to:
//! ICP fits of each persona, competitors (`rivalsync.io`), students, free-mail subscribers, fans
//! with many events, dormant leads, demo requesters, customers and their colleagues, and people
//! sales already entered in Salesforce.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};

/// HubSpot's contact ids start here (id = index + `CONTACT_ID_BASE`).
pub const CONTACT_ID_BASE: u64 = 1001;
/// HubSpot's company ids start here.
pub const COMPANY_ID_BASE: u64 = 5_000_001;
/// Engagements per contact and type are at most this many (it spaces their ids).
pub const MAX_ENGAGEMENTS: u64 = 16;

const DAY_MS: i64 = 86_400_000;

/// splitmix64: a fast, well-mixed hash for deriving values from the seed.
pub(super) fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z = seed ^ a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// HubSpot's datetime property format.
pub(super) fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// What a synthetic person is, per `DOMAIN.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContactKind {
    /// ICP fit, revops persona.
    IcpRevops,
    /// ICP fit, marketing persona.
    IcpMarketing,
    /// ICP fit, sales persona.
    IcpSales,
    /// ICP fit, IT persona.
    IcpIt,
    /// Works for a competitor.
    Competitor,
    /// A student or intern.
    Student,
    /// A newsletter subscriber with a free-mail address.
    FreemailSubscriber,
    /// Answers everything: many page views, opens and clicks.
    Fan,
    /// A lead with no activity for months.
    Dormant,
    /// Submitted the demo request form recently.
    DemoRequester,
    /// Works at a company that is already a customer.
    CustomerColleague,
    /// Already entered in Salesforce by sales (same email, no HubSpot id there).
    InSalesforce,
    /// A customer (won opportunity, in Salesforce).
    Customer,
    /// A subscriber we know little about.
    Unknown,
}

impl ContactKind {
    /// Every kind, in order.
    pub const ALL: [ContactKind; 14] = [
        ContactKind::IcpRevops,
        ContactKind::IcpMarketing,
        ContactKind::IcpSales,
        ContactKind::IcpIt,
        ContactKind::Competitor,
        ContactKind::Student,
        ContactKind::FreemailSubscriber,
        ContactKind::Fan,
        ContactKind::Dormant,
        ContactKind::DemoRequester,
        ContactKind::CustomerColleague,
        ContactKind::InSalesforce,
        ContactKind::Customer,
        ContactKind::Unknown,
    ];
    /// Share of each kind in per-mille, same order as `ALL`.
    const WEIGHTS: [u64; 14] = [80, 80, 70, 50, 20, 50, 200, 30, 150, 40, 60, 50, 20, 100];

    fn is_icp(self) -> bool {
        matches!(
            self,
            ContactKind::IcpRevops
                | ContactKind::IcpMarketing
                | ContactKind::IcpSales
                | ContactKind::IcpIt
                | ContactKind::DemoRequester
                | ContactKind::InSalesforce
                | ContactKind::Customer
                | ContactKind::CustomerColleague
        )
    }
}

/// A form of the portal.
#[derive(Debug, Clone, PartialEq)]
pub struct FormDef {
    /// GUID.
    pub guid: String,
    /// Name, classified by the rules (`demo`, `ebook`, `newsletter`, …).
    pub name: &'static str,
    /// The page it sits on (the conversion event is "Page title: Form name").
    pub page: &'static str,
}

/// Index of the demo request form in [`Portal::forms`].
pub const DEMO_FORM: usize = 0;
const FORMS: [(&str, &str); 7] = [
    ("Request a demo", "Pricing"),
    ("Contact sales", "Contact"),
    ("Ebook: The RevOps playbook", "Resources"),
    ("Newsletter signup", "Blog"),
    ("Webinar replay: Funnel metrics", "Webinars"),
    ("Start a free trial", "Pricing"),
    ("Book a meeting", "Contact"),
];

/// The five engagement objects, with their association type ids from contacts.
pub const ENGAGEMENT_OBJECTS: [(&str, u32); 5] = [
    ("calls", 193),
    ("emails", 197),
    ("meetings", 199),
    ("notes", 201),
    ("tasks", 203),
];

const FIRST: [&str; 16] = [
    "Camille", "Lucas", "Léa", "Hugo", "Chloé", "Louis", "Emma", "Jules", "Sarah", "Noah", "Alice", "Adam", "Julia",
    "Arthur", "Inès", "Paul",
];
const LAST: [&str; 16] = [
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau", "Simon",
    "Laurent", "Lefebvre", "Michel", "Garcia", "Smith",
];
const FREEMAIL: [&str; 5] = ["gmail.com", "yahoo.fr", "hotmail.com", "outlook.com", "orange.fr"];
const COUNTRIES: [&str; 8] = ["FR", "BE", "CH", "DE", "GB", "US", "CA", "ES"];
const INDUSTRIES: [&str; 6] = [
    "COMPUTER_SOFTWARE",
    "INFORMATION_TECHNOLOGY_AND_SERVICES",
    "FINANCIAL_SERVICES",
    "MARKETING_AND_ADVERTISING",
    "RETAIL",
    "HOSPITAL_HEALTH_CARE",
];
const SIZES: [u32; 7] = [5, 25, 80, 250, 800, 1800, 6000];
const COMPANY_WORDS: [&str; 12] = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Stark",
    "Wayne",
    "Tyrell",
    "Soylent",
    "Cyberdyne",
    "Aperture",
];
const TITLES: [(ContactKind, [&str; 3]); 5] = [
    (
        ContactKind::IcpRevops,
        ["Head of RevOps", "Revenue Operations Manager", "VP Revenue Operations"],
    ),
    (
        ContactKind::IcpMarketing,
        ["CMO", "Head of Marketing", "Demand Gen Manager"],
    ),
    (
        ContactKind::IcpSales,
        ["VP Sales", "Sales Director", "Business Development Manager"],
    ),
    (ContactKind::IcpIt, ["CTO", "IT Director", "Engineering Manager"]),
    (
        ContactKind::Competitor,
        ["VP Marketing", "Product Manager", "Sales Director"],
    ),
];

/// A synthetic company.
#[derive(Debug, Clone, PartialEq)]
pub struct Company {
    /// Index (id = index + [`COMPANY_ID_BASE`]).
    pub index: u32,
    /// Name.
    pub name: String,
    /// Web domain, unique.
    pub domain: String,
    /// Employees.
    pub employees: u32,
    /// HubSpot industry value.
    pub industry: &'static str,
    /// ISO country.
    pub country: &'static str,
    /// Already a customer (an Account in Salesforce).
    pub customer: bool,
    /// Created (epoch ms).
    pub created_ms: i64,
}

/// A synthetic contact as first generated.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseContact {
    /// Index (id = index + [`CONTACT_ID_BASE`]).
    pub index: u32,
    /// Kind.
    pub kind: ContactKind,
    /// Company index, when at a portal company.
    pub company: Option<u32>,
    /// Properties, as HubSpot returns them (text).
    pub properties: BTreeMap<String, String>,
    /// Historical form submissions: (form index, epoch ms), oldest first.
    pub submissions: Vec<(usize, i64)>,
    /// Owner index, when owned.
    pub owner: Option<usize>,
}

/// A contact's generated dates, counters and form submissions.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    /// Created (epoch ms).
    pub created: i64,
    /// Latest web or email activity (epoch ms).
    pub last_activity: i64,
    /// Page views.
    pub views: u64,
    /// Marketing email opens.
    pub opens: u64,
    /// Marketing email clicks.
    pub clicks: u64,
    /// Form submissions: (form index, epoch ms), oldest first.
    pub submissions: Vec<(usize, i64)>,
    /// `lastmodifieddate` (epoch ms).
    pub modified: i64,
}

/// One synthetic engagement.
#[derive(Debug, Clone, PartialEq)]
pub struct Engagement {
    /// Record id (unique within its object type).
    pub id: u64,
    /// Contact index it is associated with.
    pub contact: u32,
    /// Properties as HubSpot returns them.
    pub properties: BTreeMap<String, String>,
}

/// The seeded portal: generation functions and the few indexes search needs.
#[derive(Debug)]
pub struct Portal {
    /// Seed.
    pub seed: u64,
    /// Contacts generated.
    pub contacts: u32,
    /// Companies generated.
    pub companies: u32,
    /// The portal's "now" (epoch ms): all history is before it.
    pub now_ms: i64,
    /// How far back history goes (ms).
    pub history_ms: i64,
    /// The forms.
    pub forms: Vec<FormDef>,
    /// Owners: (id, first name, last name, email).
    pub owners: Vec<(String, String, String, String)>,
}

impl Portal {
    /// A portal of `contacts` contacts and `companies` companies, `months` of history before `now`.
    pub fn new(seed: u64, contacts: u32, companies: u32, months: u32, now: DateTime<Utc>) -> Self {
        let forms = FORMS
            .iter()
            .enumerate()
            .map(|(i, (name, page))| {
                let h = mix(seed, 0xF0, i as u64);
                FormDef {
                    guid: format!(
                        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                        h as u32,
                        (h >> 32) as u16,
                        (h >> 48) & 0xfff,
                        i,
                        h & 0xffff_ffff_ffff
                    ),
                    name,
                    page,
                }
            })
            .collect();
        let owners = (0..8)
            .map(|i| {
                let first = FIRST[(i * 3 + 1) % FIRST.len()].to_string();
                let last = LAST[(i * 5 + 2) % LAST.len()].to_string();
                let email = format!("{}.{}@leadsync-demo.com", ascii(&first), ascii(&last));
                ((70_001 + i).to_string(), first, last, email)
            })
            .collect();
        Self {
            seed,
            contacts,
            companies: companies.max(1),
            now_ms: now.timestamp_millis(),
            history_ms: i64::from(months.max(1)) * 30 * DAY_MS,
            forms,
            owners,
        }
    }

    /// The kind of contact `index`. The first contacts cycle through every kind, so even a small
    /// portal has each.
    pub fn kind(&self, index: u32) -> ContactKind {
        let n = ContactKind::ALL.len() as u32;
        if index < 2 * n {
            return ContactKind::ALL[(index % n) as usize];
        }
        let mut r = mix(self.seed, 1, u64::from(index)) % 1000;
        for (k, w) in ContactKind::ALL.iter().zip(ContactKind::WEIGHTS) {
            if r < w {
                return *k;
            }
            r -= w;
        }
        ContactKind::Unknown
    }

    fn customer_companies(&self) -> u32 {
        (self.companies / 20).max(1)
    }

    /// Company `index`.
    pub fn company(&self, index: u32) -> Company {
        let h = mix(self.seed, 2, u64::from(index));
        let word = COMPANY_WORDS[(h % COMPANY_WORDS.len() as u64) as usize];
        Company {
            index,
            name: format!("{word} {index}"),
            domain: format!("{}{index}.example.com", word.to_lowercase()),
            employees: SIZES[((h >> 8) % SIZES.len() as u64) as usize],
            industry: INDUSTRIES[((h >> 16) % INDUSTRIES.len() as u64) as usize],
            country: COUNTRIES[((h >> 24) % COUNTRIES.len() as u64) as usize],
            customer: index < self.customer_companies(),
            created_ms: self.now_ms - self.history_ms - ((h >> 32) % (365 * DAY_MS as u64)) as i64,
        }
    }

    /// HubSpot properties of company `index`.
    pub fn company_properties(&self, index: u32) -> BTreeMap<String, String> {
        let c = self.company(index);
        let mut p = BTreeMap::new();
        p.insert("hs_object_id".into(), (u64::from(index) + COMPANY_ID_BASE).to_string());
        p.insert("name".into(), c.name);
        p.insert("domain".into(), c.domain);
        p.insert("numberofemployees".into(), c.employees.to_string());
        p.insert("industry".into(), c.industry.into());
        p.insert("country".into(), c.country.into());
        p.insert("createdate".into(), iso(c.created_ms));
        p.insert("hs_lastmodifieddate".into(), iso(c.created_ms + DAY_MS));
        if c.customer {
            p.insert("lifecyclestage".into(), "customer".into());
        }
        p
    }

    /// The company of contact `index`, if any.
    pub fn contact_company(&self, index: u32) -> Option<u32> {
        let h = mix(self.seed, 3, u64::from(index));
        let customers = self.customer_companies();
        match self.kind(index) {
            ContactKind::FreemailSubscriber | ContactKind::Fan | ContactKind::Student | ContactKind::Competitor => None,
            ContactKind::Customer | ContactKind::CustomerColleague => Some((h % u64::from(customers)) as u32),
            _ if self.companies > customers => Some(customers + (h % u64::from(self.companies - customers)) as u32),
            _ => Some((h % u64::from(self.companies)) as u32),
        }
    }

    /// Contact `index` as generated.
    pub fn contact(&self, index: u32) -> BaseContact {
        use ContactKind::*;
        let kind = self.kind(index);
        let id = u64::from(index) + CONTACT_ID_BASE;
        let h = |salt: u64| mix(self.seed, 100 + salt, u64::from(index));
        let first = FIRST[(h(1) % 16) as usize];
        let last = LAST[(h(2) % 16) as usize];
        let company = self.contact_company(index).map(|c| self.company(c));
        let local = format!("{}.{}.{id}", ascii(first), ascii(last));
        let domain = match (kind, &company) {
            (Competitor, _) => "rivalsync.io".to_string(),
            (Student, _) => "etu.univ-paris.fr".to_string(),
            (FreemailSubscriber | Fan, _) | (_, None) => FREEMAIL[(h(3) % 5) as usize].to_string(),
            (_, Some(c)) => c.domain.clone(),
        };
        let mut p = BTreeMap::new();
        let mut set = |k: &str, v: String| {
            p.insert(k.to_string(), v);
        };
        set("hs_object_id", id.to_string());
        set("email", format!("{local}@{domain}"));
        set("firstname", first.into());
        set("lastname", last.into());
        let title = match kind {
            Student => Some(["Student", "Marketing intern", "Alternant commercial"][(h(4) % 3) as usize]),
            Unknown | FreemailSubscriber => None,
            Fan => Some("Consultant"),
            Dormant | CustomerColleague => Some(TITLES[(h(4) % 4) as usize].1[(h(5) % 3) as usize]),
            Competitor => Some(TITLES[4].1[(h(5) % 3) as usize]),
            _ => {
                let persona = match kind {
                    IcpRevops => 0,
                    IcpMarketing => 1,
                    IcpSales => 2,
                    IcpIt => 3,
                    _ => (h(4) % 3) as usize,
                };
                Some(TITLES[persona].1[(h(5) % 3) as usize])
            }
        };
        if let Some(t) = title {
            set("jobtitle", t.into());
        }
        if kind == Competitor {
            set("company", "RivalSync".into());
            set("numemployees", "150".into());
            set("country", "FR".into());
        } else if let Some(c) = &company {
            set("company", c.name.clone());
            set("numemployees", c.employees.to_string());
            set("industry", c.industry.into());
            set("country", c.country.into());
            set(
                "phone",
                format!(
                    "+33 1 {:02} {:02} {:02} {:02}",
                    h(6) % 100,
                    h(7) % 100,
                    h(8) % 100,
                    id % 100
                ),
            );
        }
        let Activity {
            created,
            last_activity,
            views,
            opens,
            clicks,
            submissions,
            modified,
        } = self.activity(index);
        set("createdate", iso(created));
        set("hs_analytics_num_page_views", views.to_string());
        set("hs_analytics_num_visits", views.div_ceil(3).to_string());
        if views > 0 {
            set("hs_analytics_last_visit_timestamp", iso(last_activity));
        }
        set("hs_email_open", opens.to_string());
        set("hs_email_click", clicks.to_string());
        if opens > 0 {
            set("hs_email_last_open_date", iso(last_activity - 3_600_000));
        }
        if clicks > 0 {
            set("hs_email_last_click_date", iso(last_activity - 3_000_000));
        }
        let conversion = |(f, _): (usize, i64)| format!("{}: {}", FORMS[f].1, FORMS[f].0);
        if let (Some(&first_s), Some(&last_s)) = (submissions.first(), submissions.last()) {
            set("first_conversion_event_name", conversion(first_s));
            set("first_conversion_date", iso(first_s.1));
            set("recent_conversion_event_name", conversion(last_s));
            set("recent_conversion_date", iso(last_s.1));
            set("num_conversion_events", submissions.len().to_string());
            let mut forms: Vec<usize> = submissions.iter().map(|s| s.0).collect();
            forms.sort();
            forms.dedup();
            set("num_unique_conversion_events", forms.len().to_string());
        }
        let stage = match kind {
            FreemailSubscriber | Fan | Student | Unknown => "subscriber",
            InSalesforce => ["salesqualifiedlead", "opportunity"][(h(25) % 2) as usize],
            Customer => "customer",
            _ => "lead",
        };
        set("lifecyclestage", stage.into());
        let owner = matches!(kind, InSalesforce | Customer | CustomerColleague)
            .then(|| (h(26) % self.owners.len() as u64) as usize);
        if let Some(o) = owner {
            set("hubspot_owner_id", self.owners[o].0.clone());
        }
        set("lastmodifieddate", iso(modified));
        BaseContact {
            index,
            kind,
            company: company.map(|c| c.index),
            properties: p,
            submissions,
            owner,
        }
    }

    /// The dates, counters and submissions of contact `index`, without building its properties
    /// (what the search index and the submissions index need).
    pub fn activity(&self, index: u32) -> Activity {
        use ContactKind::*;
        let kind = self.kind(index);
        let h = |salt: u64| mix(self.seed, 100 + salt, u64::from(index));
        let created = self.contact_created_ms(index);
        let age = self.now_ms - created;
        let (views, opens, clicks) = match kind {
            Fan => (150 + h(10) % 200, 120 + h(11) % 80, 60 + h(12) % 60),
            Dormant => (1 + h(10) % 4, h(11) % 3, 0),
            Unknown | Student => (h(10) % 5, h(11) % 4, h(12) % 2),
            _ => (3 + h(10) % 25, 2 + h(11) % 12, h(12) % 6),
        };
        let last_activity = match kind {
            Dormant => created + DAY_MS * (1 + (h(13) % 5) as i64),
            _ => self.now_ms - (h(13) % (age.max(1) as u64).min(30 * DAY_MS as u64)) as i64,
        }
        .min(self.now_ms - 60_000)
        .max(created);
        let mut submissions = Vec::new();
        let in_window = |salt: u64| created + (h(salt) % ((last_activity - created).max(1) as u64)) as i64;
        match kind {
            FreemailSubscriber | Unknown => submissions.push((3, created)),
            Student => submissions.push((2, in_window(20))),
            Fan => {
                submissions.push((3, created));
                submissions.extend([(2, in_window(20)), (4, in_window(21)), (2, in_window(22))]);
            }
            DemoRequester => {
                submissions.push((2, created));
                submissions.push((DEMO_FORM, last_activity));
            }
            Dormant => submissions.push((2, created)),
            IcpRevops | IcpMarketing | IcpSales | IcpIt | CustomerColleague => {
                submissions.push((2, created));
                // A quarter are warm (a replay and a trial in the last days), a quarter read more.
                let recent = |salt: u64| (last_activity - (h(salt) % (10 * DAY_MS as u64)) as i64).max(created);
                match h(23) % 4 {
                    0 => submissions.extend([(4, recent(24)), (5, recent(27))]),
                    1 => submissions.push((4, in_window(24))),
                    _ => {}
                }
            }
            InSalesforce | Customer => submissions.push((1, created)),
            Competitor => submissions.push((2, in_window(20))),
        }
        submissions.sort_by_key(|s| s.1);
        let engagement_last = (0..ENGAGEMENT_OBJECTS.len())
            .flat_map(|t| (0..self.engagement_count(index, t)).map(move |j| (t, Self::engagement_id(index, j))))
            .map(|(t, id)| self.engagement_at(t, index, id))
            .max()
            .unwrap_or(created);
        Activity {
            created,
            last_activity,
            views,
            opens,
            clicks,
            submissions,
            modified: last_activity.max(engagement_last).max(created),
        }
    }

    /// When engagement `id` of type `t` of contact `index` happened (epoch ms).
    fn engagement_at(&self, t: usize, index: u32, id: u64) -> i64 {
        let h = mix(self.seed, 300 + t as u64, id);
        let created = self.contact_created_ms(index);
        let span = (self.now_ms - created).max(DAY_MS);
        if self.kind(index) == ContactKind::Dormant {
            created + DAY_MS
        } else {
            created + (h % span as u64) as i64
        }
        .min(self.now_ms - 60_000)
    }

    /// When contact `index` was created (epoch ms): some time in the history window; dormant
    /// ones long ago, demo requesters in the last weeks.
    pub fn contact_created_ms(&self, index: u32) -> i64 {
        let h = mix(self.seed, 109, u64::from(index));
        let age = match self.kind(index) {
            // Idle for longer than the rules' 180 days, whatever the history asked for.
            ContactKind::Dormant => self.history_ms.max(200 * DAY_MS) + (h % (60 * DAY_MS as u64)) as i64,
            ContactKind::DemoRequester => (h % (20 * DAY_MS as u64)) as i64 + 2 * DAY_MS,
            _ => (h % self.history_ms as u64) as i64,
        };
        self.now_ms - age
    }

    /// How many engagements of type `t` (index in [`ENGAGEMENT_OBJECTS`]) contact `index` has.
    pub fn engagement_count(&self, index: u32, t: usize) -> u64 {
        use ContactKind::*;
        let h = mix(self.seed, 200 + t as u64, u64::from(index));
        let kind = self.kind(index);
        let n = match (kind, ENGAGEMENT_OBJECTS[t].0) {
            (InSalesforce | Customer, "calls") => 2 + h % 3,
            (InSalesforce | Customer, "meetings") => 1 + h % 2,
            (InSalesforce | Customer, "emails") => 2 + h % 4,
            (InSalesforce | Customer, "notes") => 1 + h % 2,
            (InSalesforce | Customer, "tasks") => h % 2,
            (Dormant, "emails") => 1,
            (DemoRequester, "emails") => h % 2,
            (k, "emails" | "notes") if k.is_icp() => h % 3,
            (k, "calls") if k.is_icp() => h % 2,
            _ => 0,
        };
        n.min(MAX_ENGAGEMENTS)
    }

    /// Engagement record id of the `j`-th engagement of type `t` of contact `index`.
    pub fn engagement_id(index: u32, j: u64) -> u64 {
        u64::from(index) * MAX_ENGAGEMENTS + j + 1
    }

    /// The contact index and position an engagement id stands for.
    pub fn engagement_owner(id: u64) -> Option<(u32, u64)> {
        let n = id.checked_sub(1)?;
        Some(((n / MAX_ENGAGEMENTS) as u32, n % MAX_ENGAGEMENTS))
    }

    /// Engagements of type `t` of contact `index`.
    pub fn engagements(&self, index: u32, t: usize) -> Vec<Engagement> {
        (0..self.engagement_count(index, t))
            .filter_map(|j| self.engagement(t, Self::engagement_id(index, j)))
            .collect()
    }

    /// Engagement `id` of type `t`, if it exists.
    pub fn engagement(&self, t: usize, id: u64) -> Option<Engagement> {
        let (index, j) = Self::engagement_owner(id)?;
        if index >= self.contacts || j >= self.engagement_count(index, t) {
            return None;
        }
        let h = mix(self.seed, 300 + t as u64, id);
        let at = self.engagement_at(t, index, id);
        let mut p = BTreeMap::new();
        p.insert("hs_object_id".to_string(), id.to_string());
        p.insert("hs_timestamp".to_string(), iso(at));
        p.insert("hs_createdate".to_string(), iso(at));
        p.insert("hs_lastmodifieddate".to_string(), iso(at));
        // Sales' own contacts answer a third of the time; marketing's leads rarely do (an answer
        // is a shortcut to SQL).
        let inbound = match self.kind(index) {
            ContactKind::InSalesforce | ContactKind::Customer => (h >> 8) % 3 == 0,
            _ => (h >> 8) % 12 == 0,
        };
        match ENGAGEMENT_OBJECTS[t].0 {
            "calls" => {
                p.insert(
                    "hs_call_direction".into(),
                    if inbound { "INBOUND" } else { "OUTBOUND" }.into(),
                );
                let status = ["COMPLETED", "NO_ANSWER", "BUSY"][((h >> 12) % 3) as usize];
                p.insert("hs_call_status".into(), status.into());
            }
            "emails" => {
                let d = if inbound { "INCOMING_EMAIL" } else { "EMAIL" };
                p.insert("hs_email_direction".into(), d.into());
            }
            "meetings" => {
                let o = ["COMPLETED", "SCHEDULED", "NO_SHOW"][((h >> 12) % 3) as usize];
                p.insert("hs_meeting_outcome".into(), o.into());
                // A meeting the contact booked on a scheduling page, or one a rep logged.
                let source = if inbound { "MEETINGS_PUBLIC" } else { "CRM_UI" };
                p.insert("hs_meeting_source".into(), source.into());
            }
            "notes" => {
                p.insert("hs_note_body".into(), "Discussed needs and timing".into());
            }
            _ => {
                p.insert("hs_task_subject".into(), "Follow up".into());
                p.insert("hs_task_status".into(), "COMPLETED".into());
            }
        }
        Some(Engagement {
            id,
            contact: index,
            properties: p,
        })
    }

    /// Contact index from a generated email (`first.last.<id>@domain`), checked.
    pub fn index_of_email(&self, email: &str) -> Option<u32> {
        let email = email.trim().to_lowercase();
        let (local, _) = email.split_once('@')?;
        let id: u64 = local.rsplit('.').next()?.parse().ok()?;
        let index = u32::try_from(id.checked_sub(CONTACT_ID_BASE)?).ok()?;
        (index < self.contacts && self.contact(index).properties.get("email").map(|e| e.to_lowercase()) == Some(email))
            .then_some(index)
    }
}

/// Pages of the portal's website, as page views name them.
pub const PAGES: [&str; 8] = [
    "/",
    "/pricing",
    "/blog/funnel-metrics",
    "/resources/revops-playbook",
    "/webinars/funnel-metrics",
    "/contact",
    "/product",
    "/customers",
];

/// Marketing email campaigns the portal sent (ids as the email events API gives them).
pub const EMAIL_CAMPAIGNS: [u64; 4] = [310_001, 310_002, 310_003, 310_004];

/// One generated behaviour event of a contact.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BehaviourEvent {
    /// When (epoch ms).
    pub at: i64,
    /// A number unique among this contact's events of the kind (what its id is derived from).
    pub n: u64,
    /// Index in [`PAGES`] (page views) or [`EMAIL_CAMPAIGNS`] (email events).
    pub what: usize,
}

impl Portal {
    /// Spreads `count` events of contact `index` between its creation and `last` (the date its
    /// properties give the latest one), the last one at `last`, oldest first.
    fn spread(&self, index: u32, salt: u64, count: u64, choices: usize, last: i64) -> Vec<BehaviourEvent> {
        let a = self.activity(index);
        let last = last.max(a.created);
        let span = (last - a.created).max(1) as u64;
        let mut out: Vec<BehaviourEvent> = (0..count)
            .map(|k| {
                let h = mix(self.seed, salt, u64::from(index) << 20 | k);
                let at = if k + 1 == count {
                    last
                } else {
                    a.created + (h % span) as i64
                };
                BehaviourEvent {
                    at,
                    n: k,
                    what: (h >> 40) as usize % choices,
                }
            })
            .collect();
        out.sort_by_key(|e| (e.at, e.n));
        out
    }

    /// Contact `index`'s page views, as many as its `hs_analytics_num_page_views`, oldest first.
    pub fn page_views(&self, index: u32) -> Vec<BehaviourEvent> {
        let a = self.activity(index);
        self.spread(index, 0x9A6E, a.views, PAGES.len(), a.last_activity)
    }

    /// Contact `index`'s marketing email opens and clicks (`hs_email_open`, `hs_email_click`),
    /// oldest first.
    pub fn email_events(&self, index: u32) -> (Vec<BehaviourEvent>, Vec<BehaviourEvent>) {
        let a = self.activity(index);
        (
            self.spread(
                index,
                0xE0BE,
                a.opens,
                EMAIL_CAMPAIGNS.len(),
                a.last_activity - 3_600_000,
            ),
            self.spread(
                index,
                0xC11C,
                a.clicks,
                EMAIL_CAMPAIGNS.len(),
                a.last_activity - 3_000_000,
            ),
        )
    }
}

/// A UUID-shaped id derived from `h`.
pub(super) fn uuid(h: u64, n: u64) -> String {
    let l = mix(h, n, 0x0ddba11);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h as u32,
        (h >> 32) as u16,
        (l >> 48) & 0xfff,
        (l >> 36) & 0xfff,
        l & 0xffff_ffff_ffff
    )
}

/// Epoch ms from a HubSpot value: digits, or an RFC 3339 date-time, or a date.
pub(super) fn parse_ms(v: &str) -> Option<i64> {
    let v = v.trim();
    if let Ok(n) = v.parse::<i64>() {
        return Some(n);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_millis())
}

fn ascii(s: &str) -> String {
    s.to_lowercase()
        .chars()
        .map(|c| match c {
            'é' | 'è' | 'ê' => 'e',
            'ï' | 'î' => 'i',
            'ô' => 'o',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn portal() -> Portal {
        Portal::new(7, 500, 40, 6, "2026-11-25T12:00:00Z".parse().unwrap())
    }

    #[test]
    fn every_kind_is_present_in_a_small_portal() {
        let p = portal();
        for k in ContactKind::ALL {
            assert!((0..p.contacts).any(|i| p.kind(i) == k), "{k:?}");
        }
    }

    #[test]
    fn emails_map_back_to_their_contact() {
        let p = portal();
        for i in [0, 17, 499] {
            let email = p.contact(i).properties["email"].clone();
            assert_eq!(p.index_of_email(&email.to_uppercase()), Some(i));
        }
        assert_eq!(p.index_of_email("nobody.1001@example.com"), None);
    }

    #[test]
    fn engagement_ids_name_their_contact() {
        let p = portal();
        let i = (0..p.contacts).find(|&i| p.engagement_count(i, 0) > 0).unwrap();
        let e = &p.engagements(i, 0)[0];
        assert_eq!(Portal::engagement_owner(e.id), Some((i, 0)));
        assert!(p.engagement(0, e.id).is_some());
        assert!(p.engagement(0, Portal::engagement_id(i, MAX_ENGAGEMENTS - 1)).is_none());
    }
}
