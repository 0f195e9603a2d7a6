//! Logs: on stderr, as text or JSON, leadsync's own at the command's level and every other
//! crate's only from `warn` up, so the plumbing of the scheduler, the database driver and the
//! HTTP stack never buries what an operator needs.

use std::io::IsTerminal;

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line per event for people; colours only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The environment variable that picks the format (the `[log] format` key of the configuration).
pub const FORMAT_ENV: &str = "LEADSYNC__LOG__FORMAT";

/// What a command logs when neither `-v` nor `RUST_LOG` says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Warnings and errors only: commands whose stdout tells the story (`demo`, `check`, …).
    Warn,
    /// leadsync's progress too: the daemon and the jobs an operator watches (`run`, `backfill`).
    Info,
}

/// The filter directives: `RUST_LOG` when set, else leadsync at the command's level (raised
/// by each `-v`) and every other crate at `warn`.
pub fn directives(level: Level, verbose: u8, rust_log: Option<&str>) -> String {
    if let Some(r) = rust_log.filter(|r| !r.trim().is_empty()) {
        return r.to_string();
    }
    let ours = match (level, verbose) {
        (Level::Warn, 0) => "warn",
        (Level::Warn, 1) | (Level::Info, 0) => "info",
        (_, 1) | (Level::Warn, 2) => "debug",
        _ => "trace",
    };
    format!("warn,leadsync={ours}")
}

/// The format asked for in the environment (`LEADSYNC__LOG__FORMAT=json`), text otherwise.
pub fn format_from_env() -> LogFormat {
    match std::env::var(FORMAT_ENV) {
        Ok(v) if v.trim().eq_ignore_ascii_case("json") => LogFormat::Json,
        _ => LogFormat::Text,
    }
}

/// Installs the global subscriber on stderr. Colours only when stderr is a terminal and
/// `NO_COLOR` is unset, so files, pipes and journald never get escape codes.
pub fn init(level: Level, verbose: u8, format: LogFormat) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = EnvFilter::try_new(directives(level, verbose, rust_log.as_deref())).unwrap_or_else(|e| {
        eprintln!("RUST_LOG: {e}; logging at the default level");
        EnvFilter::new(directives(level, verbose, None))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
        LogFormat::Text => builder.with_ansi(colour(std::io::stderr().is_terminal())).try_init(),
    };
    // A second init (tests calling the CLI functions in one process) keeps the first subscriber.
    let _ = result;
}

/// Colours on a terminal, unless `NO_COLOR` is set (<https://no-color.org>).
fn colour(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_crates_stay_at_warn_and_each_v_raises_leadsync_only() {
        assert_eq!(directives(Level::Warn, 0, None), "warn,leadsync=warn");
        assert_eq!(directives(Level::Warn, 1, None), "warn,leadsync=info");
        assert_eq!(directives(Level::Info, 0, None), "warn,leadsync=info");
        assert_eq!(directives(Level::Info, 1, None), "warn,leadsync=debug");
        assert_eq!(directives(Level::Info, 3, None), "warn,leadsync=trace");
    }

    #[test]
    fn rust_log_wins_when_set() {
        assert_eq!(directives(Level::Warn, 0, Some("sqlx=debug")), "sqlx=debug");
        assert_eq!(directives(Level::Warn, 0, Some(" ")), "warn,leadsync=warn");
    }

    #[test]
    fn no_colour_off_a_terminal() {
        assert!(!colour(false));
    }
}
