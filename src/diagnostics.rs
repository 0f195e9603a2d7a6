//! Errors that point into a file: `path:line:column: field: message`, all of them at once.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem found in a file, located by line and column (both 1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// File the problem is in.
    pub file: PathBuf,
    /// 1-based line, 0 when the problem has no position (a missing file).
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// Dotted path of the offending field (`fit.rules[2].when`), empty when unknown.
    pub field: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

/// Every problem found in one load, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Adds every problem of `other`.
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `Ok(value)` when nothing was found, otherwise every problem sorted by position.
    pub fn into_result<T>(mut self, value: T) -> Result<T, Diagnostics> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            self.sort();
            Err(self)
        }
    }

    /// Sorts the problems by file, line and column (stable: equal positions keep their order).
    pub fn sort(&mut self) {
        self.0
            .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// A file's text, kept to turn byte offsets into lines and columns.
#[derive(Debug, Clone)]
pub struct SourceText {
    path: PathBuf,
    text: String,
}

impl SourceText {
    /// Reads `path`; a read failure becomes a positionless diagnostic.
    /// Bytes that are not UTF-8 are located at the first bad one.
    pub fn read(path: &Path) -> Result<Self, Diagnostics> {
        let fail = |line, column, message| {
            Diagnostics(vec![Diagnostic {
                file: path.to_path_buf(),
                line,
                column,
                field: String::new(),
                message,
            }])
        };
        let bytes = std::fs::read(path).map_err(|e| fail(0, 0, format!("cannot read: {e}")))?;
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Self::new(path, text)),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let bytes = e.as_bytes();
                let good = String::from_utf8_lossy(&bytes[..at]).into_owned();
                let (line, column) = Self::new(path, good).line_col(at);
                Err(fail(
                    line,
                    column,
                    format!("is not UTF-8 text: byte 0x{:02x} here", bytes[at]),
                ))
            }
        }
    }

    /// Wraps text already in memory (tests, embedded defaults).
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            text: text.into(),
        }
    }

    /// The whole text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The file's path as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }

    /// A diagnostic at the start of `span`.
    pub fn error(&self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        let (line, column) = self.line_col(span.start);
        Diagnostic {
            file: self.path.clone(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        }
    }

    /// Deserializes the whole text as TOML, turning a syntax or shape error into a located diagnostic.
    pub fn parse_toml<T: serde::de::DeserializeOwned>(&self) -> Result<T, Diagnostics> {
        toml::from_str(&self.text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            Diagnostics(vec![self.error(span, "", e.message().trim().to_string())])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let src = SourceText::new("f.toml", "a = 1\nbé = 2\n");
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(6), (2, 1));
        // "bé" is 3 bytes; the `=` after it is the 4th character.
        assert_eq!(src.line_col(6 + 4), (2, 4));
    }

    #[test]
    fn display_names_file_line_column_and_field() {
        let src = SourceText::new("m/x.toml", "k = 1\n");
        let d = src.error(4..5, "fit.max", "must be positive");
        assert_eq!(d.to_string(), "m/x.toml:1:5: fit.max: must be positive");
    }

    #[test]
    fn syntax_errors_are_located() {
        let src = SourceText::new("x.toml", "a = 1\nb = = 2\n");
        let err = src.parse_toml::<toml::Table>().unwrap_err();
        assert_eq!(err.0[0].line, 2);
    }
}
