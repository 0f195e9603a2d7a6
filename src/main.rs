//! The `leadsync` binary: parses the command line and hands over to `leadsync::cli`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use leadsync::cli::{self, Format, LogOptions};
use leadsync::logging::{self, Level, LogFormat};

/// Keeps HubSpot and Salesforce aligned by one lead lifecycle.
#[derive(Parser)]
#[command(name = "leadsync", version, about, after_help = EXAMPLES)]
struct Args {
    /// Configuration file (default: ./leadsync.toml when present).
    #[arg(long, global = true, env = "LEADSYNC_CONFIG")]
    config: Option<PathBuf>,
    /// More logs on stderr: -v for leadsync's progress, -vv for debugging (RUST_LOG wins).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Log lines as text or as JSON, one object per line (also LEADSYNC__LOG__FORMAT).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "\
Examples:
  leadsync demo --once                 the whole product against the built-in sandbox, no account needed
  leadsync init myconfig               a commented leadsync.toml and the shipped mappings, to edit
  leadsync check --config myconfig/leadsync.toml
  leadsync setup --apply               create the HubSpot properties leadsync writes
  leadsync backfill --dry-run          what the first backfill would change, and its cost
  leadsync run --init-store            the daemon (--init-store on its first start only)
  leadsync retry --dry-run             dead letters and dead inbox events that would be put back
  leadsync explain --snapshot examples/snapshots/mql-webinar.json

Each command's own examples: leadsync help COMMAND";

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration, the rules and the Salesforce mapping (exit 2 on any problem).
    #[command(
        after_help = "Examples:\n  leadsync check                               ./leadsync.toml, or the embedded defaults when there is none\n  leadsync check --config /etc/leadsync/leadsync.toml\n  leadsync check --online                      also compare the mapping with the Salesforce org"
    )]
    Check {
        /// Also compare the Salesforce mapping with the org (fields, types, picklists).
        #[arg(long)]
        online: bool,
    },
    /// Show the decision for one contact snapshot, and why; or a stored contact and why its owner.
    #[command(
        after_help = "Examples:\n  leadsync explain --snapshot examples/snapshots/mql-webinar.json --at 2026-11-24T09:00:00Z\n  leadsync explain --snapshot contact.json --rules my-rules.toml --format json\n  leadsync explain --contact 501                a stored contact: its owner, why this rep, its SLA timers"
    )]
    Explain {
        /// Snapshot JSON file (see docs/snapshots.md).
        #[arg(long, required_unless_present = "contact", conflicts_with = "contact")]
        snapshot: Option<PathBuf>,
        /// A contact in the configured store: its stage, its owner and why this rep (each
        /// assignment's trace), its SLA timers (policy, started, due, first touch, attempts,
        /// state, the ladder's steps done).
        #[arg(long)]
        contact: Option<String>,
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
    #[command(
        after_help = "Examples:\n  leadsync setup              print the plan\n  leadsync setup --apply      create the missing group and properties"
    )]
    Setup {
        /// Create them; without it, only print the plan.
        #[arg(long)]
        apply: bool,
    },
    /// The daemon: webhook server, schedules and inbox workers, until Ctrl-C or SIGTERM.
    #[command(
        after_help = "Examples:\n  leadsync run --init-store                   the first start: creates the store\n  leadsync run\n  leadsync run --config /etc/leadsync/leadsync.toml --log-format json\n  LEADSYNC__LOG__FORMAT=json leadsync run"
    )]
    Run {
        /// Create the store when it does not exist yet (a first start); without it a missing
        /// SQLite file or an empty database is refused.
        #[arg(long)]
        init_store: bool,
    },
    /// Bring every contact in (resumable), or re-score from the store after a rules change.
    #[command(
        after_help = "Examples:\n  leadsync backfill --dry-run              what would change, and what it would cost\n  leadsync backfill --since 2026-01-01\n  leadsync backfill --rescore              after a rules change, from the store alone"
    )]
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
        /// Discard the saved checkpoint (a corrupt one, say) and start from the first page.
        #[arg(long, conflicts_with_all = ["since", "rescore"])]
        restart: bool,
    },
    /// The funnel, the outbox, dead letters and the review list; or one contact's audit trail.
    #[command(
        after_help = "Examples:\n  leadsync status\n  leadsync status --config /etc/leadsync/leadsync.toml\n  leadsync status --contact 1001   every change of one contact, with its reason and rules"
    )]
    Status {
        /// One HubSpot contact id: its stage, status and every change leadsync made, oldest first.
        #[arg(long)]
        contact: Option<String>,
    },
    /// Put dead letters and dead inbox events back in their queues, once their cause is fixed.
    #[command(
        after_help = "Examples:\n  leadsync retry --dry-run                    what would be put back\n  leadsync retry --kind promote               every dead promotion\n  leadsync retry --kind inbox --id 42         one dead inbox event (ids: leadsync status)"
    )]
    Retry {
        /// Only this queue (default: all three).
        #[arg(long, value_enum)]
        kind: Option<leadsync::report::RetryKind>,
        /// Only this item or event (its id in `leadsync status`); needs --kind.
        #[arg(long, requires = "kind")]
        id: Option<i64>,
        /// Change nothing: print what would be put back.
        #[arg(long)]
        dry_run: bool,
    },
    /// The whole product against the built-in sandbox: backfill, live webhooks, the funnel.
    #[command(
        after_help = "Examples:\n  leadsync demo --once                      tell the story and exit\n  leadsync demo --contacts 2000 --seed 7\n  leadsync demo --store postgres://localhost/test --once\n  leadsync -v demo --once                   with leadsync's logs on stderr"
    )]
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
    #[command(
        after_help = "Examples:\n  leadsync sandbox --webhook-url http://127.0.0.1:8080/webhooks/hubspot\n  leadsync sandbox --fault-5xx 0.2 --fault-timeout 0.05 --fault-lost 0.02 --burst-every 20 --token-ttl 60 --webhook-duplicate 0.3 --webhook-reorder 0.3 --seed 7\n  then, in another shell, the printed LEADSYNC__… variables and `leadsync run --init-store`"
    )]
    Sandbox {
        /// Contacts in the synthetic portal.
        #[arg(long, default_value_t = 500)]
        contacts: u32,
        /// Seed of the synthetic portal and of the faults.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Where to deliver webhooks (leadsync's `/webhooks/hubspot`).
        #[arg(long)]
        webhook_url: Option<String>,
        #[command(flatten)]
        faults: cli::SandboxFaultFlags,
    },
    /// Benchmarks of the daemon as a whole; `--chaos`: a fault-free run and a run under the
    /// sandbox's faults and ten `kill -9`s, compared (exit 1 on any difference).
    #[command(
        after_help = "Examples:\n  leadsync bench --chaos\n  leadsync bench --chaos --store postgres://postgres@127.0.0.1:5432/test --contacts 500 --kills 10 --seed 7"
    )]
    Bench {
        /// The chaos suite (the only bench here; the others live in `benches/`).
        #[arg(long)]
        chaos: bool,
        /// `sqlite` (default) or a PostgreSQL admin URL: each run gets a fresh database there.
        #[arg(long, default_value = "sqlite")]
        store: String,
        /// Contacts in the portal.
        #[arg(long, default_value_t = 500)]
        contacts: u32,
        /// `kill -9`s of the chaos run's daemon.
        #[arg(long, default_value_t = 10)]
        kills: u32,
        /// Seed of the portal, the faults and the kill moments.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Form submissions (signed webhook deliveries) while the daemon runs.
        #[arg(long, default_value_t = 60)]
        forms: u32,
    },
    /// Run rule authors' test cases (*.toml in DIR); exit 1 when any fails.
    #[command(
        after_help = "Examples:\n  leadsync test-rules tests/rules\n  leadsync test-rules my-cases --rules my-rules.toml"
    )]
    TestRules {
        /// Folder of case files.
        dir: PathBuf,
        /// Rules file; default the configuration's rules.path.
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// The figures of a period from the store: funnel, conversions, time in stage, SLA, deals.
    #[command(
        after_help = "Examples:\n  leadsync report                                   last calendar month, as a table\n  leadsync report --from 2026-10-01 --to 2026-11-01 --by team\n  leadsync report --by source --format csv > november.csv\n  leadsync report --format html > november.html       the monthly report to send (prints to PDF)\n  leadsync report --compare-rules new-lifecycle.toml  last month under the candidate rules, beside the current ones"
    )]
    Report {
        /// Start of the period (RFC 3339 or YYYY-MM-DD); default the first day of last month.
        #[arg(long, value_parser = cli::parse_time)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// End of the period, exclusive; default the first day of this month.
        #[arg(long, value_parser = cli::parse_time)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        /// Split the figures by team, rep, source or persona.
        #[arg(long, value_enum)]
        by: Option<leadsync::report::figures::GroupBy>,
        /// table, json, csv or html (one self-contained file).
        #[arg(long, value_enum, default_value = "table")]
        format: leadsync::report::format::ReportFormat,
        /// As of this time (RFC 3339 or YYYY-MM-DD): "last month" is the one before it; default now.
        #[arg(long, value_parser = cli::parse_time)]
        at: Option<chrono::DateTime<chrono::Utc>>,
        /// Replay the period under this candidate rules file beside the current rules: funnel,
        /// KPIs, the contacts that would differ and what deploying it would cost (store only).
        #[arg(long, value_name = "NEW.toml")]
        compare_rules: Option<PathBuf>,
    },
    /// The funnel worked back from a revenue goal, from given or measured conversion rates.
    #[command(
        after_help = "Examples:\n  leadsync plan --revenue 10000 --avg-deal 1000 --rate lead-customer=0.02\n  leadsync plan --revenue 50000 --avg-deal 2500 --rate lead-mql=0.2 --rate mql-sql=0.3 --rate sql-customer=0.25\n  leadsync plan --revenue 30000 --avg-deal 1000 --period quarter --measured-over 6m"
    )]
    Plan {
        /// Revenue to reach per period.
        #[arg(long)]
        revenue: f64,
        /// Average deal size.
        #[arg(long)]
        avg_deal: f64,
        /// The period the revenue is for: month or quarter.
        #[arg(long, default_value = "month", value_parser = ["month", "quarter"])]
        period: String,
        /// A conversion rate, STAGE-STAGE=RATE (repeat; they chain back from customer).
        #[arg(
            long = "rate",
            conflicts_with = "measured_over",
            required_unless_present = "measured_over"
        )]
        rates: Vec<leadsync::report::plan::Rate>,
        /// Measure each stage's rate from the store over this window (6m, 12w, 90d) instead.
        #[arg(long, value_parser = cli::parse_window)]
        measured_over: Option<u32>,
        /// Refuse a measured rate resting on fewer contacts than this.
        #[arg(long, default_value_t = 30)]
        min_sample: u64,
        /// As of this time (RFC 3339 or YYYY-MM-DD); default now.
        #[arg(long, value_parser = cli::parse_time)]
        at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Write a commented leadsync.toml and the shipped mapping files into DIR (never over existing files).
    #[command(
        after_help = "Examples:\n  leadsync init                 into the current folder\n  leadsync init /etc/leadsync\n  then: leadsync check, leadsync setup --apply, leadsync backfill --dry-run"
    )]
    Init {
        /// Folder to write into (created when missing).
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    // Before any thread: those that allocate first keep their own arena.
    leadsync::memory::tune();
    let args = Args::parse();
    let config = args.config.as_deref();
    let log = LogOptions {
        verbose: args.verbose,
        format: args.log_format,
    };
    // `run` starts its logs once its configuration (`[log] format`) is read; the stories
    // (`demo`, `check`, …) log only warnings unless -v; the jobs an operator watches, INFO.
    let level = match args.command {
        Command::Run { .. } => None,
        Command::Backfill { .. } | Command::Setup { .. } | Command::Status { .. } | Command::Retry { .. } => {
            Some(Level::Info)
        }
        _ => Some(Level::Warn),
    };
    if let Some(level) = level {
        logging::init(level, log.verbose, log.format.unwrap_or_else(logging::format_from_env));
    }
    match args.command {
        Command::Check { online } => cli::check(config, online),
        Command::Explain {
            snapshot,
            contact,
            at,
            rules,
            format,
        } => match (snapshot, contact) {
            (Some(snapshot), _) => cli::explain(config, &snapshot, at.as_deref(), rules.as_deref(), format),
            (None, Some(contact)) => cli::explain_contact(config, &contact),
            (None, None) => unreachable!("clap requires --snapshot or --contact"),
        },
        Command::TestRules { dir, rules } => cli::test_rules(config, &dir, rules.as_deref()),
        Command::Setup { apply } => cli::setup(config, apply),
        Command::Run { init_store } => cli::run(config, log, init_store),
        Command::Init { dir } => cli::init(&dir),
        Command::Backfill {
            since,
            limit,
            dry_run,
            rescore,
            restart,
        } => cli::backfill(
            config,
            &cli::BackfillArgs {
                since,
                limit,
                dry_run,
                rescore,
                restart,
            },
        ),
        Command::Status { contact } => cli::status(config, contact.as_deref()),
        Command::Report {
            from,
            to,
            by,
            format,
            at,
            compare_rules,
        } => cli::report_cmd(
            config,
            &cli::ReportArgs {
                from,
                to,
                by,
                format,
                compare_rules,
            },
            at.unwrap_or_else(chrono::Utc::now),
        ),
        Command::Plan {
            revenue,
            avg_deal,
            period,
            rates,
            measured_over,
            min_sample,
            at,
        } => cli::plan_cmd(
            config,
            &cli::PlanArgs {
                revenue,
                avg_deal,
                quarter: period == "quarter",
                rates,
                measured_over_days: measured_over,
                min_sample,
            },
            at.unwrap_or_else(chrono::Utc::now),
        ),
        Command::Retry { kind, id, dry_run } => cli::retry(config, kind, id, dry_run),
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
            faults,
        } => cli::sandbox(contacts, seed, webhook_url, &faults),
        Command::Bench {
            chaos,
            store,
            contacts,
            kills,
            seed,
            forms,
        } => {
            if !chaos {
                eprintln!("leadsync bench: only --chaos is here; the other benchmarks run with `cargo bench`");
                return ExitCode::from(2);
            }
            let store = match store.as_str() {
                "sqlite" => leadsync::chaos::ChaosStore::Sqlite,
                url if url.starts_with("postgres") => leadsync::chaos::ChaosStore::Postgres(url.to_string()),
                other => {
                    eprintln!("leadsync bench: --store {other:?}: expected sqlite or a postgres:// admin URL");
                    return ExitCode::from(2);
                }
            };
            let binary = match std::env::current_exe() {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("leadsync bench: cannot find its own binary: {e}");
                    return ExitCode::FAILURE;
                }
            };
            cli::bench_chaos(leadsync::chaos::ChaosOptions {
                binary,
                root: std::path::PathBuf::from("."),
                contacts,
                kills,
                seed,
                forms,
                store,
                settle_deadline: std::time::Duration::from_secs(900),
            })
        }
    }
}
