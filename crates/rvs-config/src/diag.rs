//! Diagnostics: severity, keepalived's `config_err_t` classes, `-t` exit codes
//! and "did you mean" suggestions.

use serde::Serialize;
use std::fmt;

/// keepalived's `config_err_t` (lib/parser.h), in declaration order.
///
/// keepalived remembers the numerically *largest* value reported and derives
/// the `-t` exit code from it (see [`config_test_exit_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConfigErr {
    /// Not an error for keepalived (used for rvs-only notes such as "not supported yet").
    Ok = 0,
    FileNotFound = 1,
    BadIf = 2,
    Fatal = 3,
    MultipleFiles = 4,
    UnknownKeyword = 5,
    UnexpectedBob = 6,
    MissingBob = 7,
    UnexpectedEob = 8,
    MissingEob = 9,
    UnmatchedQuote = 10,
    MissingParameter = 11,
    InvalidNumber = 12,
    GeneralError = 13,
    Warning = 14,
    Deprecated = 15,
    SecurityError = 16,
}

/// How rvs presents a diagnostic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The configuration cannot be used (keepalived would not start).
    Fatal,
    /// A definite mistake; the offending item is ignored or defaulted.
    Error,
    /// Suspicious or ignored input (unknown keywords, defaults applied...).
    Warning,
    /// A deprecated keyword or form; it still works.
    Deprecated,
    /// Valid keepalived input that rvs parses but does not implement yet.
    Unsupported,
}

impl Severity {
    /// Lower-case label used in the `file:line:col: LABEL: message` display.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Deprecated => "deprecated",
            Severity::Unsupported => "not supported yet",
        }
    }
}

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// keepalived's classification (drives the `-t` exit code).
    pub class: ConfigErr,
    /// File name as given (main file) or as resolved (included files).
    /// Empty for validation messages that have no location.
    pub file: String,
    /// 1-based line; 0 when the message has no location.
    pub line: u32,
    /// 1-based column (in characters); 0 when unknown.
    pub column: u32,
    /// The offending text (usually the keyword or argument).
    pub text: String,
    pub message: String,
    /// Optional hint, e.g. "did you mean 'connect_port'?".
    pub help: Option<String>,
}

impl Diagnostic {
    /// keepalived's own rendering: `(FILE: Line N) message` when several
    /// files are involved, `(Line N) message` otherwise, or just the message
    /// for location-less validation messages.
    pub fn keepalived_style(&self, multiple_files: bool) -> String {
        if self.line == 0 {
            self.message.clone()
        } else if multiple_files {
            format!("({}: Line {}) {}", self.file, self.line, self.message)
        } else {
            format!("(Line {}) {}", self.line, self.message)
        }
    }

    /// True for [`Severity::Fatal`] and [`Severity::Error`].
    pub fn is_error(&self) -> bool {
        matches!(self.severity, Severity::Fatal | Severity::Error)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        } else if !self.file.is_empty() {
            write!(f, "{}: ", self.file)?;
        }
        write!(f, "{}: {}", self.severity.label(), self.message)?;
        if let Some(h) = &self.help {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

/// Exit code of `keepalived -t` for these diagnostics (keepalived 2.2.7,
/// lib/scheduler.h `KEEPALIVED_CHK_EXIT_*`): the numerically largest class
/// seen decides: `Ok` → 0, `FileNotFound`/`BadIf`/`Fatal` → 4,
/// `SecurityError` → 6, anything else → 5.
pub fn config_test_exit_code(diags: &[Diagnostic]) -> i32 {
    match diags.iter().map(|d| d.class).max() {
        None | Some(ConfigErr::Ok) => 0,
        Some(ConfigErr::FileNotFound | ConfigErr::BadIf | ConfigErr::Fatal) => 4,
        Some(ConfigErr::SecurityError) => 6,
        Some(_) => 5,
    }
}

/// Optimal-string-alignment (restricted Damerau-Levenshtein) distance.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let m = b.len();
    // Three rows of the matrix: i-2, i-1 and i (a transposition looks two
    // rows back).
    let mut prev2 = vec![0usize; m + 1];
    let mut prev: Vec<usize> = (0..=m).collect();
    let mut cur = vec![0usize; m + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(prev2[j - 2] + 1);
            }
            cur[j] = v;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[m]
}

/// Closest candidate within a small edit distance (≤ 2, ≤ 1 for short words;
/// a case-only difference always qualifies).
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    if word.chars().count() > 64 {
        return None;
    }
    if let Some(c) = candidates.iter().find(|c| c.eq_ignore_ascii_case(word)) {
        return Some(c);
    }
    let len = word.chars().count();
    let max = if len <= 4 { 1 } else { 2 };
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        // The distance is at least the difference in length: most
        // candidates are out of reach without filling the matrix.
        if c.chars().count().abs_diff(len) > max {
            continue;
        }
        let d = edit_distance(word, c);
        if d <= max && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("connet_port", "connect_port"), 1);
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(
            suggest("connet_port", &["connect_ip", "connect_port", "bind_port"]),
            Some("connect_port")
        );
        assert_eq!(suggest("zzzzzz", &["connect_port"]), None);
        assert_eq!(suggest("Weight", &["weight"]), Some("weight"));
    }

    /// The full-matrix definition, to check the three-row one against.
    fn osa_reference(a: &str, b: &str) -> usize {
        let a: Vec<char> = a.chars().collect();
        let b: Vec<char> = b.chars().collect();
        let (n, m) = (a.len(), b.len());
        let mut d = vec![vec![0usize; m + 1]; n + 1];
        for (i, row) in d.iter_mut().enumerate() {
            row[0] = i;
        }
        for (j, cell) in d[0].iter_mut().enumerate() {
            *cell = j;
        }
        for i in 1..=n {
            for j in 1..=m {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut v = (d[i - 1][j] + 1)
                    .min(d[i][j - 1] + 1)
                    .min(d[i - 1][j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    v = v.min(d[i - 2][j - 2] + 1);
                }
                d[i][j] = v;
            }
        }
        d[n][m]
    }

    proptest::proptest! {
        #[test]
        fn edit_distance_matches_the_matrix(a in "[a-d_]{0,9}", b in "[a-d_]{0,9}") {
            proptest::prop_assert_eq!(edit_distance(&a, &b), osa_reference(&a, &b));
        }
    }

    fn d(class: ConfigErr) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            class,
            file: "f".into(),
            line: 1,
            column: 1,
            text: String::new(),
            message: "m".into(),
            help: None,
        }
    }

    #[test]
    fn exit_codes() {
        assert_eq!(config_test_exit_code(&[]), 0);
        assert_eq!(config_test_exit_code(&[d(ConfigErr::Ok)]), 0);
        assert_eq!(config_test_exit_code(&[d(ConfigErr::UnknownKeyword)]), 5);
        assert_eq!(config_test_exit_code(&[d(ConfigErr::BadIf)]), 4);
        // the numerically largest wins, even if "less severe"
        assert_eq!(
            config_test_exit_code(&[d(ConfigErr::BadIf), d(ConfigErr::GeneralError)]),
            5
        );
        assert_eq!(
            config_test_exit_code(&[d(ConfigErr::SecurityError), d(ConfigErr::Warning)]),
            6
        );
    }
}
