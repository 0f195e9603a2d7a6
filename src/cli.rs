//! The `leadsync` subcommands. Each returns the process exit code: 0 success, 1 a failed check
//! (a rules test case that does not hold) or a failed call, 2 bad input (configuration, rules,
//! snapshot, missing credentials).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, NaiveDate, Utc};

use crate::config;
use crate::defaults::{self, Origin, Want};
use crate::diagnostics::Diagnostics;
use crate::hubspot::auth::HubSpotAuth;
use crate::hubspot::client::{HubSpotClient, HubSpotClientConfig, HubSpotError};
use crate::hubspot::properties::GROUP;
use crate::lifecycle::{Rules, cases, evaluate, explain};
use crate::logging::{self, Level, LogFormat};
use crate::salesforce::auth::SalesforceAuth;
use crate::salesforce::client::{SalesforceClient, SalesforceClientConfig};
use crate::salesforce::mapping::SalesforceMapping;

/// Output format of `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Words for people.
    Text,
    /// The whole decision as JSON.
    Json,
}

/// Exit code for bad input.
const BAD_INPUT: u8 = 2;

fn report(d: &Diagnostics) -> ExitCode {
    eprintln!("{d}");
    eprintln!("{} problem(s) found", d.len());
    ExitCode::from(BAD_INPUT)
}

/// Which rules file a command asks for: `--rules` (it must exist); else the configuration's
/// `rules.path` when a configuration file was read or `LEADSYNC__RULES__PATH` is set (it must
/// exist); else `./mappings/lifecycle.toml` when present, else the embedded default.
fn rules_want(report: &config::Report, flag: Option<&Path>) -> Want {
    if let Some(r) = flag {
        return Want::Configured {
            path: r.to_path_buf(),
            how: "--rules".into(),
        };
    }
    let path = report
        .loaded
        .as_ref()
        .map_or_else(|| PathBuf::from("mappings/lifecycle.toml"), config::Loaded::rules_path);
    if report.configured("rules.path") {
        Want::Configured {
            path,
            how: "rules.path".into(),
        }
    } else {
        Want::Default(path)
    }
}

/// The same choice for the Salesforce mapping (`salesforce.mapping_path`).
fn mapping_want(report: &config::Report) -> Want {
    let path = report.loaded.as_ref().map_or_else(
        || PathBuf::from("mappings/salesforce.toml"),
        |l| l.resolve(&l.settings.salesforce.mapping_path),
    );
    if report.configured("salesforce.mapping_path") {
        Want::Configured {
            path,
            how: "salesforce.mapping_path".into(),
        }
    } else {
        Want::Default(path)
    }
}

/// The rules for `explain` and `test-rules`: `--rules` alone needs no configuration.
fn rules_for(config_file: Option<&Path>, flag: Option<&Path>) -> Result<(Rules, Origin), Diagnostics> {
    if flag.is_some() {
        return defaults::rules(&rules_want(&config::Report::empty(), flag));
    }
    let report = config::report(config_file);
    if !report.problems.is_empty() {
        return Err(report.problems);
    }
    defaults::rules(&rules_want(&report, None))
}

/// `leadsync check [--online]`: validates the configuration, the rules and the Salesforce
/// mapping, printing every problem of every file at once; `--online` also compares the mapping
/// with the org. With no configuration at all, it validates the embedded defaults and says so.
pub fn check(config_file: Option<&Path>, online: bool) -> ExitCode {
    let report = config::report(config_file);
    if let Some(loaded) = report.loaded.as_ref().filter(|l| !l.settings.portals.is_empty()) {
        let loaded = loaded.clone();
        return check_portals(&loaded, report.problems, online);
    }
    let mut problems = report.problems.clone();
    let mut notes = Vec::new();
    let mut rules = None;
    let mut mapping = None;
    let mut sla = None;
    if report.loaded.is_none() {
        notes.push("rules and Salesforce mapping not checked: the configuration could not be read".to_string());
    } else {
        if report.refused.iter().any(|k| k == "rules.path") {
            notes.push("rules not checked: rules.path was refused".into());
        } else {
            match defaults::rules(&rules_want(&report, None)) {
                Ok(r) => rules = Some(r),
                Err(d) => problems.extend(d),
            }
        }
        if report.refused.iter().any(|k| k == "salesforce.mapping_path") {
            notes.push("Salesforce mapping not checked: salesforce.mapping_path was refused".into());
        } else {
            match defaults::mapping(&mapping_want(&report)) {
                Ok(m) => mapping = Some(m),
                Err(d) => problems.extend(d),
            }
        }
        // The sales SLA: `rules.sla_path` (`mappings/sla.toml` beside the configuration), else
        // the embedded default.
        let sla_path = report
            .loaded
            .as_ref()
            .map_or_else(|| PathBuf::from("mappings/sla.toml"), config::Loaded::sla_path);
        match defaults::sla(&Want::Default(sla_path)) {
            Ok((f, origin)) => {
                // Checked against the rules: a sales rejection the rules cannot take at a
                // policy's stage would never recycle its lead.
                if let Some((r, _)) = &rules {
                    let at = r.sales_rejection.as_ref().map_or(&[][..], |x| &x.applies_at[..]);
                    problems.extend(f.rejections_outside(at));
                }
                sla = Some((f.version, origin));
            }
            Err(d) => problems.extend(d),
        }
    }
    if !problems.is_empty() {
        for n in &notes {
            eprintln!("{n}");
        }
        return self::report(&problems);
    }
    let Some(loaded) = report.loaded else {
        return self::report(&problems);
    };
    println!(
        "configuration: ok ({})",
        loaded
            .file
            .as_ref()
            .map_or("no file: the defaults and the environment".into(), |f| f
                .display()
                .to_string())
    );
    if let Some((r, origin)) = &rules {
        println!("rules: ok — {origin} version {}", r.stamp());
        if let Some(d) = &r.description {
            println!("  {d}");
        }
    }
    if let Some((_, origin)) = &mapping {
        println!("salesforce mapping: ok — {origin}");
    }
    if let Some((version, origin)) = &sla {
        println!("sales SLA: ok — {origin} version {version}");
    }
    let embedded = [
        rules.as_ref().map(|r| &r.1),
        mapping.as_ref().map(|m| &m.1),
        sla.as_ref().map(|s| &s.1),
    ]
    .into_iter()
    .flatten()
    .any(|o| *o == Origin::Embedded);
    if embedded {
        println!(
            "note: `leadsync run` and `backfill` read files, not the embedded defaults: `leadsync init DIR` writes them with a configuration"
        );
    }
    if online && let Some((r, _)) = &rules {
        check_enumerations(&loaded, r);
    }
    match (online, mapping) {
        (true, Some((mapping, origin))) => check_online(&loaded, &mapping, &origin.to_string(), None),
        _ => ExitCode::SUCCESS,
    }
}

/// The files one kind of check reads (rules, mapping or SLA), each once however many portals
/// name it, with the portals that do.
struct Shared<T> {
    files: Vec<(T, Vec<usize>)>,
}

impl<T: PartialEq> Shared<T> {
    fn of(keys: impl IntoIterator<Item = T>) -> Shared<T> {
        let mut files: Vec<(T, Vec<usize>)> = Vec::new();
        for (i, key) in keys.into_iter().enumerate() {
            match files.iter_mut().find(|(k, _)| *k == key) {
                Some((_, users)) => users.push(i),
                None => files.push((key, vec![i])),
            }
        }
        Shared { files }
    }

    /// Each file read once by `load` (given it and its first user): what it gave, or `None`
    /// with its problems added to `problems`, said to concern every portal that reads it.
    fn load<V>(
        &self,
        ids: &[String],
        problems: &mut Diagnostics,
        load: impl Fn(&T, usize) -> Result<V, Diagnostics>,
    ) -> Vec<Option<V>> {
        self.files
            .iter()
            .map(|(key, users)| match load(key, users[0]) {
                Ok(v) => Some(v),
                Err(d) => {
                    problems.extend(for_portals(d, &portal_names(ids, users)));
                    None
                }
            })
            .collect()
    }
}

/// `portal 42` or `portals 42, 43`: who a problem concerns.
fn portal_names(ids: &[String], users: &[usize]) -> String {
    let named: Vec<&str> = users.iter().map(|&i| ids[i].as_str()).collect();
    match named.as_slice() {
        [one] => format!("portal {one}"),
        _ => format!("portals {}", named.join(", ")),
    }
}

/// Each problem of a file said to concern the portals that read it.
fn for_portals(found: Diagnostics, who: &str) -> Diagnostics {
    Diagnostics(
        found
            .0
            .into_iter()
            .map(|mut d| {
                d.message = format!("{} ({who})", d.message);
                d
            })
            .collect(),
    )
}

/// `check` of a file with `[[portals]]`: every portal's rules, Salesforce mapping and SLA
/// (each file read once, its problems naming the portals that read it, at its file and line),
/// each SLA against the rules of the portals that pair them; `--online` then compares each
/// portal's rules and mapping with its own portal and org.
fn check_portals(loaded: &config::Loaded, mut problems: Diagnostics, online: bool) -> ExitCode {
    let portals = loaded.portals();
    let ids: Vec<String> = portals
        .iter()
        .map(|p| {
            p.settings
                .hubspot
                .portal_id
                .map_or_else(|| "?".into(), |id| id.to_string())
        })
        .collect();
    // A file with `[[portals]]` was read: the files it names must exist (as `rules_want` says
    // of a single-portal file); the SLA falls back to the embedded default, as `run` reads it.
    let rules_files = Shared::of(portals.iter().map(config::Loaded::rules_path));
    let mapping_files = Shared::of(portals.iter().map(|p| p.resolve(&p.settings.salesforce.mapping_path)));
    let sla_files = Shared::of(portals.iter().map(config::Loaded::sla_path));
    let rules = rules_files.load(&ids, &mut problems, |path, first| {
        defaults::rules(&Want::Configured {
            path: path.clone(),
            how: format!("portals[{first}].rules.path"),
        })
    });
    let mappings = mapping_files.load(&ids, &mut problems, |path, first| {
        defaults::mapping(&Want::Configured {
            path: path.clone(),
            how: format!("portals[{first}].salesforce.mapping_path"),
        })
    });
    let slas = sla_files.load(&ids, &mut problems, |path, _| {
        defaults::sla(&Want::Default(path.clone()))
    });
    let file_of = |files: &Shared<PathBuf>, portal: usize| {
        files
            .files
            .iter()
            .position(|(_, users)| users.contains(&portal))
            .expect("every portal reads one file of each kind")
    };
    let per_portal: Vec<(usize, usize, usize)> = (0..portals.len())
        .map(|i| {
            (
                file_of(&rules_files, i),
                file_of(&mapping_files, i),
                file_of(&sla_files, i),
            )
        })
        .collect();
    // Each SLA against the rules it is paired with: a sales rejection the rules cannot take at
    // a policy's stage would never recycle its lead.
    for (pair, users) in Shared::of(per_portal.iter().map(|&(r, _, s)| (r, s))).files {
        let (Some((r, _)), Some((f, _))) = (&rules[pair.0], &slas[pair.1]) else {
            continue;
        };
        let at = r.sales_rejection.as_ref().map_or(&[][..], |x| &x.applies_at[..]);
        problems.extend(for_portals(f.rejections_outside(at), &portal_names(&ids, &users)));
    }
    if !problems.is_empty() {
        problems.sort();
        return self::report(&problems);
    }
    println!(
        "configuration: ok ({}, {} portals)",
        loaded
            .file
            .as_ref()
            .map_or_else(|| "no file".into(), |f| f.display().to_string()),
        portals.len()
    );
    let mut code = ExitCode::SUCCESS;
    for (i, &(r, m, s)) in per_portal.iter().enumerate() {
        let (Some((rules, r_origin)), Some((mapping, m_origin)), Some((sla, s_origin))) =
            (&rules[r], &mappings[m], &slas[s])
        else {
            continue;
        };
        println!("== portal {} ==", ids[i]);
        println!("rules: ok — {r_origin} version {}", rules.stamp());
        println!("salesforce mapping: ok — {m_origin}");
        println!("sales SLA: ok — {s_origin} version {}", sla.version);
        if online {
            check_enumerations(&portals[i], rules);
            let portal = format!("portal {}", ids[i]);
            if check_online(&portals[i], mapping, &m_origin.to_string(), Some(&portal)) != ExitCode::SUCCESS {
                code = ExitCode::from(BAD_INPUT);
            }
        }
    }
    code
}

/// Warns about rules values the portal's enumeration properties do not offer (one call: the
/// contact property definitions). A warning, not a failure: the portal may add the option later.
fn check_enumerations(loaded: &config::Loaded, rules: &Rules) {
    let hs = &loaded.settings.hubspot;
    let client = HubSpotAuth::from_settings(hs)
        .map_err(|e| e.to_string())
        .and_then(|auth| {
            let cfg = HubSpotClientConfig::from_settings(hs).map_err(|e| e.to_string())?;
            HubSpotClient::new(cfg, auth).map_err(|e| e.to_string())
        });
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hubspot: rules values not compared with the portal: {e}");
            return;
        }
    };
    let rt = match runtime() {
        Ok(r) => r,
        Err(_) => return,
    };
    let definitions =
        match rt.block_on(client.property_definitions("contacts", crate::hubspot::limiter::Priority::RealTime)) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("hubspot: rules values not compared with the portal: {e}");
                return;
            }
        };
    let options: std::collections::HashMap<String, Vec<String>> = definitions
        .into_iter()
        .filter(|d| d.kind == "enumeration" && !d.options.is_empty())
        .map(|d| {
            let values = d.options.into_iter().flat_map(|o| [o.value, o.label]).collect();
            (d.name, values)
        })
        .collect();
    let warnings = rules.enumeration_warnings(&options);
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if warnings.is_empty() {
        println!("rules: every listed value is an option of its HubSpot property");
    } else {
        eprintln!("{} rules value(s) the portal's properties do not offer", warnings.len());
    }
}

/// Which Salesforce fields are leadsync's (kept current) and which are sales' (written once).
fn print_ownership(mapping: &SalesforceMapping, path: &str) {
    use crate::salesforce::describe::SalesforceFieldOwner;
    for (owner, title) in [
        (
            SalesforceFieldOwner::Leadsync,
            "leadsync's fields (kept current after promotion; sales' edits to them are replaced):",
        ),
        (
            SalesforceFieldOwner::Sales,
            "sales' fields (written once at promotion, never after):",
        ),
    ] {
        println!("{title}");
        for (object, field, _, line) in mapping.ownership().into_iter().filter(|f| f.2 == owner) {
            println!("  {object}.{field}  ({path}:{line})");
        }
    }
}

/// The mapping against the org's describe results. With several portals, `portal` (`portal
/// 43`) ends each problem, as the offline problems end: one mapping file may serve several
/// portals, each checked against its own org.
fn check_online(loaded: &config::Loaded, mapping: &SalesforceMapping, path: &str, portal: Option<&str>) -> ExitCode {
    let of = portal.map_or_else(String::new, |p| format!(" ({p})"));
    let rt = match runtime() {
        Ok(r) => r,
        Err(c) => return c,
    };
    let s = &loaded.settings.salesforce;
    let client = match SalesforceAuth::from_settings(s)
        .map_err(|e| e.to_string())
        .and_then(|a| SalesforceClient::new(SalesforceClientConfig::from_settings(s), a).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("salesforce: {e}{of}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    let found = rt.block_on(mapping.check_online(&client));
    print_ownership(mapping, path);
    if found.is_empty() {
        println!("salesforce mapping: matches the org");
        return ExitCode::SUCCESS;
    }
    for p in &found {
        eprintln!("{path}: {p}{of}");
    }
    match portal {
        Some(p) => eprintln!("{} problem(s) found against the org of {p}", found.len()),
        None => eprintln!("{} problem(s) found against the org", found.len()),
    }
    ExitCode::from(BAD_INPUT)
}

/// `leadsync explain`: the decision for one snapshot, and why.
pub fn explain(
    config_file: Option<&Path>,
    snapshot: &Path,
    at: Option<&str>,
    rules: Option<&Path>,
    format: Format,
) -> ExitCode {
    let (rules, origin) = match rules_for(config_file, rules) {
        Ok(r) => r,
        Err(d) => return report(&d),
    };
    let snap = match cases::load_snapshot(snapshot) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    let now = match at.map(parse_time).transpose() {
        Ok(t) => t.unwrap_or_else(Utc::now),
        Err(e) => {
            eprintln!("--at: {e}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    let decision = evaluate(&rules, &snap, now);
    match format {
        Format::Text => {
            print!("{}", explain::render_text(&decision));
            println!("\nrules in use: {origin} version {}", rules.stamp());
        }
        Format::Json => match serde_json::to_string_pretty(&decision) {
            Ok(j) => {
                println!("{j}");
                eprintln!("rules in use: {origin} version {}", rules.stamp());
            }
            Err(e) => {
                eprintln!("cannot encode the decision: {e}");
                return ExitCode::FAILURE;
            }
        },
    }
    ExitCode::SUCCESS
}

/// `leadsync explain --contact ID`: a stored contact, its owner and why ("why this rep"), and
/// its SLA timers, from an existing store; exit 2 when the id is not a contact id or the store
/// does not hold it.
pub fn explain_contact(config_file: Option<&Path>, contact: &str) -> ExitCode {
    let id = match crate::lifecycle::HubSpotId::try_from(contact.to_string()) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("--contact: {e}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    let (loaded, rt) = match (loaded(config_file), runtime()) {
        (Ok(l), Ok(r)) => (l, r),
        (Err(c), _) | (_, Err(c)) => return c,
    };
    let sla = match defaults::sla(&Want::Default(loaded.sla_path())) {
        Ok((f, _)) => f,
        Err(d) => return report(&d),
    };
    let result = rt.block_on(async {
        let store = crate::daemon::store(&loaded, crate::daemon::StoreOpening::MustExist).await?;
        let Some(text) = crate::report::contact(&store, &id).await? else {
            return Ok::<_, anyhow::Error>(None);
        };
        Ok(Some(format!(
            "{text}\n{}",
            crate::report::sla_timers(&store, &sla, id.as_str()).await?
        )))
    });
    match result {
        Ok(Some(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!("contact {id} is not in the store");
            ExitCode::from(BAD_INPUT)
        }
        Err(e) => failed(&e, "explain"),
    }
}

/// `leadsync test-rules DIR`: runs rule authors' cases; exit 1 when any does not hold.
pub fn test_rules(config_file: Option<&Path>, dir: &Path, rules: Option<&Path>) -> ExitCode {
    let (rules, origin) = match rules_for(config_file, rules) {
        Ok(r) => r,
        Err(d) => return report(&d),
    };
    let results = match cases::run_dir(&rules, dir) {
        Ok(r) => r,
        Err(d) => return report(&d),
    };
    let failed = results.iter().filter(|r| !r.mismatches.is_empty()).count();
    for r in &results {
        if r.mismatches.is_empty() {
            println!("ok    {}  {}", r.name, r.location);
        } else {
            println!("FAIL  {}  {}", r.name, r.location);
            for m in &r.mismatches {
                println!("        {m}");
            }
            println!("        decision: {}", r.headline);
        }
    }
    println!(
        "rules {} ({origin}): {} passed, {} failed",
        rules.stamp(),
        results.len() - failed,
        failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `leadsync setup [--apply]`: the HubSpot properties leadsync writes; without `--apply`, only the plan.
pub fn setup(config_file: Option<&Path>, apply: bool) -> ExitCode {
    let (loaded, rules) = match loaded(config_file).and_then(|l| {
        let want = Want::Configured {
            path: l.rules_path(),
            how: "rules.path".into(),
        };
        defaults::rules(&want).map(|(r, _)| (l, r)).map_err(|d| report(&d))
    }) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let hs = &loaded.settings.hubspot;
    let client = match HubSpotAuth::from_settings(hs)
        .map_err(|e| e.to_string())
        .and_then(|auth| {
            let cfg = HubSpotClientConfig::from_settings(hs).map_err(|e| format!("hubspot.api_base_url: {e}"))?;
            HubSpotClient::new(cfg, auth).map_err(|e| e.to_string())
        }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{}", credentials_hint(&loaded));
            return ExitCode::from(BAD_INPUT);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let plan = client.plan_setup(&rules).await?;
        if plan.create_group {
            println!("create property group `{GROUP}`");
        }
        for p in &plan.create {
            println!("create contact property {} ({} / {})", p.name, p.kind, p.field_type);
        }
        for c in &plan.conflicts {
            println!("conflict: {c}");
        }
        println!(
            "{} to create, {} already in place, {} in conflict",
            plan.create.len(),
            plan.present,
            plan.conflicts.len()
        );
        if apply {
            client.apply_setup(&plan).await?;
            println!("applied");
        } else if !plan.create.is_empty() {
            println!("dry run: run `leadsync setup --apply` to create them");
        }
        Ok::<_, HubSpotError>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `2026-11-24T09:00:00Z`, or a bare date meaning midnight UTC.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
        })
        .map_err(|_| format!("`{s}` is not a time (write 2026-11-24T09:00:00Z or 2026-11-24)"))
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

/// The configuration of one portal, for the commands that work on one (`backfill`, `setup`,
/// `retry`, `report`, …): the file's own, or with `[[portals]]` the one `LEADSYNC_PORTAL` names.
fn loaded(config_file: Option<&Path>) -> Result<config::Loaded, ExitCode> {
    let deployment = deployment(config_file)?;
    one_portal(&deployment, std::env::var("LEADSYNC_PORTAL").ok().as_deref()).map_err(|why| {
        eprintln!("leadsync: {why}");
        ExitCode::from(BAD_INPUT)
    })
}

/// The whole configuration, every portal (`run`, `status`).
fn deployment(config_file: Option<&Path>) -> Result<config::Loaded, ExitCode> {
    config::load(config_file).map_err(|d| report(&d))
}

/// The portal `chosen` names (`LEADSYNC_PORTAL`) among the configuration's; the configuration
/// itself when it has no `[[portals]]` and nothing is chosen.
fn one_portal(loaded: &config::Loaded, chosen: Option<&str>) -> Result<config::Loaded, String> {
    let portals = loaded.portals();
    let ids: Vec<String> = portals
        .iter()
        .map(|p| {
            p.settings
                .hubspot
                .portal_id
                .map_or_else(|| "(none)".into(), |id| id.to_string())
        })
        .collect();
    match chosen.map(str::trim) {
        None | Some("") if portals.len() == 1 => Ok(portals.into_iter().next().unwrap_or_else(|| loaded.clone())),
        None | Some("") => Err(format!(
            "this configuration has {} portals ([[portals]]) and this command works on one: name it with \
             LEADSYNC_PORTAL=ID (one of {})",
            portals.len(),
            ids.join(", ")
        )),
        Some(id) => portals
            .into_iter()
            .find(|p| p.settings.hubspot.portal_id.is_some_and(|p| p.to_string() == id))
            .ok_or_else(|| {
                format!(
                    "LEADSYNC_PORTAL={id}: no such portal in this configuration (its portals: {})",
                    ids.join(", ")
                )
            }),
    }
}

/// What to do when HubSpot credentials are missing, ending with the command that fixes it.
fn credentials_hint(loaded: &config::Loaded) -> String {
    match &loaded.file {
        None => {
            let here = std::path::absolute("leadsync.toml").unwrap_or_else(|_| PathBuf::from("leadsync.toml"));
            format!(
                "no configuration file (looked for {}): write one with `leadsync init .`, set \
                 LEADSYNC__HUBSPOT__PRIVATE_APP_TOKEN=pat-… (or the OAuth trio), then run `leadsync check`",
                here.display()
            )
        }
        Some(f) => format!(
            "set hubspot.private_app_token (or client_id, client_secret and refresh_token) in {} or as \
             LEADSYNC__HUBSPOT__PRIVATE_APP_TOKEN=pat-…, then run `leadsync check`",
            f.display()
        ),
    }
}

/// What `run` and `backfill` need before they start: HubSpot credentials and the files the
/// configuration names (never a silent fallback to the embedded defaults).
fn preflight(loaded: &config::Loaded) -> Result<(), ExitCode> {
    if let Err(e) = HubSpotAuth::from_settings(&loaded.settings.hubspot) {
        eprintln!("leadsync: hubspot: {e}");
        eprintln!("{}", credentials_hint(loaded));
        return Err(ExitCode::from(BAD_INPUT));
    }
    let mut missing = Diagnostics::default();
    let rules = loaded.rules_path();
    if !rules.exists() {
        missing.extend(defaults::missing(&rules, "rules.path", "LEADSYNC__RULES__PATH"));
    }
    let mapping = loaded.resolve(&loaded.settings.salesforce.mapping_path);
    if loaded.settings.salesforce.client_id.is_some() && !mapping.exists() {
        missing.extend(defaults::missing(
            &mapping,
            "salesforce.mapping_path",
            "LEADSYNC__SALESFORCE__MAPPING_PATH",
        ));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(report(&missing))
    }
}

/// How `run` logs: `--log-format` when given, else the configuration's `[log] format`
/// (`LEADSYNC__LOG__FORMAT`); INFO by default, raised by each `-v`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogOptions {
    /// Times `-v` was given.
    pub verbose: u8,
    /// `--log-format`, when given.
    pub format: Option<LogFormat>,
}

/// What to run when the configured store does not exist, for the command that refused it;
/// `None` when `e` is another failure.
fn missing_store_hint(e: &anyhow::Error, command: &str) -> Option<String> {
    match e.downcast_ref::<crate::store::StoreError>()? {
        crate::store::StoreError::Missing { .. } => Some(format!(
            "`leadsync {command}` never creates a store. A first start: `leadsync run --init-store` \
             creates it and starts the daemon, or `leadsync backfill` creates it and brings the \
             portal in. Otherwise the store was moved or deleted: restore it, or point store.url \
             (LEADSYNC__STORE__URL) at it."
        )),
        _ => None,
    }
}

/// The exit code and message of a command's failure: bad input (2) with what to run when the
/// store is missing, else 1.
fn failed(e: &anyhow::Error, command: &str) -> ExitCode {
    eprintln!("leadsync: {e:#}");
    match missing_store_hint(e, command) {
        Some(hint) => {
            eprintln!("{hint}");
            ExitCode::from(BAD_INPUT)
        }
        None => ExitCode::FAILURE,
    }
}

/// `leadsync run`: the daemon (webhook server, schedules, inbox workers) until Ctrl-C or SIGTERM.
/// The store must exist unless `init_store` (a first start): a deleted SQLite file or an empty
/// database is refused rather than silently replaced by an empty store.
pub fn run(config_file: Option<&Path>, log: LogOptions, init_store: bool) -> ExitCode {
    let (loaded, rt) = match (deployment(config_file), runtime()) {
        (Ok(l), Ok(r)) => (l, r),
        (Err(c), _) | (_, Err(c)) => return c,
    };
    logging::init(
        Level::Info,
        log.verbose,
        log.format.unwrap_or(loaded.settings.log.format),
    );
    for portal in loaded.portals() {
        if let Err(c) = preflight(&portal) {
            return c;
        }
    }
    let opening = if init_store {
        crate::daemon::StoreOpening::CreateIfMissing
    } else {
        crate::daemon::StoreOpening::MustExist
    };
    let result = rt.block_on(async {
        let portals = crate::daemon::portal_syncers(&loaded, opening).await?;
        crate::daemon::run(&loaded, portals, crate::daemon::stop_on_signals()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failed(&e, "run"),
    }
}

/// `leadsync init [DIR]`: a commented `leadsync.toml` and the shipped mapping files (rules,
/// Salesforce mapping, sales SLA), never over existing ones, then the next three commands.
pub fn init(dir: &Path) -> ExitCode {
    match defaults::write_into(dir) {
        Ok(written) => {
            for p in &written {
                println!("wrote {}", p.display());
            }
            let config = if dir == Path::new(".") {
                String::new()
            } else {
                format!(" --config {}", dir.join("leadsync.toml").display())
            };
            println!(
                "\nnext: set the HubSpot credentials (LEADSYNC__HUBSPOT__PRIVATE_APP_TOKEN=pat-…, or in the file), then"
            );
            for (command, why) in [
                ("check", "the configuration, the rules, the mapping and the SLA"),
                ("setup --apply", "the HubSpot properties leadsync writes"),
                (
                    "backfill --dry-run",
                    "what the first backfill would change, and its cost",
                ),
            ] {
                let line = format!("leadsync {command}{config}");
                println!("  {line:<64} # {why}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("leadsync init: {e}");
            ExitCode::from(BAD_INPUT)
        }
    }
}

/// What `leadsync backfill` was asked.
#[derive(Debug, Clone, Default)]
pub struct BackfillArgs {
    /// Only contacts modified since (RFC 3339 or a date).
    pub since: Option<String>,
    /// At most this many contacts.
    pub limit: Option<u64>,
    /// Write nothing; print what would change and what it would cost.
    pub dry_run: bool,
    /// Re-evaluate from the store, no HubSpot read.
    pub rescore: bool,
    /// Discard the saved checkpoint and start from the first page.
    pub restart: bool,
}

/// `leadsync backfill`: every contact, resumable; or `--rescore` from the store.
pub fn backfill(config_file: Option<&Path>, args: &BackfillArgs) -> ExitCode {
    let since = match args.since.as_deref().map(parse_time).transpose() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("--since: {e}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    let (loaded, rt) = match (loaded(config_file), runtime()) {
        (Ok(l), Ok(r)) => (l, r),
        (Err(c), _) | (_, Err(c)) => return c,
    };
    if let Err(c) = preflight(&loaded) {
        return c;
    }
    let result = rt.block_on(async {
        // A backfill is how a new portal comes in: it creates the store on its first run.
        let syncer = crate::daemon::syncer_opening(&loaded, crate::daemon::StoreOpening::CreateIfMissing).await?;
        let now = Utc::now();
        if args.rescore {
            let r = if args.dry_run {
                syncer.rescore(now, true).await?
            } else {
                // A one-shot command: the outbox worker runs beside the rescore, as in the daemon.
                let (mut r, carried_out) = syncer.with_outbox_worker(now, syncer.rescore(now, false)).await?;
                r.add(&carried_out);
                r
            };
            print_report(&r, args.dry_run);
            return Ok::<_, anyhow::Error>(());
        }
        let opts = crate::sync::backfill::BackfillOptions {
            since,
            limit: args.limit,
            dry_run: args.dry_run,
            block: None,
            restart: args.restart,
        };
        let progress = crate::sync::backfill::Progress::new();
        let hs = syncer.hubspot.clone();
        let (r, costs) = syncer
            .backfill(&opts, now, |r, cp| progress.update(r, cp, hs.stats().total()))
            .await?;
        progress.finish();
        print_report(&r, args.dry_run);
        println!("HubSpot calls spent: {}", syncer.hubspot.stats().total());
        if args.dry_run {
            println!(
                "would cost: {} HubSpot write call(s), about {} Salesforce call(s)",
                costs.hubspot_writes, costs.salesforce_calls
            );
        }
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leadsync: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_report(r: &crate::sync::SyncReport, dry_run: bool) {
    let verb = if dry_run { "would move" } else { "moved" };
    println!("{} contact(s) read, {} evaluated", r.pulled, r.evaluated);
    for (k, n) in &r.moves {
        println!("  {verb} to {k}: {n}");
    }
    if dry_run {
        println!("  Salesforce promotions it would make: {}", r.promotions_queued);
    } else {
        println!(
            "{} contact(s) written to HubSpot, {} promoted to Salesforce",
            r.written, r.promoted
        );
    }
}

/// `leadsync status`: the funnel, the outbox, dead letters and the review list. Reads an
/// existing store only: run in the wrong folder it creates nothing, and says what would.
/// With `contact`, that contact's stage, status and audit trail instead.
pub fn status(config_file: Option<&Path>, contact: Option<&str>) -> ExitCode {
    let contact = match contact
        .map(|c| crate::lifecycle::HubSpotId::try_from(c.to_string()))
        .transpose()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("--contact: {e}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    let (loaded, rt) = match (deployment(config_file), runtime()) {
        (Ok(l), Ok(r)) => (l, r),
        (Err(c), _) | (_, Err(c)) => return c,
    };
    // Every portal, each under its id, unless `LEADSYNC_PORTAL` names one.
    let portals = match std::env::var("LEADSYNC_PORTAL") {
        Ok(id) => match one_portal(&loaded, Some(&id)) {
            Ok(p) => vec![p],
            Err(why) => {
                eprintln!("leadsync: {why}");
                return ExitCode::from(BAD_INPUT);
            }
        },
        Err(_) => loaded.portals(),
    };
    let several = portals.len() > 1;
    let result = rt.block_on(async {
        for portal in &portals {
            if several {
                let id = portal.settings.hubspot.portal_id.unwrap_or_default();
                println!("== portal {id} ==");
            }
            let store = crate::daemon::store(portal, crate::daemon::StoreOpening::MustExist).await?;
            match &contact {
                Some(id) => print!("{}", crate::report::contact_trail(&store, id).await?),
                None => print!("{}", crate::report::status(&store).await?),
            }
        }
        Ok::<_, anyhow::Error>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failed(&e, "status"),
    }
}

/// `leadsync retry`: dead letters and dead inbox events back in their queues, once their cause
/// is fixed; prints each one put back (or, with `dry_run`, each one it would put back).
pub fn retry(
    config_file: Option<&Path>,
    kind: Option<crate::report::RetryKind>,
    id: Option<i64>,
    dry_run: bool,
) -> ExitCode {
    let (loaded, rt) = match (loaded(config_file), runtime()) {
        (Ok(l), Ok(r)) => (l, r),
        (Err(c), _) | (_, Err(c)) => return c,
    };
    let result = rt.block_on(async {
        let store = crate::daemon::store(&loaded, crate::daemon::StoreOpening::MustExist).await?;
        print!("{}", crate::report::retry(&store, kind, id, dry_run, Utc::now()).await?);
        Ok::<_, anyhow::Error>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failed(&e, "retry"),
    }
}

/// `leadsync demo`: the whole product against the built-in sandbox on the embedded store.
pub fn demo(opts: crate::demo::DemoOptions) -> ExitCode {
    let rt = match runtime() {
        Ok(r) => r,
        Err(c) => return c,
    };
    let result = rt.block_on(async {
        let stop = crate::daemon::stop_on_signals();
        crate::demo::run(opts, stop).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leadsync demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A share of calls, 0 to 1, as a `--fault-…` flag takes it.
fn share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!("{s:?} is not a share between 0 and 1 (0.2 is 20 %)")),
    }
}

/// `leadsync sandbox`'s fault flags: the knobs of [`crate::sandbox::SandboxConfig`]'s fault
/// fields (`--seed` seeds them, with the portal).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SandboxFaultFlags {
    /// Share of API calls answered 5xx (0 to 1).
    #[arg(long = "fault-5xx", value_name = "SHARE", value_parser = share, default_value_t = 0.0)]
    pub fault_5xx: f64,
    /// Share of API calls that hang for --timeout-hang, then answer 504 (0 to 1).
    #[arg(long, value_name = "SHARE", value_parser = share, default_value_t = 0.0)]
    pub fault_timeout: f64,
    /// How long a timed-out call hangs, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 35)]
    pub timeout_hang: u64,
    /// Share of writes applied, then answered 5xx, their answer lost (0 to 1).
    #[arg(long, value_name = "SHARE", value_parser = share, default_value_t = 0.0)]
    pub fault_lost: f64,
    /// A 429 burst every this many seconds (every call refused inside it); 0: none.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub burst_every: u64,
    /// Length of each 429 burst, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 2)]
    pub burst_length: u64,
    /// Lifetime of HubSpot access tokens and Salesforce sessions, in seconds (default 30 min and 2 h).
    #[arg(long, value_name = "SECONDS")]
    pub token_ttl: Option<u64>,
    /// Share of webhook deliveries sent twice (0 to 1).
    #[arg(long, value_name = "SHARE", value_parser = share, default_value_t = 0.0)]
    pub webhook_duplicate: f64,
    /// Share of webhook deliveries whose events are reversed and held back up to a second (0 to 1).
    #[arg(long, value_name = "SHARE", value_parser = share, default_value_t = 0.0)]
    pub webhook_reorder: f64,
}

impl SandboxFaultFlags {
    /// `config` with these faults; refused, naming both flags, when 5xx and timeouts together
    /// are more than every call.
    pub fn apply(&self, config: crate::sandbox::SandboxConfig) -> Result<crate::sandbox::SandboxConfig, String> {
        if self.fault_5xx + self.fault_timeout > 1.0 {
            return Err(format!(
                "--fault-5xx {} and --fault-timeout {} add up to more than every call",
                self.fault_5xx, self.fault_timeout
            ));
        }
        let secs = std::time::Duration::from_secs;
        let mut c = crate::sandbox::SandboxConfig {
            fault_rate_5xx: self.fault_5xx,
            fault_rate_timeout: self.fault_timeout,
            timeout_hang: secs(self.timeout_hang),
            fault_rate_lost: self.fault_lost,
            rate_limit_burst_every: secs(self.burst_every),
            rate_limit_burst_length: secs(self.burst_length),
            webhook_duplicate_rate: self.webhook_duplicate,
            webhook_reorder_rate: self.webhook_reorder,
            ..config
        };
        if let Some(ttl) = self.token_ttl {
            c.hubspot_token_lifetime = secs(ttl);
            c.salesforce_session_lifetime = secs(ttl);
        }
        Ok(c)
    }
}

/// `leadsync sandbox`: the fake HubSpot and Salesforce alone, for a daemon run by hand.
pub fn sandbox(contacts: u32, seed: u64, webhook_url: Option<String>, faults: &SandboxFaultFlags) -> ExitCode {
    let config = faults.apply(crate::sandbox::SandboxConfig {
        contacts,
        seed,
        companies: (contacts / 8).max(10),
        now: Utc::now(),
        webhook_url,
        ..crate::sandbox::SandboxConfig::default()
    });
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("leadsync sandbox: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match runtime() {
        Ok(r) => r,
        Err(c) => return c,
    };
    let result = rt.block_on(async {
        let handle = crate::sandbox::Sandbox::start(config).await?;
        let c = handle.config();
        println!(
            "HubSpot     {} (token {})",
            handle.hubspot_base_url(),
            handle.hubspot_token_url()
        );
        println!("Salesforce  {}", handle.salesforce_login_url());
        println!("\nPoint leadsync at it (the sandbox's own test credentials, not secrets):");
        println!("LEADSYNC__HUBSPOT__API_BASE_URL={}", handle.hubspot_base_url());
        println!("LEADSYNC__HUBSPOT__TOKEN_URL={}", handle.hubspot_token_url());
        println!("LEADSYNC__HUBSPOT__CLIENT_ID={}", c.hubspot_client_id);
        println!("LEADSYNC__HUBSPOT__CLIENT_SECRET={}", c.hubspot_client_secret);
        println!("LEADSYNC__HUBSPOT__REFRESH_TOKEN={}", c.hubspot_refresh_token);
        println!("LEADSYNC__SALESFORCE__LOGIN_URL={}", handle.salesforce_login_url());
        println!("LEADSYNC__SALESFORCE__CLIENT_ID={}", c.salesforce_client_id);
        println!("LEADSYNC__SALESFORCE__CLIENT_SECRET={}", c.salesforce_client_secret);
        println!("LEADSYNC__SALESFORCE__REFRESH_TOKEN={}", c.salesforce_refresh_token);
        println!("\nserving until Ctrl-C");
        let mut stop = crate::daemon::stop_on_signals();
        let _ = stop.wait_for(|s| *s).await;
        handle.shutdown().await;
        Ok::<_, anyhow::Error>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leadsync sandbox: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `leadsync bench --chaos`: a fault-free run and a chaos run of the daemon, compared; exits 1
/// on any difference.
pub fn bench_chaos(opts: crate::chaos::ChaosOptions) -> ExitCode {
    let rt = match runtime() {
        Ok(r) => r,
        Err(c) => return c,
    };
    match rt.block_on(crate::chaos::run(&opts)) {
        Ok(report) => {
            print!("{}", report.render());
            if report.differences.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("leadsync bench --chaos: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What `leadsync report` is asked for.
#[derive(Debug, Clone)]
pub struct ReportArgs {
    /// Start (default: the first day of last month).
    pub from: Option<DateTime<Utc>>,
    /// End, exclusive (default: the first day of this month).
    pub to: Option<DateTime<Utc>>,
    /// Split by.
    pub by: Option<crate::report::figures::GroupBy>,
    /// Output format.
    pub format: crate::report::format::ReportFormat,
    /// A candidate rules file: the period replayed under it beside the current rules.
    pub compare_rules: Option<PathBuf>,
}

/// `leadsync report`: the figures of a period (default the last calendar month) from the store;
/// with `--compare-rules NEW.toml`, the period replayed under the current rules and the
/// candidate, side by side, and what deploying the candidate would change and cost.
pub fn report_cmd(config_file: Option<&Path>, args: &ReportArgs, now: DateTime<Utc>) -> ExitCode {
    let (loaded, rt) = match (loaded(config_file), runtime()) {
        (Ok(l), Ok(r)) => (l, r),
        (Err(c), _) | (_, Err(c)) => return c,
    };
    let (default_from, default_to) = crate::report::figures::last_month(now);
    let (from, to) = (args.from.unwrap_or(default_from), args.to.unwrap_or(default_to));
    // The marketing targets: the SLA file (`rules.sla_path`), else the embedded default.
    let sla = match defaults::sla(&Want::Default(loaded.sla_path())) {
        Ok((f, _)) => f,
        Err(d) => return self::report(&d),
    };
    // The candidate is compiled as `check` compiles rules: every problem with its file and line.
    let rules = match &args.compare_rules {
        Some(path) => {
            let want = Want::Configured {
                path: path.clone(),
                how: "--compare-rules".into(),
            };
            match rules_for(config_file, None).and_then(|(current, _)| Ok((current, defaults::rules(&want)?.0))) {
                Ok(pair) => Some(pair),
                Err(d) => return self::report(&d),
            }
        }
        None => None,
    };
    let result = rt.block_on(async {
        let store = crate::daemon::store(&loaded, crate::daemon::StoreOpening::MustExist).await?;
        Ok::<_, anyhow::Error>(match &rules {
            Some((current, candidate)) => {
                crate::report::compare_rules(&store, current, candidate, &sla, from, to, args.by, now)
                    .await
                    .map(|c| crate::report::compare_format::render(&c, args.format))
            }
            None => crate::report::report(&store, from, to, args.by, &sla.marketing, args.format).await,
        })
    });
    match result {
        Ok(Ok(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Err(
            e @ (crate::report::figures::ReportError::CannotGroup { .. }
            | crate::report::figures::ReportError::EmptyPeriod { .. }),
        )) => {
            eprintln!("leadsync report: {e}");
            ExitCode::from(BAD_INPUT)
        }
        Ok(Err(e)) => failed(&e.into(), "report"),
        Err(e) => failed(&e, "report"),
    }
}

/// What `leadsync plan` is asked for.
#[derive(Debug, Clone)]
pub struct PlanArgs {
    /// Revenue to reach per period.
    pub revenue: f64,
    /// Average deal size.
    pub avg_deal: f64,
    /// `month` or `quarter`.
    pub quarter: bool,
    /// Rates given.
    pub rates: Vec<crate::report::plan::Rate>,
    /// Measure the rates from the store over this many days instead.
    pub measured_over_days: Option<u32>,
    /// Fewest contacts a measured rate may rest on.
    pub min_sample: u64,
}

/// `6m` (months of 30 days), `90d` or `12w`, as days.
pub fn parse_window(s: &str) -> Result<u32, String> {
    let bad = || format!("`{s}` is not a window (write 6m, 12w or 90d)");
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: u32 = n.parse().map_err(|_| bad())?;
    let days = match unit {
        "m" => 30,
        "w" => 7,
        "d" => 1,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(bad());
    }
    Ok(n * days)
}

/// `leadsync plan`: the funnel worked back from revenue, from given or measured rates, beside
/// what the last full period delivered (when a store is there to read).
pub fn plan_cmd(config_file: Option<&Path>, args: &PlanArgs, now: DateTime<Utc>) -> ExitCode {
    use crate::report::figures::{last_month, last_quarter};
    let period = if args.quarter { "quarter" } else { "month" };
    let (last_from, last_to) = if args.quarter {
        last_quarter(now)
    } else {
        last_month(now)
    };
    let need_store = args.measured_over_days.is_some();
    let store = match (loaded(config_file), runtime()) {
        (Ok(l), Ok(rt)) => {
            let opened = rt.block_on(crate::daemon::store(&l, crate::daemon::StoreOpening::MustExist));
            match (opened, need_store) {
                (Ok(s), _) => Some((s, rt)),
                (Err(e), true) => return failed(&e, "plan"),
                (Err(_), false) => None,
            }
        }
        (Err(c), _) | (_, Err(c)) if need_store => return c,
        _ => None,
    };
    let mut rates = args.rates.clone();
    let mut refused = Vec::new();
    let mut delivered = None;
    if let Some((store, rt)) = &store {
        let got = rt.block_on(async {
            if let Some(days) = args.measured_over_days {
                let (m, r) = crate::report::measured_rates(
                    store,
                    now - chrono::Duration::days(i64::from(days)),
                    now,
                    args.min_sample,
                )
                .await?;
                rates = m;
                refused = r;
            }
            crate::report::delivered(store, last_from, last_to).await
        });
        match got {
            Ok(d) => delivered = Some(d),
            Err(e) => return failed(&e.into(), "plan"),
        }
    }
    match crate::report::plan::plan(args.revenue, args.avg_deal, &rates) {
        Ok(needs) => {
            println!("per {period}: revenue {} at {} a deal", args.revenue, args.avg_deal);
            print!(
                "{}",
                crate::report::plan::render(&needs, period, delivered.as_deref(), &refused)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("leadsync plan: {e}");
            ExitCode::from(BAD_INPUT)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::one_portal;
    use crate::config::{Loaded, Settings};

    fn portal(id: u64) -> Settings {
        let mut s = Settings::default();
        s.hubspot.portal_id = Some(id);
        s.store.url = format!("sqlite://p{id}.db");
        s
    }

    #[test]
    fn a_one_portal_command_takes_the_portal_leadsync_portal_names_and_refuses_to_guess() {
        let single = Loaded {
            settings: portal(7),
            file: None,
        };
        assert_eq!(one_portal(&single, None).unwrap().settings.store.url, "sqlite://p7.db");
        let deployment = Loaded {
            settings: Settings {
                portals: vec![portal(42), portal(43)],
                ..Settings::default()
            },
            file: None,
        };
        let chosen = one_portal(&deployment, Some("43")).unwrap();
        assert_eq!(chosen.settings.store.url, "sqlite://p43.db");
        assert!(chosen.settings.portals.is_empty());
        let why = one_portal(&deployment, None).unwrap_err();
        assert!(why.contains("LEADSYNC_PORTAL=ID (one of 42, 43)"), "{why}");
        let why = one_portal(&deployment, Some("99")).unwrap_err();
        assert!(why.contains("LEADSYNC_PORTAL=99: no such portal"), "{why}");
    }
}
