//! The `leadsync` binary: parses the command line and hands over to `leadsync::cli`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use leadsync::cli::{self, Format};

/// Keeps HubSpot and Salesforce aligned by one lead lifecycle.
#[derive(Parser)]
#[command(name = "leadsync", version, about)]
struct Args {
    /// Configuration file (default: ./leadsync.toml when present).
    #[arg(long, global = true, env = "LEADSYNC_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration, the rules and the Salesforce mapping (exit 2 on any problem).
    Check {
        /// Also compare the Salesforce mapping with the org (fields, types, picklists).
        #[arg(long)]
        online: bool,
    },
    /// Show the decision for one contact snapshot, and why.
    Explain {
        /// Snapshot JSON file (see docs/snapshots.md).
        #[arg(long)]
        snapshot: PathBuf,
        /// Evaluate as of this time (RFC 3339 or YYYY-MM-DD); default now.
        #[arg(long)]
        at: Option<String>,
        /// Rules file; default the configuration's rules.path.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Create the HubSpot properties leadsync writes (a dry run without --apply).
    Setup {
        /// Create them; without it, only print the plan.
        #[arg(long)]
        apply: bool,
    },
    /// The daemon: webhook server, schedules and inbox workers, until Ctrl-C or SIGTERM.
    Run,
    /// Bring every contact in (resumable), or re-score from the store after a rules change.
    Backfill {
        /// Only contacts modified since this time (RFC 3339 or YYYY-MM-DD).
        #[arg(long)]
        since: Option<String>,
        /// At most this many contacts.
        #[arg(long)]
        limit: Option<u64>,
        /// Write nothing: print what would change and what it would cost.
        #[arg(long)]
        dry_run: bool,
        /// Re-evaluate every stored contact from the store, without reading HubSpot.
        #[arg(long)]
        rescore: bool,
    },
    /// The funnel, the outbox, dead letters and the review list.
    Status,
    /// The whole product against the built-in sandbox: backfill, live webhooks, the funnel.
    Demo {
        /// Contacts in the synthetic portal.
        #[arg(long, default_value_t = 500)]
        contacts: u32,
        /// Seed of the synthetic portal (same seed, same portal).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Exit after the report instead of serving until Ctrl-C.
        #[arg(long)]
        once: bool,
        /// Store URL (default: a fresh SQLite file in a temporary folder).
        #[arg(long)]
        store: Option<String>,
    },
    /// The fake HubSpot and Salesforce alone, on loopback, until Ctrl-C.
    Sandbox {
        /// Contacts in the synthetic portal.
        #[arg(long, default_value_t = 500)]
        contacts: u32,
        /// Seed of the synthetic portal.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Where to deliver webhooks (leadsync's `/webhooks/hubspot`).
        #[arg(long)]
        webhook_url: Option<String>,
    },
    /// Run rule authors' test cases (*.toml in DIR); exit 1 when any fails.
    TestRules {
        /// Folder of case files.
        dir: PathBuf,
        /// Rules file; default the configuration's rules.path.
        #[arg(long)]
        rules: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = args.config.as_deref();
    match args.command {
        Command::Check { online } => cli::check(config, online),
        Command::Explain {
            snapshot,
            at,
            rules,
            format,
        } => cli::explain(config, &snapshot, at.as_deref(), rules.as_deref(), format),
        Command::TestRules { dir, rules } => cli::test_rules(config, &dir, rules.as_deref()),
        Command::Setup { apply } => cli::setup(config, apply),
        Command::Run => cli::run(config),
        Command::Backfill {
            since,
            limit,
            dry_run,
            rescore,
        } => cli::backfill(
            config,
            &cli::BackfillArgs {
                since,
                limit,
                dry_run,
                rescore,
            },
        ),
        Command::Status => cli::status(config),
        Command::Demo {
            contacts,
            seed,
            once,
            store,
        } => cli::demo(leadsync::demo::DemoOptions {
            contacts,
            seed,
            once,
            store_url: store,
        }),
        Command::Sandbox {
            contacts,
            seed,
            webhook_url,
        } => cli::sandbox(contacts, seed, webhook_url),
    }
}
