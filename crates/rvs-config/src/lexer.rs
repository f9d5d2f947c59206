//! Preprocessor and tokeniser: physical lines → logical lines with spans.
//!
//! Order of processing for each physical line (keepalived lib/parser.c):
//! multi-line `$NAME=` continuation → comment stripping (`!`/`#` outside
//! `"..."`, `\#`/`\!` literal) → `include*` → `@id`/`@^id` → `$NAME=VALUE`
//! definitions → `~SEQ`/`~LST` expansion → `$NAME`/`${NAME}` substitution
//! (recursive; the result is re-decommented and reprocessed) → brace
//! splitting and tokenising (default tokeniser).

use crate::diag::{ConfigErr, Diagnostic, Severity};
use crate::read;
use crate::LoadOptions;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Location of a token: file index (see `Loaded::files`), 1-based line and
/// 1-based column (characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct Span {
    pub file: u32,
    pub line: u32,
    pub col: u32,
}

/// A word of a logical line (default tokeniser).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Token {
    pub text: String,
    pub span: Span,
    /// The token was written in double quotes.
    pub quoted: bool,
}

/// Output of the lexer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A logical line (never empty). `raw` is the line text (after
    /// preprocessing) for the shell-like tokeniser.
    Line {
        tokens: Vec<Token>,
        raw: String,
    },
    Open(Span),
    Close(Span),
}

type SChars = Vec<(char, u32)>;

const MAX_DEPTH: usize = 24;
const MAX_INCLUDE_DEPTH: usize = 32;
const MAX_LINES: usize = 500_000;
const MAX_BRACE_EXPANSIONS: usize = 1024;
/// Preprocessing steps (logical lines handled, incl. ones that emit nothing).
const MAX_WORK: usize = 2_000_000;
/// Longest line substitution may produce.
const MAX_LINE_CHARS: usize = 1 << 20;

pub(crate) struct Lexer<'o> {
    opts: &'o LoadOptions,
    config_id: String,
    /// Display names of the files, indexed by `Span::file`.
    pub files: Vec<String>,
    dirs: Vec<PathBuf>,
    defs: HashMap<String, Vec<String>>,
    multiline: Option<(String, Vec<String>)>,
    pub items: Vec<Item>,
    pub diags: Vec<Diagnostic>,
    include_stack: Vec<PathBuf>,
    rng: u64,
    emitted: usize,
    work: usize,
    /// Checks applied to plain `include` (set by `include_check`).
    include_default: String,
    overflow_reported: bool,
    /// Set by a failing strict include (`includem` ...): keepalived exits
    /// "not configured" (6).
    pub strict_include_failure: Option<String>,
    /// Bytes of configuration text read so far, the main file included
    /// (capped at `read::MAX_TOTAL_BYTES`).
    bytes_read: u64,
}

fn is_ws(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\x0b' || c == '\x0c' || c == '\r' || c == '\n'
}

fn trim(s: &[(char, u32)]) -> SChars {
    let start = s.iter().position(|(c, _)| !is_ws(*c)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|(c, _)| !is_ws(*c))
        .map_or(start, |e| e + 1);
    s[start..end.max(start)].to_vec()
}

fn text(s: &[(char, u32)]) -> String {
    s.iter().map(|(c, _)| *c).collect()
}

/// Strip `!`/`#` comments outside double quotes; `\#`/`\!` are kept escaped
/// (converted to the literal character when the line is tokenised).
fn decomment(s: &[(char, u32)]) -> SChars {
    let mut out = Vec::with_capacity(s.len());
    let mut inq = false;
    let mut i = 0;
    while i < s.len() {
        let c = s[i].0;
        if c == '"' {
            inq = !inq;
        } else if !inq && c == '\\' && i + 1 < s.len() && matches!(s[i + 1].0, '#' | '!') {
            out.push(s[i]);
            out.push(s[i + 1]);
            i += 2;
            continue;
        } else if !inq && (c == '!' || c == '#') {
            break;
        }
        out.push(s[i]);
        i += 1;
    }
    trim(&out)
}

fn unescape_comment_chars(s: &[(char, u32)]) -> SChars {
    let mut out = Vec::with_capacity(s.len());
    let mut inq = false;
    let mut i = 0;
    while i < s.len() {
        let c = s[i].0;
        if c == '"' {
            inq = !inq;
        }
        if !inq && c == '\\' && i + 1 < s.len() && matches!(s[i + 1].0, '#' | '!') {
            out.push(s[i + 1]);
            i += 2;
            continue;
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `include`, `includer`, `includem`, `includew`, `includeb`, `includea`
/// followed by whitespace: returns the variant letter (' ' for plain).
fn include_variant(t: &str) -> Option<char> {
    let rest = t.strip_prefix("include")?;
    let mut it = rest.chars();
    match it.next()? {
        c if is_ws(c) => Some(' '),
        c @ ('r' | 'm' | 'w' | 'b' | 'a') => match it.next() {
            Some(w) if is_ws(w) => Some(c),
            _ => None,
        },
        _ => None,
    }
}

/// csh-style brace expansion (`a{b,c}d` → `abd`, `acd`), nested.
pub(crate) fn brace_expand(pat: &str) -> Vec<String> {
    let mut out = Vec::new();
    brace_expand_into(pat, &mut out, 0);
    out
}

fn brace_expand_into(pat: &str, out: &mut Vec<String>, depth: usize) {
    if out.len() >= MAX_BRACE_EXPANSIONS {
        return;
    }
    let chars: Vec<char> = pat.chars().collect();
    // find first '{' with a matching '}' that contains a top-level comma
    let mut i = 0;
    while i < chars.len() && depth < 16 {
        if chars[i] == '{' {
            let mut lvl = 0;
            let mut commas = Vec::new();
            let mut close = None;
            for (j, &c) in chars.iter().enumerate().skip(i) {
                match c {
                    '{' => lvl += 1,
                    '}' => {
                        lvl -= 1;
                        if lvl == 0 {
                            close = Some(j);
                            break;
                        }
                    }
                    ',' if lvl == 1 => commas.push(j),
                    _ => {}
                }
            }
            if let Some(close) = close {
                if !commas.is_empty() {
                    let pre: String = chars[..i].iter().collect();
                    let post: String = chars[close + 1..].iter().collect();
                    let mut start = i + 1;
                    for &end in commas.iter().chain(std::iter::once(&close)) {
                        let alt: String = chars[start..end].iter().collect();
                        brace_expand_into(&format!("{pre}{alt}{post}"), out, depth + 1);
                        start = end + 1;
                    }
                    return;
                }
            }
        }
        i += 1;
    }
    out.push(pat.to_string());
}

/// Shell-like tokeniser used for script keywords (keepalived's
/// `alloc_strvec_quoted_escaped`): `"` and `'` quoting, adjacent parts
/// concatenate, backslash escapes.
pub fn split_quoted_escaped(raw: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = raw.chars().collect();
    let mut words = Vec::new();
    let mut cur: Option<String> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if is_ws(c) {
            if let Some(w) = cur.take() {
                words.push(w);
            }
            i += 1;
        } else if c == '"' || c == '\'' {
            let q = c;
            let w = cur.get_or_insert_with(String::new);
            i += 1;
            let mut closed = false;
            while i < chars.len() {
                let d = chars[i];
                if d == q {
                    closed = true;
                    i += 1;
                    break;
                }
                if d == '\\' && i + 1 < chars.len() {
                    i += 1;
                    let e = chars[i];
                    i += 1;
                    match e {
                        'a' => w.push('\x07'),
                        'b' => w.push('\x08'),
                        'E' => w.push('\x1b'),
                        'f' => w.push('\x0c'),
                        'n' => w.push('\n'),
                        'r' => w.push('\r'),
                        't' => w.push('\t'),
                        'v' => w.push('\x0b'),
                        'x' => {
                            let mut v = 0u32;
                            let mut n = 0;
                            while n < 2 && i < chars.len() && chars[i].is_ascii_hexdigit() {
                                v = v * 16 + chars[i].to_digit(16).unwrap_or(0);
                                i += 1;
                                n += 1;
                            }
                            w.push(char::from_u32(v).unwrap_or('?'));
                        }
                        'c' => {
                            if i < chars.len() {
                                let ctl = (chars[i] as u32) & 0x1f;
                                w.push(char::from_u32(ctl).unwrap_or('?'));
                                i += 1;
                            }
                        }
                        '0'..='7' => {
                            let mut v = e.to_digit(8).unwrap_or(0);
                            let mut n = 1;
                            while n < 3 && i < chars.len() && ('0'..='7').contains(&chars[i]) {
                                v = v * 8 + chars[i].to_digit(8).unwrap_or(0);
                                i += 1;
                                n += 1;
                            }
                            w.push(char::from_u32(v).unwrap_or('?'));
                        }
                        other => w.push(other),
                    }
                    continue;
                }
                w.push(d);
                i += 1;
            }
            if !closed {
                let w: String = chars.iter().collect();
                return Err(format!("String '{}': missing terminating {}", w.trim(), q));
            }
        } else if c == '\\' && i + 1 < chars.len() {
            cur.get_or_insert_with(String::new).push(chars[i + 1]);
            i += 2;
        } else {
            cur.get_or_insert_with(String::new).push(c);
            i += 1;
        }
    }
    if let Some(w) = cur {
        words.push(w);
    }
    Ok(words)
}

/// Hostname's first label (keepalived's default config-id).
pub(crate) fn default_config_id() -> String {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    h.trim().split('.').next().unwrap_or("").to_string()
}

impl<'o> Lexer<'o> {
    pub(crate) fn new(opts: &'o LoadOptions) -> Self {
        let config_id = opts.config_id.clone().unwrap_or_else(default_config_id);
        Lexer {
            opts,
            config_id,
            files: Vec::new(),
            dirs: Vec::new(),
            defs: HashMap::new(),
            multiline: None,
            items: Vec::new(),
            diags: Vec::new(),
            include_stack: Vec::new(),
            rng: opts.random_seed.unwrap_or(0x2545_f491_4f6c_dd1d) | 1,
            emitted: 0,
            work: 0,
            include_default: String::new(),
            overflow_reported: false,
            strict_include_failure: None,
            bytes_read: 0,
        }
    }

    /// Mark the main file as being read (include loop detection).
    pub(crate) fn push_include_root(&mut self, canon: PathBuf) {
        self.include_stack.push(canon);
    }

    fn diag(&mut self, sev: Severity, class: ConfigErr, span: Span, text: &str, msg: String) {
        let file = self
            .files
            .get(span.file as usize)
            .cloned()
            .unwrap_or_default();
        self.diags.push(Diagnostic {
            severity: sev,
            class,
            file,
            line: span.line,
            column: span.col,
            text: text.to_string(),
            message: msg,
            help: None,
        });
    }

    /// Register a file and process its text.
    pub(crate) fn add_file(&mut self, name: String, dir: PathBuf, text: &str) {
        self.bytes_read += text.len() as u64;
        let idx = self.files.len() as u32;
        self.files.push(name);
        self.dirs.push(dir);
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (n, l) in text.split('\n').enumerate() {
            if self.emitted > MAX_LINES {
                break;
            }
            let lineno = (n + 1).min(u32::MAX as usize) as u32;
            self.physical_line(idx, lineno, l);
        }
        if let Some((name, lines)) = self.multiline.take() {
            self.defs.insert(name, lines);
        }
    }

    fn physical_line(&mut self, file: u32, lineno: u32, raw: &str) {
        let chars: SChars = raw
            .chars()
            .enumerate()
            .map(|(i, c)| (c, (i + 1).min(u32::MAX as usize) as u32))
            .filter(|(c, _)| *c != '\r')
            .collect();
        let line = decomment(&chars);
        if let Some((name, mut lines)) = self.multiline.take() {
            let mut t = text(&line);
            if let Some(stripped) = t.strip_suffix('\\') {
                t = stripped.trim_end().to_string();
                if !t.is_empty() {
                    lines.push(t);
                }
                self.multiline = Some((name, lines));
            } else {
                if !t.is_empty() {
                    lines.push(t);
                }
                self.defs.insert(name, lines);
            }
            return;
        }
        if line.is_empty() {
            return;
        }
        let t = text(&line);
        if let Some(variant) = include_variant(&t) {
            let span = Span {
                file,
                line: lineno,
                col: line[0].1,
            };
            self.include(span, variant, &line[7 + usize::from(variant != ' ')..]);
            return;
        }
        self.logical(file, lineno, line, 0);
    }

    fn include(&mut self, span: Span, variant: char, rest: &[(char, u32)]) {
        let rest = text(&unescape_comment_chars(rest));
        let patterns: Vec<String> = split_quoted_escaped(&rest)
            .unwrap_or_else(|_| rest.split_whitespace().map(str::to_string).collect());
        if patterns.is_empty() {
            self.diag(
                Severity::Error,
                ConfigErr::MissingParameter,
                span,
                "include",
                "include is missing a file name".into(),
            );
            return;
        }
        if self.opts.disable_includes {
            self.diag(
                Severity::Warning,
                ConfigErr::Ok,
                span,
                "include",
                "includes are disabled - ignoring".into(),
            );
            return;
        }
        if self.include_stack.len() >= MAX_INCLUDE_DEPTH {
            self.diag(
                Severity::Error,
                ConfigErr::GeneralError,
                span,
                "include",
                format!("include nesting deeper than {MAX_INCLUDE_DEPTH} - ignoring"),
            );
            return;
        }
        let base = self
            .dirs
            .get(span.file as usize)
            .cloned()
            .unwrap_or_default();
        for pat in patterns {
            let expanded = brace_expand(&pat);
            let braced = expanded.len() > 1;
            let mut all: Vec<PathBuf> = Vec::new();
            let mut any_missing = false;
            for p in &expanded {
                let full = if Path::new(p).is_absolute() {
                    PathBuf::from(p)
                } else {
                    base.join(p)
                };
                let full_s = full.to_string_lossy().to_string();
                let wild = p.contains(['*', '?', '[']);
                let mut matches: Vec<PathBuf> = match glob::glob(&full_s) {
                    Ok(paths) => paths.filter_map(Result::ok).collect(),
                    Err(_) => {
                        if full.exists() {
                            vec![full.clone()]
                        } else {
                            vec![]
                        }
                    }
                };
                matches.sort();
                if matches.is_empty() {
                    let levels: Vec<char> = if variant == ' ' {
                        self.include_default.chars().collect()
                    } else {
                        vec![variant]
                    };
                    let strict = levels.iter().any(|v| match v {
                        'a' | 'm' => true,
                        'w' => wild,
                        'b' => braced,
                        _ => false,
                    });
                    any_missing = true;
                    if strict {
                        let msg = format!("Config files missing '{pat}'.");
                        self.diag(
                            Severity::Fatal,
                            ConfigErr::FileNotFound,
                            span,
                            &pat,
                            msg.clone(),
                        );
                        self.strict_include_failure.get_or_insert(msg);
                    }
                }
                all.extend(matches);
            }
            if any_missing && matches!(variant, ' ' | 'r') && all.is_empty() {
                self.diag(
                    Severity::Warning,
                    ConfigErr::Ok,
                    span,
                    &pat,
                    format!("include '{pat}' matches no file"),
                );
            }
            for path in all {
                let canon = path.canonicalize().unwrap_or_else(|_| path.clone());
                if self.include_stack.contains(&canon) {
                    self.diag(
                        Severity::Error,
                        ConfigErr::GeneralError,
                        span,
                        &pat,
                        format!(
                            "include loop: {} includes itself - ignoring",
                            path.display()
                        ),
                    );
                    continue;
                }
                let readable = if variant == ' ' {
                    self.include_default.contains(['r', 'a'])
                } else {
                    matches!(variant, 'r' | 'a')
                };
                let read = read::read_bounded(&path, read::MAX_FILE_BYTES).and_then(|bytes| {
                    if self.bytes_read + bytes.len() as u64 > read::MAX_TOTAL_BYTES {
                        Err(read::ReadError::TooBig(read::MAX_TOTAL_BYTES))
                    } else {
                        Ok(bytes)
                    }
                });
                match read {
                    Ok(bytes) => {
                        let s = String::from_utf8_lossy(&bytes).into_owned();
                        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                        self.include_stack.push(canon);
                        // a multi-line definition does not continue across files
                        if let Some((n, l)) = self.multiline.take() {
                            self.defs.insert(n, l);
                        }
                        self.add_file(path.to_string_lossy().into_owned(), dir, &s);
                        self.include_stack.pop();
                    }
                    Err(e) => {
                        let total =
                            matches!(e, read::ReadError::TooBig(c) if c == read::MAX_TOTAL_BYTES);
                        let msg = if total {
                            format!(
                                "Configuration files exceed {} MiB in total - skipping '{}'",
                                read::MAX_TOTAL_BYTES >> 20,
                                path.display()
                            )
                        } else {
                            e.message(&path)
                        };
                        if readable {
                            // keepalived's INCLUDE_R: a failed strict include
                            // leaves the daemon unconfigured.
                            self.diag(
                                Severity::Fatal,
                                ConfigErr::FileNotFound,
                                span,
                                &pat,
                                msg.clone(),
                            );
                            self.strict_include_failure.get_or_insert(msg);
                        } else if matches!(
                            e,
                            read::ReadError::Directory | read::ReadError::NotRegular
                        ) {
                            // keepalived logs these and goes on (CONFIG_OK).
                            self.diag(Severity::Warning, ConfigErr::Ok, span, &pat, msg);
                        } else {
                            self.diag(Severity::Error, ConfigErr::GeneralError, span, &pat, msg);
                        }
                    }
                }
            }
        }
    }

    fn logical(&mut self, file: u32, lineno: u32, mut line: SChars, depth: usize) {
        if line.is_empty() || self.emitted > MAX_LINES {
            return;
        }
        self.work += 1;
        if self.work > MAX_WORK {
            self.emitted = MAX_LINES + 1;
            self.emit(file, lineno, &[]);
            return;
        }
        // conditional
        if line[0].0 == '@' {
            let neg = line.get(1).is_some_and(|c| c.0 == '^');
            let start = if neg { 2 } else { 1 };
            let Some(end) = line.iter().position(|(c, _)| is_ws(*c)) else {
                return; // a lone `@id` line is dropped
            };
            let id = text(&line[start.min(end)..end]);
            if (id == self.config_id) == neg {
                return;
            }
            line = trim(&line[end..]);
            if line.is_empty() {
                return;
            }
        }
        // definition
        if line[0].0 == '$' {
            if let Some(eq) = self.definition_name_end(&line) {
                let name = text(&line[1..eq]);
                let mut value = text(&trim(&line[eq + 1..]));
                if let Some(v) = value.strip_suffix('\\') {
                    value = v.trim_end().to_string();
                    let lines = if value.is_empty() {
                        vec![]
                    } else {
                        vec![value]
                    };
                    self.multiline = Some((name, lines));
                } else {
                    self.defs.insert(name, vec![value]);
                }
                return;
            }
        }
        // sequences / lists
        if line[0].0 == '~' {
            let t = text(&line);
            if t.starts_with("~SEQ(") || t.starts_with("~SEQx(") || t.starts_with("~LST(") {
                self.sequence(file, lineno, &line, depth);
            } else {
                self.emit(file, lineno, &line);
            }
            return;
        }
        if depth < MAX_DEPTH && line.iter().any(|(c, _)| *c == '$') {
            if let Some(new) = self.substitute(file, lineno, &line) {
                // split multi-line replays, re-decomment and reprocess
                let mut cur = Vec::new();
                for ch in new.into_iter().chain(std::iter::once(('\n', 0))) {
                    if ch.0 == '\n' {
                        let piece = decomment(&cur);
                        cur.clear();
                        self.logical(file, lineno, piece, depth + 1);
                    } else {
                        cur.push(ch);
                    }
                }
                return;
            }
        }
        self.emit(file, lineno, &line);
    }

    fn definition_name_end(&self, line: &[(char, u32)]) -> Option<usize> {
        if !line.get(1).is_some_and(|c| is_name_start(c.0)) {
            return None;
        }
        let mut i = 2;
        while i < line.len() && is_name_char(line[i].0) {
            i += 1;
        }
        (line.get(i)?.0 == '=').then_some(i)
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn lookup(&mut self, name: &str, params: &[&str], span: Span) -> Option<String> {
        let check = |lex: &mut Self, min: usize, max: usize| {
            if params.len() < min || params.len() > max {
                lex.diag(
                    Severity::Warning,
                    ConfigErr::GeneralError,
                    span,
                    name,
                    format!(
                        "Definition {name} requires between {min} and {max} parameters, {} specified.",
                        params.len()
                    ),
                );
            }
        };
        match name {
            "_PWD" => {
                check(self, 0, 0);
                let d = self
                    .dirs
                    .get(span.file as usize)
                    .cloned()
                    .unwrap_or_default();
                Some(d.to_string_lossy().into_owned())
            }
            "_INSTANCE" => {
                check(self, 0, 0);
                Some(self.config_id.clone())
            }
            "_HASH" => Some("\\#".into()),
            "_BANG" => Some("\\!".into()),
            "_ENV" => {
                check(self, 1, 1);
                let var = params.first()?;
                let v = match &self.opts.env {
                    Some(m) => m.get(*var).cloned(),
                    None => std::env::var(var).ok(),
                };
                Some(v.unwrap_or_default())
            }
            "_RANDOM" => {
                check(self, 0, 2);
                let p: Vec<i64> = params.iter().filter_map(|p| p.parse().ok()).collect();
                let (min, max) = match p.as_slice() {
                    [] => (0, 32767),
                    [max] => (0, *max),
                    [min, max, ..] => (*min, *max),
                };
                let (min, max) = if max < min { (max, min) } else { (min, max) };
                let range = (max as i128 - min as i128 + 1) as u128;
                let r = (self.next_random() as u128 % range) as i128 + min as i128;
                Some(r.to_string())
            }
            _ => self.defs.get(name).map(|l| l.join("\n")),
        }
    }

    /// Returns `None` when nothing was substituted.
    fn substitute(&mut self, file: u32, lineno: u32, s: &[(char, u32)]) -> Option<SChars> {
        let mut out: SChars = Vec::with_capacity(s.len());
        let mut changed = false;
        let mut i = 0;
        while i < s.len() {
            let (c, col) = s[i];
            if c == '$' && i + 1 < s.len() {
                let span = Span {
                    file,
                    line: lineno,
                    col,
                };
                if s[i + 1].0 == '{' {
                    if let Some(close) = s[i + 2..].iter().position(|(c, _)| *c == '}') {
                        let inner = text(&s[i + 2..i + 2 + close]);
                        let mut parts = inner.split_whitespace();
                        if let Some(name) = parts.next() {
                            let params: Vec<&str> = parts.collect();
                            if let Some(v) = self.lookup(name, &params, span) {
                                if out.len() + v.len() > MAX_LINE_CHARS {
                                    self.diag(
                                        Severity::Error,
                                        ConfigErr::GeneralError,
                                        span,
                                        "$",
                                        format!("line longer than {MAX_LINE_CHARS} characters after substitution - ignored"),
                                    );
                                    return Some(Vec::new());
                                }
                                out.extend(v.chars().map(|c| (c, col)));
                                changed = true;
                                i += close + 3;
                                continue;
                            }
                        }
                    }
                } else if is_name_start(s[i + 1].0) {
                    let mut j = i + 1;
                    while j < s.len() && is_name_char(s[j].0) {
                        j += 1;
                    }
                    if j == s.len() || is_ws(s[j].0) {
                        let name = text(&s[i + 1..j]);
                        if let Some(v) = self.lookup(&name, &[], span) {
                            if out.len() + v.len() > MAX_LINE_CHARS {
                                self.diag(
                                    Severity::Error,
                                    ConfigErr::GeneralError,
                                    span,
                                    "$",
                                    format!("line longer than {MAX_LINE_CHARS} characters after substitution - ignored"),
                                );
                                return Some(Vec::new());
                            }
                            out.extend(v.chars().map(|c| (c, col)));
                            changed = true;
                            i = j;
                            continue;
                        }
                    }
                }
            }
            out.push((c, col));
            i += 1;
            if out.len() > MAX_LINE_CHARS {
                let span = Span {
                    file,
                    line: lineno,
                    col: s[0].1,
                };
                self.diag(
                    Severity::Error,
                    ConfigErr::GeneralError,
                    span,
                    "$",
                    format!(
                        "line longer than {MAX_LINE_CHARS} characters after substitution - ignored"
                    ),
                );
                return Some(Vec::new());
            }
        }
        changed.then_some(out)
    }

    fn sequence(&mut self, file: u32, lineno: u32, line: &[(char, u32)], depth: usize) {
        let span = Span {
            file,
            line: lineno,
            col: line[0].1,
        };
        let t = text(line);
        let kind = if t.starts_with("~SEQx(") {
            "SEQx"
        } else if t.starts_with("~SEQ(") {
            "SEQ"
        } else {
            "LST"
        };
        let open = kind.len() + 1;
        let Some(close) = line.iter().position(|(c, _)| *c == ')') else {
            let w = if kind == "LST" { "~LST" } else { "~SEQ" };
            self.diag(
                Severity::Error,
                ConfigErr::GeneralError,
                span,
                &t,
                format!("{w} missing terminating ')' '{t}'"),
            );
            return;
        };
        let inner_chars = &line[open + 1..close.max(open + 1)];
        // definitions may be used in the parameters: ~SEQ(i, 1, ${N})
        let inner = match self.substitute(file, lineno, inner_chars) {
            Some(sub) => text(&sub),
            None => text(inner_chars),
        };
        let rest = trim(&line[close + 1..]);
        if depth >= MAX_DEPTH {
            return;
        }
        // split on top-level commas
        let mut params = Vec::new();
        let mut lvl = 0;
        let mut cur = String::new();
        for c in inner.chars() {
            match c {
                '{' => lvl += 1,
                '}' => lvl -= 1,
                ',' if lvl == 0 => {
                    params.push(cur.trim().to_string());
                    cur.clear();
                    continue;
                }
                _ => {}
            }
            cur.push(c);
        }
        params.push(cur.trim().to_string());
        // (names, values-per-iteration)
        let mut names: Vec<String> = Vec::new();
        let mut iterations: Vec<Vec<String>> = Vec::new();
        let invalid = |lex: &mut Self| {
            let w = if kind == "LST" { "~LST" } else { "~SEQ" };
            lex.diag(
                Severity::Error,
                ConfigErr::GeneralError,
                span,
                &t,
                format!("Invalid {w} definition '{t}'"),
            );
        };
        if kind == "LST" {
            if params.len() < 2 || params[0].is_empty() {
                return invalid(self);
            }
            let unbrace = |s: &str| -> Vec<String> {
                match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(inner) => inner.split(',').map(|v| v.trim().to_string()).collect(),
                    None => vec![s.to_string()],
                }
            };
            names = unbrace(&params[0]);
            for p in &params[1..] {
                iterations.push(unbrace(p));
            }
        } else {
            let nums: Vec<Option<i64>> =
                params[1..].iter().map(|p| p.parse::<i64>().ok()).collect();
            if params[0].is_empty()
                || nums.is_empty()
                || nums.iter().any(Option::is_none)
                || nums.len() > 3
            {
                return invalid(self);
            }
            let nums: Vec<i64> = nums.into_iter().flatten().collect();
            let (start, step, end) = match nums.as_slice() {
                [end] => (
                    if *end < 0 { -1 } else { 1 },
                    if *end < 0 { -1 } else { 1 },
                    *end,
                ),
                [start, end] => (*start, if end < start { -1 } else { 1 }, *end),
                [start, step, end] => (*start, *step, *end),
                _ => return invalid(self),
            };
            if step == 0 || (step > 0 && end < start) || (step < 0 && end > start) {
                return invalid(self);
            }
            if kind == "SEQx" && (start < 0 || end < 0) {
                self.diag(
                    Severity::Error,
                    ConfigErr::GeneralError,
                    span,
                    &t,
                    format!("~SEQx is only valid for positive numbers '{t}'"),
                );
                return;
            }
            names.push(params[0].clone());
            let mut v = start;
            let mut n = 0usize;
            loop {
                if (step > 0 && v > end) || (step < 0 && v < end) || n > 65536 {
                    break;
                }
                iterations.push(vec![if kind == "SEQx" {
                    format!("{v:x}")
                } else {
                    v.to_string()
                }]);
                n += 1;
                match v.checked_add(step) {
                    Some(nv) => v = nv,
                    None => break,
                }
            }
        }
        let saved: Vec<Option<Vec<String>>> =
            names.iter().map(|n| self.defs.get(n).cloned()).collect();
        for vals in iterations {
            if self.emitted > MAX_LINES {
                break;
            }
            for (n, v) in names.iter().zip(vals.iter()) {
                self.defs.insert(n.clone(), vec![v.clone()]);
            }
            self.logical(file, lineno, rest.clone(), depth + 1);
        }
        for (n, s) in names.iter().zip(saved) {
            match s {
                Some(v) => self.defs.insert(n.clone(), v),
                None => self.defs.remove(n),
            };
        }
    }

    fn emit(&mut self, file: u32, lineno: u32, line: &[(char, u32)]) {
        if self.emitted > MAX_LINES {
            if !self.overflow_reported {
                self.overflow_reported = true;
                let span = Span {
                    file,
                    line: lineno,
                    col: 1,
                };
                self.diag(
                    Severity::Fatal,
                    ConfigErr::Fatal,
                    span,
                    "",
                    format!("configuration expands to more than {MAX_LINES} lines - truncated"),
                );
            }
            return;
        }
        self.emitted += 1;
        let line = unescape_comment_chars(line);
        let mut diags = Vec::new();
        let before = self.items.len();
        tokenize(
            &line,
            file,
            lineno,
            &mut Vec::new(),
            &mut self.items,
            &mut diags,
        );
        // global `include_check [readable|match|wildcard_match|brace_match]`
        // sets the checks of later plain `include`s
        if let Some(Item::Line { tokens, .. }) = self.items.get(before) {
            if tokens[0].text == "include_check" {
                let mut level = String::new();
                for t in &tokens[1..] {
                    match t.text.as_str() {
                        "readable" => level.push('r'),
                        "match" => level.push('m'),
                        "wildcard_match" => level.push('w'),
                        "brace_match" => level.push('b'),
                        _ => {}
                    }
                }
                self.include_default = if tokens.len() == 1 { "a".into() } else { level };
            }
        }
        for (span, t) in diags {
            self.diag(
                Severity::Error,
                ConfigErr::UnmatchedQuote,
                span,
                &t,
                format!("Unmatched quote: '{t}'"),
            );
        }
    }
}

/// Default tokeniser with brace splitting. With `items` the tokens are
/// pushed as `Item`s; `flat` additionally receives every token.
fn tokenize(
    s: &[(char, u32)],
    file: u32,
    line: u32,
    flat: &mut Vec<Token>,
    items: &mut Vec<Item>,
    errs: &mut Vec<(Span, String)>,
) {
    let mut toks: Vec<Token> = Vec::new();
    let mut seg_start = 0;
    let mut i = 0;
    let sp = |col: u32| Span { file, line, col };
    let flush = |toks: &mut Vec<Token>, items: &mut Vec<Item>, a: usize, b: usize| {
        if !toks.is_empty() {
            let raw = text(&s[a..b]).trim().to_string();
            items.push(Item::Line {
                tokens: std::mem::take(toks),
                raw,
            });
        }
    };
    while i < s.len() {
        let (c, col) = s[i];
        if is_ws(c) {
            i += 1;
        } else if c == '{' || c == '}' {
            flush(&mut toks, items, seg_start, i);
            items.push(if c == '{' {
                Item::Open(sp(col))
            } else {
                Item::Close(sp(col))
            });
            i += 1;
            seg_start = i;
        } else if c == '"' {
            match s[i + 1..].iter().position(|(c, _)| *c == '"') {
                Some(end) => {
                    let t = Token {
                        text: text(&s[i + 1..i + 1 + end]),
                        span: sp(col),
                        quoted: true,
                    };
                    flat.push(t.clone());
                    toks.push(t);
                    i += end + 2;
                }
                None => {
                    let rest = text(&s[i..]);
                    errs.push((sp(col), rest));
                    let t = Token {
                        text: text(&s[i + 1..]),
                        span: sp(col),
                        quoted: true,
                    };
                    flat.push(t.clone());
                    toks.push(t);
                    i = s.len();
                }
            }
        } else {
            let start = i;
            while i < s.len() && !is_ws(s[i].0) && !matches!(s[i].0, '"' | '{' | '}') {
                // an unresolved `${NAME}` stays one word (no brace split)
                if s[i].0 == '$' && s.get(i + 1).is_some_and(|c| c.0 == '{') {
                    if let Some(end) = s[i..].iter().position(|(c, _)| *c == '}') {
                        i += end + 1;
                        continue;
                    }
                }
                i += 1;
            }
            let t = Token {
                text: text(&s[start..i]),
                span: sp(col),
                quoted: false,
            };
            flat.push(t.clone());
            toks.push(t);
        }
    }
    flush(&mut toks, items, seg_start, s.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_of_included_text_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.conf"), "global_defs {\n}\n").unwrap();
        let opts = LoadOptions::default();
        let mut lx = Lexer::new(&opts);
        // As if 64 MiB minus 4 bytes had been read already.
        lx.bytes_read = read::MAX_TOTAL_BYTES - 4;
        lx.add_file(
            "t.conf".into(),
            dir.path().to_path_buf(),
            "include a.conf\n",
        );
        assert_eq!(lx.files.len(), 1, "a.conf must not be read");
        let d = &lx.diags[0];
        assert_eq!(
            d.message,
            format!(
                "Configuration files exceed 64 MiB in total - skipping '{}'",
                dir.path().join("a.conf").display()
            )
        );
        assert_eq!(
            (d.severity, d.class),
            (Severity::Error, ConfigErr::GeneralError)
        );
    }

    fn lex(src: &str, id: &str) -> (Vec<String>, Vec<Diagnostic>) {
        let opts = LoadOptions {
            config_id: Some(id.into()),
            ..Default::default()
        };
        let mut lx = Lexer::new(&opts);
        lx.add_file("t.conf".into(), PathBuf::from("/nonexistent"), src);
        let lines = lx
            .items
            .iter()
            .map(|it| match it {
                Item::Line { tokens, .. } => tokens
                    .iter()
                    .map(|t| t.text.as_str())
                    .collect::<Vec<_>>()
                    .join("|"),
                Item::Open(_) => "{".into(),
                Item::Close(_) => "}".into(),
            })
            .collect();
        (lines, lx.diags)
    }

    #[test]
    fn comments_and_escapes() {
        let (l, _) = lex("a b ! c\n# x\n  d \"e # f\" g # h\nx\\#y \\!z\n", "n");
        assert_eq!(l, vec!["a|b", "d|e # f|g", "x#y|!z"]);
    }

    #[test]
    fn braces_split_lines() {
        let (l, _) = lex("vrrp_instance X { state MASTER }\nfoo\n{\n}\n", "n");
        assert_eq!(
            l,
            vec!["vrrp_instance|X", "{", "state|MASTER", "}", "foo", "{", "}"]
        );
    }

    #[test]
    fn default_tokeniser_quotes() {
        let (l, d) = lex("ab\"c d\" e\nx \"unterminated y\n", "n");
        assert_eq!(l, vec!["ab|c d|e", "x|unterminated y"]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].message, "Unmatched quote: '\"unterminated y'");
        assert_eq!(d[0].class, ConfigErr::UnmatchedQuote);
    }

    #[test]
    fn spans() {
        let opts = LoadOptions {
            config_id: Some("n".into()),
            ..Default::default()
        };
        let mut lx = Lexer::new(&opts);
        lx.add_file("t".into(), PathBuf::new(), "\n   key  val {\n");
        match &lx.items[0] {
            Item::Line { tokens, .. } => {
                assert_eq!(
                    tokens[0].span,
                    Span {
                        file: 0,
                        line: 2,
                        col: 4
                    }
                );
                assert_eq!(tokens[1].span.col, 9);
            }
            _ => panic!(),
        }
        assert_eq!(
            lx.items[1],
            Item::Open(Span {
                file: 0,
                line: 2,
                col: 13
            })
        );
    }

    #[test]
    fn conditionals() {
        let src = "@high a 1\n@low a 2\n@^high b 3\n@^low b 4\n@high\nc\n";
        assert_eq!(lex(src, "high").0, vec!["a|1", "b|4", "c"]);
        assert_eq!(lex(src, "low").0, vec!["a|2", "b|3", "c"]);
    }

    #[test]
    fn definitions() {
        let src =
            "$IP=10.0.0.1\n$PORT=80\nvs $IP $PORT\nx ${IP}:${PORT}\ny $IP.1 $UNDEF ${UNDEF}\n";
        assert_eq!(
            lex(src, "n").0,
            vec!["vs|10.0.0.1|80", "x|10.0.0.1:80", "y|$IP.1|$UNDEF|${UNDEF}"]
        );
    }

    #[test]
    fn definitions_are_lazy_and_recursive() {
        let src = "$A=${B}x\n$B=1\nv $A\n$B=2\nv $A\n$R=$R\nr $R\n";
        let (l, _) = lex(src, "n");
        assert_eq!(&l[..2], &["v|1x", "v|2x"]);
        assert!(l[2].starts_with('r'));
    }

    #[test]
    fn multiline_definition() {
        let src = "$BLK= \\\n  real_server 1.1.1.1 80 { \\\n    weight 2 \\\n  }\nvs {\n$BLK\n}\n";
        assert_eq!(
            lex(src, "n").0,
            vec![
                "vs",
                "{",
                "real_server|1.1.1.1|80",
                "{",
                "weight|2",
                "}",
                "}"
            ]
        );
    }

    #[test]
    fn definition_with_conditional_and_comment() {
        let src = "@n $X=yes\n@^n $X=no\nv $X\n$C=a ${_HASH} b\nw $C\n";
        assert_eq!(lex(src, "n").0, vec!["v|yes", "w|a|#|b"]);
    }

    #[test]
    fn predefined() {
        let mut env = std::collections::BTreeMap::new();
        env.insert("FOO".to_string(), "bar".to_string());
        let opts = LoadOptions {
            config_id: Some("node1".into()),
            env: Some(env),
            random_seed: Some(7),
            ..Default::default()
        };
        let mut lx = Lexer::new(&opts);
        lx.add_file(
            "t".into(),
            PathBuf::from("/etc/k"),
            "a ${_PWD} ${_INSTANCE} ${_ENV FOO} ${_BANG}\nr ${_RANDOM 5 6}\n",
        );
        let Item::Line { tokens, .. } = &lx.items[0] else {
            panic!()
        };
        let t: Vec<&str> = tokens.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(t, vec!["a", "/etc/k", "node1", "bar", "!"]);
        let Item::Line { tokens, .. } = &lx.items[1] else {
            panic!()
        };
        let r: i64 = tokens[1].text.parse().unwrap();
        assert!((5..=6).contains(&r));
    }

    #[test]
    fn predefined_defaults_and_parameter_counts() {
        let opts = LoadOptions {
            config_id: Some("n".into()),
            env: Some(Default::default()),
            random_seed: Some(9),
            ..Default::default()
        };
        let mut lx = Lexer::new(&opts);
        lx.add_file(
            "t".into(),
            PathBuf::new(),
            "a ${_RANDOM} ${_ENV NOPE}x ${_INSTANCE extra}\n",
        );
        let Item::Line { tokens, .. } = &lx.items[0] else {
            panic!()
        };
        let r: i64 = tokens[1].text.parse().unwrap();
        assert!((0..=32767).contains(&r));
        assert_eq!(tokens[2].text, "x", "unset environment variable -> empty");
        assert_eq!(tokens[3].text, "n");
        assert_eq!(lx.diags.len(), 1);
        assert_eq!(
            lx.diags[0].message,
            "Definition _INSTANCE requires between 0 and 0 parameters, 1 specified."
        );
        // reproducible with a seed
        let mut lx2 = Lexer::new(&opts);
        lx2.add_file("t".into(), PathBuf::new(), "a ${_RANDOM}\n");
        let Item::Line { tokens: t2, .. } = &lx2.items[0] else {
            panic!()
        };
        assert_eq!(t2[1].text, tokens[1].text);
    }

    #[test]
    fn bom_and_crlf() {
        assert_eq!(
            lex("\u{feff}global_defs {\r\n router_id x\r\n}\r\n", "n").0,
            vec!["global_defs", "{", "router_id|x", "}"]
        );
    }

    #[test]
    fn seq_and_lst() {
        assert_eq!(
            lex("~SEQ(i, 1, 3) rs 10.0.0.$i\n", "n").0,
            vec!["rs|10.0.0.1", "rs|10.0.0.2", "rs|10.0.0.3"]
        );
        assert_eq!(lex("~SEQ(i, 3) a $i\n", "n").0, vec!["a|1", "a|2", "a|3"]);
        assert_eq!(lex("$N=2\n~SEQ(i, ${N}) a $i\n", "n").0, vec!["a|1", "a|2"]);
        assert_eq!(
            lex("~SEQ(i, 10, -5, 0) a $i\n", "n").0,
            vec!["a|10", "a|5", "a|0"]
        );
        assert_eq!(
            lex("~SEQx(i, 9, 11) a $i\n", "n").0,
            vec!["a|9", "a|a", "a|b"]
        );
        assert_eq!(lex("~LST(v, x, y) a $v\n", "n").0, vec!["a|x", "a|y"]);
        assert_eq!(
            lex("~LST({a,b}, {1,2}, {3,4}) l $a $b\n", "n").0,
            vec!["l|1|2", "l|3|4"]
        );
        assert_eq!(
            lex("~SEQ(i, 1, 2) ~LST(v, p, q) n ${i}${v}\n", "n").0,
            vec!["n|1p", "n|1q", "n|2p", "n|2q"]
        );
        assert_eq!(lex("~other $X\n", "n").0, vec!["~other|$X"]);
        let (_, d) = lex("~SEQ(i, 1, 2 a\n~SEQ(i, x) a\n~SEQx(i, -3, -1) a\n", "n");
        assert_eq!(d.len(), 3);
        assert!(d[0].message.starts_with("~SEQ missing terminating ')'"));
        assert!(d[1].message.starts_with("Invalid ~SEQ definition"));
        assert!(d[2]
            .message
            .starts_with("~SEQx is only valid for positive numbers"));
    }

    #[test]
    fn braces_expansion() {
        assert_eq!(brace_expand("a{b,c}d"), vec!["abd", "acd"]);
        assert_eq!(
            brace_expand("{x,y{1,2}}.conf"),
            vec!["x.conf", "y1.conf", "y2.conf"]
        );
        assert_eq!(brace_expand("plain{}"), vec!["plain{}"]);
    }

    #[test]
    fn include_variants() {
        assert_eq!(include_variant("include x"), Some(' '));
        assert_eq!(include_variant("includem\tx"), Some('m'));
        assert_eq!(include_variant("includex y"), None);
        assert_eq!(include_variant("include"), None);
    }

    #[test]
    fn quoted_escaped() {
        assert_eq!(
            split_quoted_escaped(r#"notify "/bin/x 'a b'" root"#).unwrap(),
            vec!["notify", "/bin/x 'a b'", "root"]
        );
        assert_eq!(
            split_quoted_escaped(r#"abcd" efg h jkl "mnop"#).unwrap(),
            vec!["abcd efg h jkl mnop"]
        );
        assert_eq!(
            split_quoted_escaped(r#"'a\tb' "\x41\101" c\ d"#).unwrap(),
            vec!["a\tb", "AA", "c d"]
        );
        assert!(split_quoted_escaped("\"abc").is_err());
    }
}
