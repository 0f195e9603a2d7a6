//! `leadsync.toml`, layered with `LEADSYNC__SECTION__KEY` environment variables.
//!
//! Two phases: the file is read into a TOML table (syntax errors located by line and column),
//! environment variables are laid over it, and the result deserializes into [`Settings`], whose
//! every field has a documented default. [`Settings::check`] then reports every semantic problem
//! at once. Secrets are `SecretString`s: they print as `[REDACTED]`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use crate::diagnostics::{Diagnostic, Diagnostics, SourceText};

/// Prefix of the environment variables that override the file.
pub const ENV_PREFIX: &str = "LEADSYNC__";

/// The whole configuration.
#[derive(Debug, Deserialize, Default)]
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
    /// The HTTP server (webhooks, health, metrics).
    pub server: ServerSettings,
}

/// `[rules]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesSettings {
    /// Rules file; relative paths are resolved from the configuration file's folder.
    /// Default `mappings/lifecycle.toml`.
    pub path: PathBuf,
}

impl Default for RulesSettings {
    fn default() -> Self {
        Self {
            path: PathBuf::from("mappings/lifecycle.toml"),
        }
    }
}

/// `[hubspot]`
#[derive(Debug, Deserialize)]
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
            event_analytics: false,
            email_events: false,
        }
    }
}

/// `[salesforce]`
#[derive(Debug, Deserialize)]
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `sqlite://FILE` (default `sqlite://leadsync.db`) or `postgres://…`.
    pub url: String,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://leadsync.db".into(),
        }
    }
}

/// `[schedule]`: cron expressions with seconds (`sec min hour day month weekday`).
#[derive(Debug, Deserialize)]
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

/// `[server]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub bind: String,
    /// The public URL HubSpot calls (a proxy may sit in front); webhook signatures are checked
    /// against it. Default: none (the request's own URL).
    pub public_base_url: Option<String>,
    /// Largest webhook body accepted, in bytes. Default 1 MiB.
    pub max_body_bytes: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            public_base_url: None,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// Settings and the file they came from.
#[derive(Debug)]
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

    /// The rules file to use.
    pub fn rules_path(&self) -> PathBuf {
        self.resolve(&self.settings.rules.path)
    }
}

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
    let default = Path::new("leadsync.toml");
    let path = file.or_else(|| default.exists().then_some(default));
    let (mut table, origin) = match path {
        Some(p) => {
            let src = SourceText::read(p)?;
            (src.parse_toml::<toml::Table>()?, p.to_path_buf())
        }
        None => (toml::Table::new(), PathBuf::from("(defaults)")),
    };
    let mut applied = Vec::new();
    let mut problems = Vec::new();
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
                t.insert(parts[1].clone(), env_value(&value));
                applied.push(key);
            }
            None => problems.push(env_problem(&key, &format!("`{}` is not a section", parts[0]))),
        }
    }
    let settings: Settings = match table.try_into() {
        Ok(s) => s,
        Err(e) => {
            let via = if applied.is_empty() {
                String::new()
            } else {
                format!(" (after applying {})", applied.join(", "))
            };
            problems.push(Diagnostic {
                file: origin.clone(),
                line: 0,
                column: 0,
                field: String::new(),
                message: format!("{}{via}", e.message().trim()),
            });
            return Err(Diagnostics(problems));
        }
    };
    let loaded = Loaded {
        settings,
        file: path.map(Path::to_path_buf),
    };
    problems.extend(loaded.settings.check(&origin).0);
    Diagnostics(problems).into_result(loaded)
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
            bad("store.url", format!("`{url}` is neither sqlite:// nor postgres://"));
        }
        if self.server.bind.parse::<SocketAddr>().is_err() {
            bad(
                "server.bind",
                format!("`{}` is not an address such as 127.0.0.1:8080", self.server.bind),
            );
        }
        if self.server.max_body_bytes < 1024 {
            bad("server.max_body_bytes", "must be at least 1024".into());
        }
        for (field, expr) in [
            ("schedule.sync", &self.schedule.sync),
            ("schedule.rescore", &self.schedule.rescore),
            ("schedule.sla", &self.schedule.sla),
            ("schedule.opportunities", &self.schedule.opportunities),
        ] {
            let n = expr.split_whitespace().count();
            if !(6..=7).contains(&n) {
                bad(
                    field,
                    format!("`{expr}` has {n} fields; write sec min hour day month weekday"),
                );
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
}
