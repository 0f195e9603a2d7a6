//! The shipped rules and Salesforce mapping, compiled into the binary, and the choice between
//! them and files: a configured file must exist (never a silent fallback); with nothing
//! configured, `./mappings/…` when present, else the embedded default, and every command says
//! which one it used.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::diagnostics::{Diagnostic, Diagnostics, SourceText};
use crate::lifecycle::Rules;
use crate::salesforce::mapping::SalesforceMapping;
use crate::sla::SlaFile;

/// `mappings/lifecycle.toml` as shipped.
pub const LIFECYCLE: &str = include_str!("../mappings/lifecycle.toml");
/// `mappings/salesforce.toml` as shipped.
pub const SALESFORCE: &str = include_str!("../mappings/salesforce.toml");
/// `mappings/sla.toml` as shipped.
pub const SLA: &str = include_str!("../mappings/sla.toml");
/// `leadsync.example.toml` as shipped: what `leadsync init` writes.
pub const CONFIG: &str = include_str!("../leadsync.example.toml");

/// Where the rules or the mapping in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A file on disk.
    File(PathBuf),
    /// The copy compiled into the binary.
    Embedded,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Embedded => write!(f, "embedded default"),
        }
    }
}

/// How a command was told where a file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// Named by a flag, the configuration file or the environment: it must exist. `how` says
    /// where it was named (`--rules`, `rules.path`), for the error.
    Configured { path: PathBuf, how: String },
    /// Nothing configured: this file when it exists, else the embedded default.
    Default(PathBuf),
}

/// The rules to use, and where they came from.
pub fn rules(want: &Want) -> Result<(Rules, Origin), Diagnostics> {
    match pick(want, "--rules FILE")? {
        Some(path) => Ok((Rules::load(&path)?, Origin::File(path))),
        None => Ok((embedded_rules()?, Origin::Embedded)),
    }
}

/// The Salesforce mapping to use, and where it came from.
pub fn mapping(want: &Want) -> Result<(SalesforceMapping, Origin), Diagnostics> {
    match pick(want, "LEADSYNC__SALESFORCE__MAPPING_PATH")? {
        Some(path) => Ok((SalesforceMapping::load(&path)?, Origin::File(path))),
        None => Ok((
            SalesforceMapping::from_source(&SourceText::new(EMBEDDED_SALESFORCE, SALESFORCE))?,
            Origin::Embedded,
        )),
    }
}

/// The SLA file to use, and where it came from.
pub fn sla(want: &Want) -> Result<(SlaFile, Origin), Diagnostics> {
    match pick(want, "mappings/sla.toml next to the configuration")? {
        Some(path) => Ok((SlaFile::load(&path)?, Origin::File(path))),
        None => Ok((embedded_sla(), Origin::Embedded)),
    }
}

/// The shipped SLA file (checked by the tests, so it always compiles).
pub fn embedded_sla() -> SlaFile {
    SlaFile::from_source(&SourceText::new(EMBEDDED_SLA, SLA)).expect("the shipped mappings/sla.toml is valid")
}

const EMBEDDED_SLA: &str = "(embedded) mappings/sla.toml";
const EMBEDDED_LIFECYCLE: &str = "(embedded) mappings/lifecycle.toml";
const EMBEDDED_SALESFORCE: &str = "(embedded) mappings/salesforce.toml";

/// The shipped rules, compiled.
pub fn embedded_rules() -> Result<Rules, Diagnostics> {
    Rules::from_source(&SourceText::new(EMBEDDED_LIFECYCLE, LIFECYCLE))
}

/// The file to read, or `None` for the embedded default.
fn pick(want: &Want, flag: &str) -> Result<Option<PathBuf>, Diagnostics> {
    match want {
        Want::Configured { path, how } => {
            if path.exists() {
                Ok(Some(path.clone()))
            } else {
                Err(missing(path, how, flag))
            }
        }
        Want::Default(path) => Ok(path.exists().then(|| path.clone())),
    }
}

/// A configured file that is not there: where it looked, how to point elsewhere.
pub fn missing(path: &Path, how: &str, flag: &str) -> Diagnostics {
    let looked = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    Diagnostics(vec![Diagnostic {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        field: how.to_string(),
        message: format!(
            "no such file (looked for {}); point at another with {flag} or in the configuration (--config FILE), \
             or write the shipped files with `leadsync init DIR`",
            looked.display()
        ),
    }])
}

/// Writes the four files `leadsync init` makes into `dir` (the configuration, the rules, the
/// Salesforce mapping, the sales SLA), refusing to overwrite any: either all four are written or
/// none is. Returns the paths written.
pub fn write_into(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let files = [
        (dir.join("leadsync.toml"), CONFIG),
        (dir.join("mappings/lifecycle.toml"), LIFECYCLE),
        (dir.join("mappings/salesforce.toml"), SALESFORCE),
        (dir.join("mappings/sla.toml"), SLA),
    ];
    let present: Vec<String> = files
        .iter()
        .filter(|(p, _)| p.exists())
        .map(|(p, _)| p.display().to_string())
        .collect();
    if !present.is_empty() {
        return Err(format!(
            "{} already exist(s); nothing written (move them away or pick another folder: `leadsync init DIR`)",
            present.join(", ")
        ));
    }
    let mappings = dir.join("mappings");
    std::fs::create_dir_all(&mappings).map_err(|e| format!("{}: cannot create: {e}", mappings.display()))?;
    for (path, text) in &files {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| format!("{}: cannot create: {e}", path.display()))?;
        std::io::Write::write_all(&mut f, text.as_bytes())
            .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_defaults_compile_and_match_the_shipped_files() {
        let embedded = embedded_rules().unwrap_or_else(|d| panic!("{d}"));
        let file = Rules::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/lifecycle.toml")).unwrap();
        assert_eq!(embedded.stamp(), file.stamp(), "same text, same version and hash");
        let (_, origin) = mapping(&Want::Default(PathBuf::from("/nonexistent/salesforce.toml"))).unwrap();
        assert_eq!(origin, Origin::Embedded);
    }

    #[test]
    fn a_configured_file_that_is_missing_is_an_error_naming_where_it_looked() {
        let want = Want::Configured {
            path: PathBuf::from("/nonexistent/rules.toml"),
            how: "rules.path".into(),
        };
        let err = rules(&want).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/rules.toml"), "{err}");
        assert!(err.contains("--rules FILE") && err.contains("--config"), "{err}");
    }

    #[test]
    fn an_unconfigured_file_falls_back_to_the_embedded_default_only_when_absent() {
        let dir = tempfile::tempdir().unwrap();
        let (_, origin) = rules(&Want::Default(dir.path().join("lifecycle.toml"))).unwrap();
        assert_eq!(origin, Origin::Embedded);
        std::fs::write(dir.path().join("lifecycle.toml"), LIFECYCLE).unwrap();
        let (_, origin) = rules(&Want::Default(dir.path().join("lifecycle.toml"))).unwrap();
        assert_eq!(origin, Origin::File(dir.path().join("lifecycle.toml")));
    }

    #[test]
    fn init_refuses_to_overwrite_and_writes_nothing_then() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("mappings")).unwrap();
        std::fs::write(dir.path().join("mappings/salesforce.toml"), "# mine").unwrap();
        let err = write_into(dir.path()).unwrap_err();
        assert!(err.contains("salesforce.toml"), "{err}");
        assert!(!dir.path().join("leadsync.toml").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("mappings/salesforce.toml")).unwrap(),
            "# mine"
        );
    }
}
