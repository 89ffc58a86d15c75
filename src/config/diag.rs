//! Diagnostics for configuration files: what is wrong, where (file:line:column),
//! and how to fix it.
//!
//! Every checker in `config` pushes `Diagnostic`s into a `Diagnostics` list instead
//! of returning at the first problem, so an operator sees all mistakes in one run.
//! Positions are kept as byte ranges while checking and turned into line:column
//! only when rendered, against the text of the file they point into.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// How bad a finding is. Warnings never stop the daemon from starting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// A text file that diagnostics point into (pairbeat.toml, authkeys, ha.cf …).
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    /// Byte offset at which each line starts; line N (1-based) starts at `line_starts[N-1]`.
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        let text = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceFile {
            path: path.into(),
            text,
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let col = self.text[start..offset].chars().count() + 1;
        (line + 1, col)
    }

    /// Text of a 1-based line, without its newline.
    pub fn line_text(&self, line: usize) -> &str {
        let start = self.line_starts.get(line - 1).copied().unwrap_or(self.text.len());
        let end = self.line_starts.get(line).map(|e| e - 1).unwrap_or(self.text.len());
        self.text[start..end.max(start)].trim_end_matches('\r')
    }

    /// Byte range of a 1-based line (for line-oriented formats such as ha.cf).
    pub fn line_span(&self, line: usize) -> Range<usize> {
        let start = self.line_starts.get(line - 1).copied().unwrap_or(self.text.len());
        start..start + self.line_text(line).len()
    }
}

/// Where a diagnostic points: a byte range in a file, or a whole file (no position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    /// 1-based line and column; `None` when the finding concerns the file as a whole.
    pub line_col: Option<(usize, usize)>,
    /// The offending line's text and the caret's width, for the rendered excerpt.
    excerpt: Option<(String, usize)>,
}

impl Location {
    pub fn at(file: &SourceFile, span: Range<usize>) -> Self {
        let (line, col) = file.line_col(span.start);
        let text = file.line_text(line).to_string();
        let width = file.text[span.clone()]
            .lines()
            .next()
            .map(|l| l.chars().count())
            .unwrap_or(0)
            .max(1);
        Location {
            path: file.path.clone(),
            line_col: Some((line, col)),
            excerpt: Some((text, width)),
        }
    }

    pub fn file(path: &Path) -> Self {
        Location {
            path: path.to_path_buf(),
            line_col: None,
            excerpt: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub location: Location,
    /// What is wrong, in one sentence.
    pub message: String,
    /// How to fix it, when there is something to say beyond the message.
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let loc = &self.location;
        match loc.line_col {
            Some((line, col)) => write!(f, "{}:{}:{}: ", loc.path.display(), line, col)?,
            None => write!(f, "{}: ", loc.path.display())?,
        }
        write!(f, "{kind}: {}", self.message)?;
        if let (Some((line, col)), Some((text, width))) = (loc.line_col, &loc.excerpt) {
            let gutter = line.to_string().len();
            let pad: String = text
                .chars()
                .take(col - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "\n {line} | {text}")?;
            write!(f, "\n {:gutter$} | {pad}{}", "", "^".repeat(*width))?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// An ordered collection of findings from one check of one configuration.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn error(&mut self, location: Location, message: impl Into<String>, help: Option<String>) {
        self.push(Severity::Error, location, message.into(), help);
    }

    pub fn warning(&mut self, location: Location, message: impl Into<String>, help: Option<String>) {
        self.push(Severity::Warning, location, message.into(), help);
    }

    fn push(&mut self, severity: Severity, location: Location, message: String, help: Option<String>) {
        self.items.push(Diagnostic {
            severity,
            location,
            message,
            help,
        });
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn error_count(&self) -> usize {
        self.items.iter().filter(|d| d.severity == Severity::Error).count()
    }

    /// Sorted by file and position so the output reads top to bottom.
    pub fn sorted(mut self) -> Self {
        self.items
            .sort_by(|a, b| (&a.location.path, a.location.line_col).cmp(&(&b.location.path, b.location.line_col)));
        self
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl Diagnostics {
    /// The report both `pairbeat config check` and a refused `pairbeatd` print:
    /// every finding, then one summary line.
    pub fn report(&self, path: &Path) -> String {
        let warnings = self.items.len() - self.error_count();
        let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
        let summary = if self.has_errors() {
            format!(
                "{}: {} and {}; the configuration was refused",
                path.display(),
                plural(self.error_count(), "error"),
                plural(warnings, "warning")
            )
        } else {
            format!("{}: valid ({})", path.display(), plural(warnings, "warning"))
        };
        format!("{self}{summary}\n")
    }
}

/// The closest candidate to `word`, if it is close enough to be a plausible typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&word.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one_and_in_characters() {
        let f = SourceFile::new("x.toml", "a = 1\nné = \"x\"\n");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(6), (2, 1));
        // "né" is 3 bytes; the space after it is column 3.
        assert_eq!(f.line_col(9), (2, 3));
        assert_eq!(f.line_text(2), "né = \"x\"");
    }

    #[test]
    fn rendered_error_names_place_and_fix() {
        let f = SourceFile::new("p.toml", "[timing]\nkeepliave = \"1s\"\n");
        let mut d = Diagnostics::default();
        d.error(
            Location::at(&f, 9..18),
            "unknown key `keepliave` in [timing]",
            Some("did you mean `keepalive`?".into()),
        );
        let text = d.to_string();
        assert!(text.starts_with("p.toml:2:1: error: unknown key `keepliave`"), "{text}");
        assert!(text.contains(" 2 | keepliave = \"1s\"\n   | ^^^^^^^^^"), "{text}");
        assert!(text.contains("help: did you mean `keepalive`?"), "{text}");
    }

    #[test]
    fn closest_finds_typos_but_not_strangers() {
        let keys = ["keepalive", "warntime", "deadtime", "initdead"];
        assert_eq!(closest("keepliave", keys), Some("keepalive"));
        assert_eq!(closest("deadtim", keys), Some("deadtime"));
        assert_eq!(closest("colour", keys), None);
    }
}
