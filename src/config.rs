//! `leadsync.toml`, layered with `LEADSYNC__SECTION__KEY` environment variables.
//!
//! Two phases: the file is read into a TOML table (syntax errors located by line and column),
//! environment variables are laid over it, and the result deserializes into [`Settings`], whose
//! every field has a documented default. [`Settings::check`] then reports every semantic problem
//! at once. Secrets are `SecretString`s: they print as `[REDACTED]`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::diagnostics::{Diagnostic, Diagnostics, SourceText};

/// Prefix of the environment variables that override the file.
pub const ENV_PREFIX: &str = "LEADSYNC__";

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Where the lifecycle rules live.
    pub rules: RulesSettings,
    /// HubSpot credentials and quota.
    pub hubspot: HubSpotSettings,
    /// Salesforce credentials and quota.
    pub salesforce: SalesforceSettings,
    /// leadsync's own state store.
    pub store: StoreSettings,
    /// When the daemon's jobs run.
    pub schedule: ScheduleSettings,
    /// Several `leadsync run` replicas on one PostgreSQL store.
    pub replicas: ReplicaSettings,
    /// The HTTP server (webhooks, health, metrics).
    pub server: ServerSettings,
    /// How `leadsync run` logs.
    pub log: LogSettings,
    /// `[[portals]]`, compiled: each portal's whole settings, its own sections laid over the
    /// top-level ones. Empty for a file without `[[portals]]`: then the file is one portal.
    #[serde(skip)]
    pub portals: Vec<Settings>,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` (default) or `json`, one object per line for log shippers; `--log-format` wins.
    pub format: crate::logging::LogFormat,
}

/// `[rules]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesSettings {
    /// Rules file; relative paths are resolved from the configuration file's folder.
    /// Default `mappings/lifecycle.toml`.
    pub path: PathBuf,
    /// The sales SLA file (teams, policies, ladders), resolved the same way; the embedded
    /// default when it does not exist. Default `mappings/sla.toml`.
    pub sla_path: PathBuf,
}

impl Default for RulesSettings {
    fn default() -> Self {
        Self {
            path: PathBuf::from("mappings/lifecycle.toml"),
            sla_path: PathBuf::from("mappings/sla.toml"),
        }
    }
}

/// `[hubspot]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubSpotSettings {
    /// API base URL. Default `https://api.hubapi.com` (the sandbox and tests point it at loopback).
    pub api_base_url: String,
    /// OAuth token endpoint. Default `https://api.hubapi.com/oauth/v1/token`.
    pub token_url: String,
    /// Portal (hub) id, used in logs and error messages. Default: none.
    pub portal_id: Option<u64>,
    /// OAuth app client id (with `client_secret` and `refresh_token`). Default: none.
    pub client_id: Option<String>,
    /// OAuth app client secret; also the key that signs webhooks (v3). Default: none.
    pub client_secret: Option<SecretString>,
    /// OAuth refresh token. Default: none.
    pub refresh_token: Option<SecretString>,
    /// Private-app / service-key token, the alternative to OAuth. Default: none.
    pub private_app_token: Option<SecretString>,
    /// Requests allowed per rolling 10 seconds. Default 80: under the 100 of the smallest tier,
    /// leaving room for the portal's other apps.
    pub burst_per_10s: u32,
    /// CRM search requests per second. Default 4 (HubSpot allows 5 per account).
    pub search_per_second: u32,
    /// Daily calls kept for real-time work: below it, backfills and sweeps pause. Default 25,000.
    pub daily_reserve: u64,
    /// OAuth apps only: calls per HubSpot day leadsync may spend, counted by leadsync (HubSpot
    /// tells OAuth apps nothing); the reserve is kept out of it. Default: none (no daily budget
    /// for OAuth apps; private apps read HubSpot's own count).
    pub daily_allocation: Option<u64>,
    /// The portal's time zone (IANA name, as set in HubSpot): the daily limit resets at midnight
    /// there. Default `UTC`.
    #[serde(deserialize_with = "time_zone")]
    pub time_zone: chrono_tz::Tz,
    /// The portal has the event analytics API (Enterprise): page views are read event by event
    /// instead of from the analytics counters. Default false.
    pub event_analytics: bool,
    /// The portal has the email events API: opens and clicks are read event by event instead of
    /// from the counters. Default false.
    pub email_events: bool,
}

impl Default for HubSpotSettings {
    fn default() -> Self {
        Self {
            api_base_url: "https://api.hubapi.com".into(),
            token_url: "https://api.hubapi.com/oauth/v1/token".into(),
            portal_id: None,
            client_id: None,
            client_secret: None,
            refresh_token: None,
            private_app_token: None,
            burst_per_10s: 80,
            search_per_second: 4,
            daily_reserve: 25_000,
            daily_allocation: None,
            time_zone: chrono_tz::Tz::UTC,
            event_analytics: false,
            email_events: false,
        }
    }
}

/// An IANA time zone name (`Europe/Berlin`), refused at load when unknown.
fn time_zone<'de, D: serde::Deserializer<'de>>(d: D) -> Result<chrono_tz::Tz, D::Error> {
    let name = String::deserialize(d)?;
    name.parse()
        .map_err(|_| serde::de::Error::custom(format!("`{name}` is not an IANA time zone name (e.g. Europe/Berlin)")))
}

/// `[salesforce]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SalesforceSettings {
    /// Login URL. Default `https://login.salesforce.com` (`https://test.salesforce.com` for sandboxes).
    pub login_url: String,
    /// REST API version. Default `v62.0`.
    pub api_version: String,
    /// Connected app consumer key. Default: none.
    pub client_id: Option<String>,
    /// Connected app consumer secret (refresh-token and client-credentials flows). Default: none.
    pub client_secret: Option<SecretString>,
    /// Integration user's username (JWT bearer flow). Default: none.
    pub username: Option<String>,
    /// PEM private key file of the connected app (JWT bearer flow). Default: none.
    pub private_key_path: Option<PathBuf>,
    /// Refresh token (refresh-token flow). Default: none.
    pub refresh_token: Option<SecretString>,
    /// Share of the org's daily API allocation leadsync may use, in percent. Default 20.
    pub daily_share_percent: u8,
    /// Salesforce field mappings. Default `mappings/salesforce.toml`.
    pub mapping_path: PathBuf,
}

impl Default for SalesforceSettings {
    fn default() -> Self {
        Self {
            login_url: "https://login.salesforce.com".into(),
            api_version: "v62.0".into(),
            client_id: None,
            client_secret: None,
            username: None,
            private_key_path: None,
            refresh_token: None,
            daily_share_percent: 20,
            mapping_path: PathBuf::from("mappings/salesforce.toml"),
        }
    }
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `sqlite://FILE` (default `sqlite://leadsync.db`) or `postgres://…`.
    pub url: String,
    /// Days processed webhook events are kept in the inbox before they are pruned (HubSpot
    /// redelivers for up to a day). Default 7; 1 to 3650.
    pub inbox_retention_days: u32,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://leadsync.db".into(),
            inbox_retention_days: crate::store::DEFAULT_INBOX_RETENTION_DAYS,
        }
    }
}

impl StoreSettings {
    /// How long processed inbox rows are kept.
    pub fn inbox_retention(&self) -> chrono::Duration {
        chrono::Duration::days(i64::from(self.inbox_retention_days))
    }
}

/// `[schedule]`: cron expressions with seconds (`sec min hour day month weekday`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleSettings {
    /// Incremental sync. Default every 5 minutes.
    pub sync: String,
    /// Re-scoring sweep (decay, dormancy, recycle and lost timers). Default nightly at 02:30 UTC.
    pub rescore: String,
    /// SLA sweep. Default every 15 minutes.
    pub sla: String,
    /// Opportunity feedback from Salesforce. Default every 10 minutes.
    pub opportunities: String,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            sync: "0 */5 * * * *".into(),
            rescore: "0 30 2 * * *".into(),
            sla: "0 */15 * * * *".into(),
            opportunities: "0 */10 * * * *".into(),
        }
    }
}

/// `[replicas]`: every replica serves webhooks; one at a time, the lease holder, does the
/// portal's work (see `store::lease`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicaSettings {
    /// How long the lease lasts unless renewed (it is renewed every third of it): at most this
    /// long passes between a holder's death and another replica taking its work over. Default 15.
    pub lease_seconds: u64,
    /// The most portals' leases this replica holds at once (`[[portals]]`): with a cap, the
    /// portals of a file spread over the replicas instead of all going to the first one up; a
    /// portal beyond every replica's cap waits until a replica has room. Absent: no cap.
    pub max_portals_per_replica: Option<usize>,
}

impl Default for ReplicaSettings {
    fn default() -> Self {
        Self {
            lease_seconds: 15,
            max_portals_per_replica: None,
        }
    }
}

impl ReplicaSettings {
    /// The lease time (one second at least).
    pub fn lease(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lease_seconds.max(1))
    }
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub bind: String,
    /// The public URL HubSpot calls (a proxy may sit in front); webhook signatures are checked
    /// against it. Default: none (the request's own URL).
    pub public_base_url: Option<String>,
    /// Largest webhook body accepted, in bytes. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Seconds a connection has to send a request's headers (idle keep-alive connections
    /// included) before it is closed. Default 10; 1 to 300.
    pub header_timeout_secs: u64,
    /// Seconds a request has to be read and answered, else 408 (HubSpot gives up after 5).
    /// Default 10; 1 to 300.
    pub request_timeout_secs: u64,
    /// Connections served at once; more wait in the kernel's backlog. Default 512; 1 to 65536.
    pub max_connections: usize,
    /// Bearer token the status page (`GET /`, `/status.json`) asks for; without it the page is
    /// open on a loopback `bind` and refused on any other. At least 24 characters. Default none.
    pub status_token: Option<SecretString>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        let limits = crate::server::ServerLimits::default();
        Self {
            bind: "127.0.0.1:8080".into(),
            public_base_url: None,
            max_body_bytes: 1024 * 1024,
            header_timeout_secs: limits.header_read_timeout.as_secs(),
            request_timeout_secs: limits.request_timeout.as_secs(),
            max_connections: limits.max_connections,
            status_token: None,
        }
    }
}

impl ServerSettings {
    /// The webhook server's limits these settings name.
    pub fn limits(&self) -> crate::server::ServerLimits {
        crate::server::ServerLimits {
            header_read_timeout: std::time::Duration::from_secs(self.header_timeout_secs),
            request_timeout: std::time::Duration::from_secs(self.request_timeout_secs),
            max_connections: self.max_connections,
        }
    }
}

/// Settings and the file they came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The merged settings.
    pub settings: Settings,
    /// The configuration file, when one was read.
    pub file: Option<PathBuf>,
}

impl Loaded {
    /// A path from the configuration, resolved against the configuration file's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        match (&self.file, p.is_relative()) {
            (Some(f), true) => f.parent().unwrap_or(Path::new(".")).join(p),
            _ => p.to_path_buf(),
        }
    }

    /// The portals of this deployment, each as the settings of one portal (the file's own
    /// when it has no `[[portals]]`): every per-portal part (`daemon::syncer_opening`, the
    /// promoter, the schedules) is built from one of these as from a single-portal file.
    pub fn portals(&self) -> Vec<Loaded> {
        if self.settings.portals.is_empty() {
            return vec![self.clone()];
        }
        self.settings
            .portals
            .iter()
            .map(|settings| Loaded {
                settings: settings.clone(),
                file: self.file.clone(),
            })
            .collect()
    }

    /// The rules file to use.
    pub fn rules_path(&self) -> PathBuf {
        self.resolve(&self.settings.rules.path)
    }

    /// The SLA file: `rules.sla_path`, by default `mappings/sla.toml` beside the configuration
    /// (the embedded default when it does not exist).
    pub fn sla_path(&self) -> PathBuf {
        self.resolve(&self.settings.rules.sla_path)
    }
}

/// What loading found: the settings (as far as they could be read) and every problem.
#[derive(Debug)]
pub struct Report {
    /// The settings, with every key that had a problem left at its default; `None` when the
    /// file could not be read or parsed at all.
    pub loaded: Option<Loaded>,
    /// Every problem of the file and the environment, located.
    pub problems: Diagnostics,
    /// Dotted keys (`rules.path`) whose value was refused.
    pub refused: Vec<String>,
    /// Dotted keys set in the environment (`LEADSYNC__RULES__PATH` gives `rules.path`).
    pub from_env: Vec<String>,
}

impl Report {
    /// Nothing read, nothing configured (commands given every file by flags).
    pub fn empty() -> Report {
        Report {
            loaded: None,
            problems: Diagnostics::default(),
            refused: Vec::new(),
            from_env: Vec::new(),
        }
    }

    /// True when `key` (dotted) was configured: in a configuration file that was read, or in
    /// the environment. Only then must a file it names exist.
    pub fn configured(&self, key: &str) -> bool {
        self.loaded.as_ref().is_some_and(|l| l.file.is_some()) || self.from_env.iter().any(|k| k == key)
    }

    /// Settings when there was no problem.
    pub fn into_result(self) -> Result<Loaded, Diagnostics> {
        match self.loaded {
            Some(l) if self.problems.is_empty() => Ok(l),
            _ => Err(self.problems),
        }
    }
}

/// Keys whose values are secrets: always text, never shown in a message.
const SECRET_KEYS: [&str; 5] = [
    "hubspot.client_secret",
    "hubspot.refresh_token",
    "hubspot.private_app_token",
    "salesforce.client_secret",
    "salesforce.refresh_token",
];

/// Loads `file` (when given; `leadsync.toml` in the current folder when present otherwise) and
/// the environment, then checks the result.
pub fn load(file: Option<&Path>) -> Result<Loaded, Diagnostics> {
    load_with_env(file, std::env::vars())
}

/// [`load`] with the environment passed in (tests).
pub fn load_with_env(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded, Diagnostics> {
    report_with_env(file, env).into_result()
}

/// Every problem of the file and the environment at once, each located: a key of the file by
/// its line and column, a variable of the environment by its name.
pub fn report(file: Option<&Path>) -> Report {
    report_with_env(file, std::env::vars())
}

/// Where each key was set.
#[derive(Default)]
struct Places {
    src: Option<SourceText>,
    /// Dotted key (`hubspot`, `hubspot.burst_per_10s`) → byte offset in the file.
    offsets: std::collections::BTreeMap<String, usize>,
    /// Dotted key → the environment variable that set it.
    env: std::collections::BTreeMap<String, String>,
}

impl Places {
    /// A diagnostic about `field` (dotted), placed where it was set.
    fn diagnostic(&self, origin: &Path, field: &str, message: String) -> Diagnostic {
        if let Some(var) = self.env.get(field) {
            return env_problem(var, &format!("{field}: {message}"));
        }
        // `hubspot.x` not in the file: point at its section, else at the file.
        let mut key = field;
        loop {
            if let (Some(src), Some(at)) = (&self.src, self.offsets.get(key)) {
                return src.error(*at..*at, field, message);
            }
            match key.rfind('.') {
                Some(i) => key = &key[..i],
                None => break,
            }
        }
        Diagnostic {
            file: origin.to_path_buf(),
            line: 0,
            column: 0,
            field: field.to_string(),
            message,
        }
    }
}

/// [`report`] with the environment passed in (tests).
pub fn report_with_env(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Report {
    let default = Path::new("leadsync.toml");
    let path = file.or_else(|| default.exists().then_some(default));
    let mut places = Places::default();
    let failed = |problems: Diagnostics| Report {
        loaded: None,
        problems,
        refused: Vec::new(),
        from_env: Vec::new(),
    };
    let (mut table, origin) = match path {
        Some(p) => {
            let src = match SourceText::read(p) {
                Ok(s) => s,
                Err(mut d) => {
                    if !p.exists() {
                        let looked = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
                        d.0[0].message = format!(
                            "no such configuration file (looked for {}); `leadsync init DIR` writes one, \
                             or point at another with --config FILE or LEADSYNC_CONFIG",
                            looked.display()
                        );
                    }
                    return failed(d);
                }
            };
            let table = match src.parse_toml::<toml::Table>() {
                Ok(t) => t,
                Err(d) => return failed(d),
            };
            places.offsets = key_offsets(src.text());
            places.src = Some(src);
            (table, p.to_path_buf())
        }
        None => (toml::Table::new(), PathBuf::from("(defaults)")),
    };
    let mut problems = Vec::new();
    // Environment values stay raw until their key's type is known: a secret that looks like a
    // number is still text.
    let mut raw_env = Vec::new();
    for (key, value) in env {
        let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let parts: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if parts.len() != 2 || parts.iter().any(String::is_empty) {
            problems.push(env_problem(&key, "expected LEADSYNC__SECTION__KEY"));
            continue;
        }
        let section = table
            .entry(parts[0].clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match section.as_table_mut() {
            Some(t) => {
                t.insert(parts[1].clone(), toml::Value::String(value.clone()));
                let dotted = format!("{}.{}", parts[0], parts[1]);
                places.env.insert(dotted.clone(), key);
                raw_env.push((dotted, value));
            }
            None => problems.push(env_problem(&key, &format!("`{}` is not a section", parts[0]))),
        }
    }
    // `[[portals]]` apart: each entry is checked, key by key, once the top-level sections it
    // lays itself over are known.
    let portal_entries = table.remove("portals");
    // Each key on its own, so one refused value hides nothing else.
    let mut refused = Vec::new();
    let sections: Vec<String> = table.keys().cloned().collect();
    for section in sections {
        let keys: Vec<String> = match table.get(&section) {
            Some(toml::Value::Table(t)) if !t.is_empty() => t.keys().cloned().collect(),
            Some(toml::Value::Table(_)) => Vec::new(),
            _ => vec![String::new()],
        };
        if keys.is_empty() {
            if let Err(m) = accepts(&section, None) {
                problems.push(places.diagnostic(&origin, &section, m));
                table.remove(&section);
            }
            continue;
        }
        for key in keys {
            let dotted = if key.is_empty() {
                section.clone()
            } else {
                format!("{section}.{key}")
            };
            let secret = SECRET_KEYS.contains(&dotted.as_str());
            let value = if key.is_empty() {
                table.get(&section).cloned()
            } else {
                table.get(&section).and_then(|s| s.get(&key)).cloned()
            };
            let Some(value) = value else { continue };
            let result = if key.is_empty() {
                accepts(&section, None).and(Err(format!("`{section}` must be a section ([{section}])")))
            } else if let Some((_, raw)) = raw_env.iter().find(|(k, _)| *k == dotted) {
                // Text first; a number or a boolean only when the key takes one.
                match accepts(&section, Some((&key, toml::Value::String(raw.clone())))) {
                    Ok(()) => Ok(None),
                    Err(first) => {
                        let typed = env_value(raw);
                        match accepts(&section, Some((&key, typed.clone()))) {
                            Ok(()) => Ok(Some(typed)),
                            Err(_) => Err(first),
                        }
                    }
                }
            } else {
                accepts(&section, Some((&key, value))).map(|()| None)
            };
            match result {
                Ok(Some(typed)) => {
                    if let Some(t) = table.get_mut(&section).and_then(|s| s.as_table_mut()) {
                        t.insert(key.clone(), typed);
                    }
                }
                Ok(None) => {}
                Err(message) => {
                    let message = if secret {
                        "must be text in quotes (the value is not shown: it is a secret)".to_string()
                    } else {
                        message
                    };
                    problems.push(places.diagnostic(&origin, &dotted, message));
                    refused.push(dotted.clone());
                    if key.is_empty() {
                        table.remove(&section);
                    } else if let Some(t) = table.get_mut(&section).and_then(|s| s.as_table_mut()) {
                        t.remove(&key);
                    }
                }
            }
        }
        // An unknown section whose every key was refused (and reported) goes too: left empty,
        // it would fail the whole file again below, with no line and no key.
        let emptied = table
            .get(&section)
            .and_then(|s| s.as_table())
            .is_some_and(|t| t.is_empty());
        if emptied && accepts(&section, None).is_err() {
            table.remove(&section);
        }
    }
    let mut settings: Settings = match table.clone().try_into() {
        Ok(s) => s,
        Err(e) => {
            // Every key was accepted on its own; a refusal here is about their combination.
            problems.push(places.diagnostic(&origin, "", e.message().trim().to_string()));
            return Report {
                loaded: None,
                problems: Diagnostics(problems),
                refused,
                from_env: places.env.keys().cloned().collect(),
            };
        }
    };
    for d in settings.check(&origin).0 {
        // With `[[portals]]`, the top-level OAuth keys may be the app's half (client id and
        // secret) of each portal's whole: each portal is checked with them below.
        if refused.contains(&d.field) || (portal_entries.is_some() && d.field == "hubspot") {
            continue;
        }
        problems.push(places.diagnostic(&origin, &d.field, d.message));
    }
    if let Some(entries) = portal_entries {
        settings.portals = compile_portals(&table, &entries, &places, &origin, &mut problems);
    }
    if let Some(max) = settings.replicas.max_portals_per_replica.filter(|m| *m > 0) {
        // SQLite serves one replica: no other could take the portals beyond this one's cap.
        let sqlite: Vec<String> = settings
            .portals
            .iter()
            .filter(|p| !p.store.url.starts_with("postgres"))
            .map(|p| p.hubspot.portal_id.map_or_else(|| "?".to_string(), |id| id.to_string()))
            .collect();
        if max < settings.portals.len() && !sqlite.is_empty() {
            problems.push(places.diagnostic(
                &origin,
                "replicas.max_portals_per_replica",
                format!(
                    "is {max}, below the {} portals of this file, and portal(s) {} keep their store in SQLite, which \
                     serves one replica: no other replica could take the portals beyond the cap; raise it to {} or \
                     more, remove it, or give every portal a PostgreSQL store",
                    settings.portals.len(),
                    sqlite.join(", "),
                    settings.portals.len()
                ),
            ));
        }
    }
    let mut problems = Diagnostics(problems);
    problems.sort();
    Report {
        loaded: Some(Loaded {
            settings,
            file: path.map(Path::to_path_buf),
        }),
        problems,
        refused,
        from_env: places.env.keys().cloned().collect(),
    }
}

/// The sections a `[[portals]]` entry may set; the others (`server`, `replicas`, `log`) are
/// the deployment's.
pub const PORTAL_SECTIONS: [&str; 5] = ["hubspot", "salesforce", "rules", "schedule", "store"];

/// `[[portals]]` compiled: each entry's sections laid over the top-level ones (`base`, the
/// file and the environment as accepted), then checked as a whole file would be, and across
/// portals: every portal names its HubSpot portal id (webhooks are routed by it), once; has
/// HubSpot credentials; and a store of its own. Every problem goes to `problems`, located at
/// the portal's key (`portals[1].hubspot.portal_id`).
fn compile_portals(
    base: &toml::Table,
    entries: &toml::Value,
    places: &Places,
    origin: &Path,
    problems: &mut Vec<Diagnostic>,
) -> Vec<Settings> {
    let Some(entries) = entries.as_array() else {
        problems.push(places.diagnostic(
            origin,
            "portals",
            "must be an array of tables: one `[[portals]]` header per portal".into(),
        ));
        return Vec::new();
    };
    let mut compiled: Vec<(usize, Settings)> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("portals[{i}]");
        let Some(entry) = entry.as_table() else {
            problems.push(places.diagnostic(origin, &at, "must be a table (`[[portals]]`)".into()));
            continue;
        };
        let mut merged = base.clone();
        let mut own: Vec<String> = Vec::new();
        for (section, value) in entry {
            let field = format!("{at}.{section}");
            if !PORTAL_SECTIONS.contains(&section.as_str()) {
                problems.push(places.diagnostic(
                    origin,
                    &field,
                    format!(
                        "`{section}` cannot be set per portal: a portal sets {}; the other sections are the deployment's",
                        PORTAL_SECTIONS.join(", ")
                    ),
                ));
                continue;
            }
            let Some(keys) = value.as_table() else {
                problems.push(places.diagnostic(origin, &field, format!("must be a section ([portals.{section}])")));
                continue;
            };
            own.push(section.clone());
            for (key, v) in keys {
                let dotted = format!("{section}.{key}");
                match accepts(section, Some((key, v.clone()))) {
                    Ok(()) => {
                        if let Some(t) = merged
                            .entry(section.clone())
                            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                            .as_table_mut()
                        {
                            t.insert(key.clone(), v.clone());
                        }
                        own.push(dotted);
                    }
                    Err(message) => {
                        let message = if SECRET_KEYS.contains(&dotted.as_str()) {
                            "must be text in quotes (the value is not shown: it is a secret)".to_string()
                        } else {
                            message
                        };
                        problems.push(places.diagnostic(origin, &format!("{at}.{dotted}"), message));
                    }
                }
            }
        }
        let settings: Settings = match merged.try_into() {
            Ok(s) => s,
            Err(e) => {
                problems.push(places.diagnostic(origin, &at, e.message().trim().to_string()));
                continue;
            }
        };
        // What the portal set itself is reported at its key; what it inherits, at the top level
        // (once, by the file's own check).
        for d in settings.check(origin).0 {
            if own.contains(&d.field) {
                problems.push(places.diagnostic(origin, &format!("{at}.{}", d.field), d.message));
            }
        }
        compiled.push((i, settings));
    }
    let mut seen_ids: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
    let mut seen_stores: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for (i, s) in &compiled {
        let at = format!("portals[{i}]");
        let h = &s.hubspot;
        match h.portal_id {
            None => problems.push(places.diagnostic(
                origin,
                &format!("{at}.hubspot.portal_id"),
                "every portal needs its HubSpot portal id: webhooks are routed to a portal by it".into(),
            )),
            Some(id) => {
                if let Some(first) = seen_ids.insert(id, *i) {
                    seen_ids.insert(id, first);
                    problems.push(places.diagnostic(
                        origin,
                        &format!("{at}.hubspot.portal_id"),
                        format!("portal {id} is also portals[{first}]: each HubSpot portal once"),
                    ));
                }
            }
        }
        let oauth = h.client_id.is_some() && h.client_secret.is_some() && h.refresh_token.is_some();
        if h.private_app_token.is_none() && !oauth {
            problems.push(places.diagnostic(
                origin,
                &format!("{at}.hubspot"),
                format!(
                    "portal {} has no HubSpot credentials: set private_app_token, or client_id, client_secret and refresh_token, in [portals.hubspot] (or at the top level for every portal)",
                    h.portal_id.map_or_else(|| "without an id".to_string(), |p| p.to_string())
                ),
            ));
        }
        if let Some(first) = seen_stores.get(&s.store.url) {
            problems.push(places.diagnostic(
                origin,
                &format!("{at}.store.url"),
                format!(
                    "`{}` is also portals[{first}]'s store: each portal needs its own (another SQLite file, or \
                     another PostgreSQL database)",
                    crate::store::redact_url(&s.store.url)
                ),
            ));
        } else {
            seen_stores.insert(s.store.url.clone(), *i);
        }
    }
    compiled.into_iter().map(|(_, s)| s).collect()
}

/// Whether `[section]` alone, or with one `key = value`, deserializes: an unknown section or
/// key, or a value of the wrong type, is refused with serde's words.
fn accepts(section: &str, entry: Option<(&str, toml::Value)>) -> Result<(), String> {
    let mut inner = toml::Table::new();
    if let Some((k, v)) = entry {
        inner.insert(k.to_string(), v);
    }
    let mut outer = toml::Table::new();
    outer.insert(section.to_string(), toml::Value::Table(inner));
    outer
        .try_into::<Settings>()
        .map(|_| ())
        .map_err(|e| e.message().trim().to_string())
}

/// Byte offsets of each section and key of a TOML text (`hubspot`, `hubspot.burst_per_10s`).
fn key_offsets(text: &str) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(doc) = toml::de::DeTable::parse(text) else {
        return out;
    };
    for (k, v) in doc.get_ref() {
        out.insert(k.get_ref().to_string(), k.span().start);
        match v.get_ref() {
            toml::de::DeValue::Table(t) => {
                for (ik, _) in t {
                    out.insert(format!("{}.{}", k.get_ref(), ik.get_ref()), ik.span().start);
                }
            }
            // `[[portals]]`: `portals[1]`, `portals[1].hubspot`, `portals[1].hubspot.portal_id`.
            toml::de::DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let toml::de::DeValue::Table(t) = item.get_ref() else {
                        continue;
                    };
                    let at = format!("{}[{i}]", k.get_ref());
                    let first = t.iter().map(|(sk, _)| sk.span().start).min();
                    out.insert(at.clone(), first.unwrap_or(item.span().start));
                    for (sk, sv) in t {
                        out.insert(format!("{at}.{}", sk.get_ref()), sk.span().start);
                        if let toml::de::DeValue::Table(st) = sv.get_ref() {
                            for (ik, _) in st {
                                out.insert(format!("{at}.{}.{}", sk.get_ref(), ik.get_ref()), ik.span().start);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// An environment value as TOML when it parses as a scalar (`80`, `true`), else as text.
fn env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !v.is_table() && !v.is_array())
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn env_problem(key: &str, message: &str) -> Diagnostic {
    Diagnostic {
        file: PathBuf::from("(environment)"),
        line: 0,
        column: 0,
        field: key.to_string(),
        message: message.to_string(),
    }
}

/// Why a cron expression is refused, asked of the parser `leadsync run` schedules with.
pub fn cron_problem(expr: &str) -> Option<String> {
    tokio_cron_scheduler::Job::new(expr, |_, _| {})
        .err()
        .map(|e| format!("`{expr}` is not a cron expression (sec min hour day month weekday): {e}"))
}

impl Settings {
    /// Every semantic problem, at once.
    pub fn check(&self, origin: &Path) -> Diagnostics {
        let mut d = Vec::new();
        let mut bad = |field: &str, message: String| {
            d.push(Diagnostic {
                file: origin.to_path_buf(),
                line: 0,
                column: 0,
                field: field.to_string(),
                message,
            })
        };
        for (field, url) in [
            ("hubspot.api_base_url", &self.hubspot.api_base_url),
            ("hubspot.token_url", &self.hubspot.token_url),
            ("salesforce.login_url", &self.salesforce.login_url),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                bad(field, format!("`{url}` is not an http(s) URL"));
            }
        }
        if self.replicas.max_portals_per_replica == Some(0) {
            bad(
                "replicas.max_portals_per_replica",
                "is 0: a replica would hold no portal's lease and do no work; set 1 or more, or remove the key for no cap".into(),
            );
        }
        if let Some(u) = &self.server.public_base_url {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                bad("server.public_base_url", format!("`{u}` is not an http(s) URL"));
            }
        }
        let h = &self.hubspot;
        let oauth = [
            h.client_id.is_some(),
            h.client_secret.is_some(),
            h.refresh_token.is_some(),
        ];
        if oauth.iter().any(|x| *x) && !oauth.iter().all(|x| *x) && h.private_app_token.is_none() {
            bad(
                "hubspot",
                "OAuth needs client_id, client_secret and refresh_token together (or use private_app_token)".into(),
            );
        }
        if h.burst_per_10s == 0 {
            bad("hubspot.burst_per_10s", "must be 1 or more".into());
        }
        if h.search_per_second == 0 || h.search_per_second > 5 {
            bad(
                "hubspot.search_per_second",
                format!("{} is out of range 1..=5 (HubSpot allows 5)", h.search_per_second),
            );
        }
        if self.salesforce.daily_share_percent == 0 || self.salesforce.daily_share_percent > 100 {
            bad("salesforce.daily_share_percent", "must be within 1..=100".into());
        }
        if !self.salesforce.api_version.starts_with('v') {
            bad(
                "salesforce.api_version",
                format!("`{}` should look like v62.0", self.salesforce.api_version),
            );
        }
        let url = &self.store.url;
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            bad(
                "store.url",
                format!(
                    "`{}` is neither sqlite:// nor postgres://: write sqlite://leadsync.db or \
                     postgres://user@host/db (here or as LEADSYNC__STORE__URL), then run `leadsync check`",
                    crate::store::redact_url(url)
                ),
            );
        }
        if self.server.bind.parse::<SocketAddr>().is_err() {
            bad(
                "server.bind",
                format!("`{}` is not an address such as 127.0.0.1:8080", self.server.bind),
            );
        }
        if let Some(t) = &self.server.status_token {
            let len = t.expose_secret().chars().count();
            if len < 24 {
                // The length only: the token itself never appears in a message.
                bad(
                    "server.status_token",
                    format!("is {len} characters long; use at least 24 (e.g. `openssl rand -hex 16`)"),
                );
            }
        }
        if self.server.max_body_bytes < 1024 {
            bad("server.max_body_bytes", "must be at least 1024".into());
        }
        for (field, secs) in [
            ("server.header_timeout_secs", self.server.header_timeout_secs),
            ("server.request_timeout_secs", self.server.request_timeout_secs),
        ] {
            if !(1..=300).contains(&secs) {
                bad(field, format!("{secs} is out of range 1..=300 (seconds)"));
            }
        }
        if !(1..=65_536).contains(&self.server.max_connections) {
            bad(
                "server.max_connections",
                format!("{} is out of range 1..=65536", self.server.max_connections),
            );
        }
        if !(1..=3650).contains(&self.store.inbox_retention_days) {
            bad(
                "store.inbox_retention_days",
                format!(
                    "{} is out of range 1..=3650 (HubSpot redelivers for a day: keep at least that)",
                    self.store.inbox_retention_days
                ),
            );
        }
        for (field, expr) in [
            ("schedule.sync", &self.schedule.sync),
            ("schedule.rescore", &self.schedule.rescore),
            ("schedule.sla", &self.schedule.sla),
            ("schedule.opportunities", &self.schedule.opportunities),
        ] {
            if let Some(problem) = cron_problem(expr) {
                bad(field, problem);
            }
        }
        Diagnostics(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_valid() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("leadsync.toml");
        std::fs::write(&p, "").unwrap();
        let l = load_with_env(Some(&p), env(&[])).unwrap();
        assert_eq!(l.settings.hubspot.burst_per_10s, 80);
        assert_eq!(l.rules_path(), dir.path().join("mappings/lifecycle.toml"));
    }

    #[test]
    fn environment_overrides_the_file_and_secrets_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("leadsync.toml");
        std::fs::write(&p, "[hubspot]\nburst_per_10s = 50\n").unwrap();
        let l = load_with_env(
            Some(&p),
            env(&[
                ("LEADSYNC__HUBSPOT__BURST_PER_10S", "70"),
                ("LEADSYNC__HUBSPOT__PRIVATE_APP_TOKEN", "pat-na1-secret"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(l.settings.hubspot.burst_per_10s, 70);
        let token = l.settings.hubspot.private_app_token.as_ref().unwrap();
        assert_eq!(token.expose_secret(), "pat-na1-secret");
        assert!(!format!("{:?}", l.settings).contains("pat-na1-secret"));
    }

    #[test]
    fn file_errors_are_located_and_all_semantic_errors_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("leadsync.toml");
        std::fs::write(&p, "[store]\nurl = 'mysql://x'\n[server]\nbind = 'nowhere'\n").unwrap();
        let err = load_with_env(Some(&p), env(&[])).unwrap_err();
        assert_eq!(err.len(), 2, "{err}");
        std::fs::write(&p, "[store]\nurl = \n").unwrap();
        let err = load_with_env(Some(&p), env(&[])).unwrap_err();
        assert_eq!(err.0[0].line, 2, "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_env_names_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("leadsync.toml");
        std::fs::write(&p, "[hubspot]\nburst = 5\n").unwrap();
        assert!(
            load_with_env(Some(&p), env(&[]))
                .unwrap_err()
                .to_string()
                .contains("burst")
        );
        std::fs::write(&p, "").unwrap();
        let err = load_with_env(Some(&p), env(&[("LEADSYNC__HUBSPOT", "x")])).unwrap_err();
        assert!(err.to_string().contains("LEADSYNC__SECTION__KEY"), "{err}");
    }

    #[test]
    fn every_problem_of_the_file_at_once_each_with_its_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("leadsync.toml");
        std::fs::write(
            &p,
            "[hubspot]\nburst_per_10s = \"fast\"\nburst = 5\nsearch_per_second = 9\n[store]\nurl = \"mysql://x\"\n\
             [server]\nbind = \"nowhere\"\n[schedule]\nsync = \"99 99 99 * * *\"\n",
        )
        .unwrap();
        let err = load_with_env(Some(&p), env(&[])).unwrap_err();
        let lines: Vec<usize> = err.0.iter().map(|d| d.line).collect();
        assert_eq!(lines, [2, 3, 4, 6, 8, 10], "one per problem, in file order:\n{err}");
        let text = err.to_string();
        for want in [
            "leadsync.toml:2:1: hubspot.burst_per_10s:",
            "leadsync.toml:3:1: hubspot.burst: unknown field `burst`",
            "leadsync.toml:4:1: hubspot.search_per_second:",
            "leadsync.toml:6:1: store.url:",
            "leadsync.toml:8:1: server.bind:",
            "leadsync.toml:10:1: schedule.sync: `99 99 99 * * *` is not a cron expression",
        ] {
            assert!(text.contains(want), "{want}\n{text}");
        }
    }

    // README (Status page): "leadsync check refuses a short server.status_token, never printing it"
    #[test]
    fn a_short_status_token_is_refused_without_being_shown_and_a_long_one_is_kept_secret() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("leadsync.toml");
        std::fs::write(
            &p,
            "[server]\nbind = \"0.0.0.0:8080\"\nstatus_token = \"short-secret\"\n",
        )
        .unwrap();
        let text = load_with_env(Some(&p), env(&[])).unwrap_err().to_string();
        assert!(
            text.contains("leadsync.toml:3:1: server.status_token: is 12 characters long"),
            "{text}"
        );
        assert!(!text.contains("short-secret"), "{text}");
        let long = "a-status-token-of-32-characters!";
        std::fs::write(&p, format!("[server]\nstatus_token = \"{long}\"\n")).unwrap();
        let loaded = load_with_env(Some(&p), env(&[])).unwrap();
        let token = loaded.settings.server.status_token.as_ref().unwrap();
        assert_eq!(token.expose_secret(), long);
        assert!(!format!("{:?}", loaded.settings).contains(long), "Debug redacts it");
    }

    #[test]
    fn a_cap_of_no_portal_per_replica_is_refused_where_it_is_written_and_a_cap_of_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("leadsync.toml");
        std::fs::write(&p, "[replicas]\nlease_seconds = 15\nmax_portals_per_replica = 0\n").unwrap();
        let text = load_with_env(Some(&p), env(&[])).unwrap_err().to_string();
        assert!(
            text.contains("leadsync.toml:3:1: replicas.max_portals_per_replica: is 0"),
            "{text}"
        );
        std::fs::write(&p, "[replicas]\nmax_portals_per_replica = 1\n").unwrap();
        let loaded = load_with_env(Some(&p), env(&[])).unwrap();
        assert_eq!(loaded.settings.replicas.max_portals_per_replica, Some(1));
        assert_eq!(ReplicaSettings::default().max_portals_per_replica, None);
        // Two portals on SQLite: a cap of one would leave one portal to no replica.
        let portals = "[hubspot]\nprivate_app_token = \"pat-x\"\n\
                       [[portals]]\n[portals.hubspot]\nportal_id = 42\n[portals.store]\nurl = \"sqlite://a.db\"\n\
                       [[portals]]\n[portals.hubspot]\nportal_id = 43\n[portals.store]\nurl = \"sqlite://b.db\"\n";
        std::fs::write(&p, format!("[replicas]\nmax_portals_per_replica = 1\n{portals}")).unwrap();
        let text = load_with_env(Some(&p), env(&[])).unwrap_err().to_string();
        assert!(
            text.contains("leadsync.toml:2:1: replicas.max_portals_per_replica: is 1, below the 2 portals")
                && text.contains("portal(s) 42, 43 keep their store in SQLite"),
            "{text}"
        );
        std::fs::write(&p, format!("[replicas]\nmax_portals_per_replica = 2\n{portals}")).unwrap();
        assert_eq!(load_with_env(Some(&p), env(&[])).unwrap().settings.portals.len(), 2);
    }

    #[test]
    fn cron_is_checked_by_the_scheduler_s_own_parser() {
        assert!(cron_problem("0 */5 * * * *").is_none());
        assert!(cron_problem("99 99 99 * * *").is_some());
        assert!(cron_problem("0 61 * * * *").is_some(), "a minute past 59");
        let d = ScheduleSettings::default();
        for expr in [&d.sync, &d.rescore, &d.sla, &d.opportunities] {
            assert_eq!(cron_problem(expr), None, "{expr}");
        }
    }

    #[test]
    fn a_secret_that_looks_like_a_number_is_text_and_never_shown_in_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("leadsync.toml");
        std::fs::write(&p, "").unwrap();
        let l = load_with_env(
            Some(&p),
            env(&[
                ("LEADSYNC__SALESFORCE__CLIENT_SECRET", "8923749823749823749"),
                ("LEADSYNC__HUBSPOT__BURST_PER_10S", "70"),
                ("LEADSYNC__HUBSPOT__EVENT_ANALYTICS", "true"),
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let secret = l.settings.salesforce.client_secret.as_ref().unwrap();
        assert_eq!(secret.expose_secret(), "8923749823749823749");
        assert_eq!(l.settings.hubspot.burst_per_10s, 70, "numbers still become numbers");
        assert!(l.settings.hubspot.event_analytics);

        std::fs::write(&p, "[salesforce]\nclient_secret = 8923749823749823749\n").unwrap();
        let err = load_with_env(Some(&p), env(&[])).unwrap_err().to_string();
        assert!(err.contains("leadsync.toml:2:1: salesforce.client_secret:"), "{err}");
        assert!(!err.contains("8923749823749823749"), "{err}");
    }

    #[test]
    fn server_limits_and_inbox_retention_default_and_are_range_checked_where_they_are_set() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("leadsync.toml");
        std::fs::write(&p, "").unwrap();
        let l = load_with_env(Some(&p), env(&[])).unwrap();
        let limits = l.settings.server.limits();
        assert_eq!(limits.header_read_timeout, std::time::Duration::from_secs(10));
        assert_eq!(limits.request_timeout, std::time::Duration::from_secs(10));
        assert_eq!(limits.max_connections, 512);
        assert_eq!(l.settings.store.inbox_retention(), chrono::Duration::days(7));

        std::fs::write(
            &p,
            "[store]\ninbox_retention_days = 30\n[server]\nheader_timeout_secs = 3\n\
             request_timeout_secs = 4\nmax_connections = 64\n",
        )
        .unwrap();
        let l = load_with_env(Some(&p), env(&[])).unwrap_or_else(|e| panic!("{e}"));
        let limits = l.settings.server.limits();
        assert_eq!(limits.header_read_timeout, std::time::Duration::from_secs(3));
        assert_eq!(limits.request_timeout, std::time::Duration::from_secs(4));
        assert_eq!(limits.max_connections, 64);
        assert_eq!(l.settings.store.inbox_retention(), chrono::Duration::days(30));

        std::fs::write(
            &p,
            "[store]\ninbox_retention_days = 0\n[server]\nbind = \"127.0.0.1:8080\"\n\
             max_connections = 0\nrequest_timeout_secs = 0\n",
        )
        .unwrap();
        let err = load_with_env(Some(&p), env(&[])).unwrap_err();
        let text = err.to_string();
        for want in [
            "leadsync.toml:2:1: store.inbox_retention_days: 0 is out of range",
            "leadsync.toml:5:1: server.max_connections: 0 is out of range 1..=65536",
            "leadsync.toml:6:1: server.request_timeout_secs: 0 is out of range 1..=300",
        ] {
            assert!(text.contains(want), "{want}\n{text}");
        }
        assert_eq!(err.len(), 3, "{err}");

        let err = load_with_env(None, env(&[("LEADSYNC__SERVER__HEADER_TIMEOUT_SECS", "0")])).unwrap_err();
        assert_eq!(err.0[0].field, "LEADSYNC__SERVER__HEADER_TIMEOUT_SECS", "{err}");
    }

    #[test]
    fn an_environment_value_that_is_refused_names_its_variable() {
        let err = load_with_env(None, env(&[("LEADSYNC__HUBSPOT__BURST_PER_10S", "many")])).unwrap_err();
        assert_eq!(err.0[0].field, "LEADSYNC__HUBSPOT__BURST_PER_10S", "{err}");
    }
}
