//! Keyword arguments: blocks, numbers, timers, booleans, addresses,
//! scripts and value blocks, each with keepalived's messages.

use super::Ctx;
use crate::diag::{ConfigErr, Severity};
use crate::lexer::{split_quoted_escaped, Span, Token};
use crate::model::*;
use crate::tree::Node;
use std::net::IpAddr;
use std::time::Duration;

pub(super) fn join(words: &[&str]) -> String {
    words.join(" ")
}

/// Parse a keepalived timer (seconds, up to 6 decimals).
fn parse_timer(s: &str) -> Result<Duration, &'static str> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err("invalid");
    }
    let secs: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| "range")?
    };
    if secs > 100_000_000 {
        return Err("range");
    }
    let mut micros = 0u64;
    for (i, b) in frac.bytes().take(6).enumerate() {
        micros += u64::from(b - b'0') * 10u64.pow(5 - i as u32);
    }
    let d = Duration::from_secs(secs) + Duration::from_micros(micros);
    if frac.len() > 6 {
        return Err("decimals");
    }
    Ok(d)
}

impl Ctx<'_> {
    pub(super) fn block<'n>(&mut self, n: &'n Node) -> &'n [Node] {
        match &n.block {
            Some(b) => &b.children,
            None => {
                let t = n.keyword.text.clone();
                self.push(
                    Severity::Error,
                    ConfigErr::MissingBob,
                    n.span(),
                    &t,
                    "Missing '{' at beginning of configuration block".into(),
                    None,
                );
                &[]
            }
        }
    }

    pub(super) fn arg<'n>(&mut self, n: &'n Node, i: usize) -> Option<&'n str> {
        match n.args.get(i) {
            Some(t) => Some(&t.text),
            None => {
                let prev = if i == 0 {
                    &n.keyword.text
                } else {
                    &n.args[i - 1].text
                };
                let kw = n.keyword.text.clone();
                self.push(
                    Severity::Error,
                    ConfigErr::MissingParameter,
                    n.span(),
                    &kw,
                    format!(
                        "*** Configuration line starting `{kw}` is missing a parameter after keyword `{prev}` at word position {}",
                        i + 1
                    ),
                    None,
                );
                None
            }
        }
    }

    pub(super) fn arg_span(n: &Node, i: usize) -> Span {
        n.args.get(i).map_or(n.span(), |t| t.span)
    }

    /// A keyword that takes one value (argument `i`): no block, and no
    /// words after the value when it is the first.
    fn single_value(&mut self, n: &Node, i: usize) {
        self.no_block(n);
        if i == 0 {
            self.extra_args(n, 1);
        }
    }

    pub(super) fn string(&mut self, n: &Node, i: usize) -> Option<String> {
        self.single_value(n, i);
        self.arg(n, i).map(str::to_string)
    }

    pub(super) fn int(&mut self, n: &Node, i: usize, min: i64, max: i64) -> Option<i64> {
        let s = self.arg(n, i)?.to_string();
        let span = Self::arg_span(n, i);
        match s.parse::<i64>() {
            Ok(v) if (min..=max).contains(&v) => Some(v),
            Ok(_) => {
                self.bad_number(
                    span,
                    &s,
                    format!("number '{s}' outside range [{min}, {max}]"),
                );
                None
            }
            Err(_) => {
                self.bad_number(span, &s, format!("invalid number '{s}'"));
                None
            }
        }
    }

    pub(super) fn uint<T: TryFrom<i64>>(
        &mut self,
        n: &Node,
        i: usize,
        min: i64,
        max: i64,
    ) -> Option<T> {
        self.single_value(n, i);
        self.hdr_uint(n, i, min, max)
    }

    /// Numeric argument of a block header (no "unexpected block" check).
    pub(super) fn hdr_uint<T: TryFrom<i64>>(
        &mut self,
        n: &Node,
        i: usize,
        min: i64,
        max: i64,
    ) -> Option<T> {
        self.int(n, i, min, max).and_then(|v| T::try_from(v).ok())
    }

    pub(super) fn timer(&mut self, n: &Node, i: usize, min: f64, max: f64) -> Option<Duration> {
        self.single_value(n, i);
        let s = self.arg(n, i)?.to_string();
        let span = Self::arg_span(n, i);
        match parse_timer(&s) {
            Ok(d) if d.as_secs_f64() >= min && d.as_secs_f64() <= max => Some(d),
            Ok(_) | Err("range") => {
                self.bad_number(
                    span,
                    &s,
                    format!("number '{s}' outside range [{min:.6}, {max:.6}]"),
                );
                None
            }
            Err("decimals") => {
                self.push(
                    Severity::Warning,
                    ConfigErr::InvalidNumber,
                    span,
                    &s,
                    format!("WARNING - number '{s}' has too many decimal places"),
                    None,
                );
                parse_timer(&s[..s.find('.').map_or(s.len(), |p| p + 7)]).ok()
            }
            Err(_) => {
                self.bad_number(span, &s, format!("invalid number '{s}'"));
                None
            }
        }
    }

    /// Optional `<BOOL>`; bare keyword = true.
    pub(super) fn boolean(&mut self, n: &Node, i: usize) -> Option<bool> {
        self.single_value(n, i);
        let Some(t) = n.args.get(i) else {
            return Some(true);
        };
        match t.text.to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" => Some(true),
            "off" | "false" | "no" => Some(false),
            _ => {
                let s = t.text.clone();
                self.err(t.span, &s, format!("invalid boolean '{s}' - ignoring"));
                None
            }
        }
    }

    pub(super) fn ip(&mut self, n: &Node, i: usize) -> Option<IpAddr> {
        self.single_value(n, i);
        let s = self.arg(n, i)?.to_string();
        match s.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.err(
                    Self::arg_span(n, i),
                    &s,
                    format!("invalid IP address '{s}' for {}", n.keyword.text),
                );
                None
            }
        }
    }

    /// `"cmd args" [user [group]]` (shell-like tokeniser).
    pub(super) fn script(&mut self, n: &Node) -> Option<Script> {
        self.no_block(n);
        let words = match split_quoted_escaped(&n.raw) {
            Ok(w) => w,
            Err(e) => {
                let t = n.raw.clone();
                self.push(
                    Severity::Error,
                    ConfigErr::UnmatchedQuote,
                    n.span(),
                    &t,
                    e,
                    None,
                );
                return None;
            }
        };
        if words.len() < 2 {
            self.arg(n, 0);
            return None;
        }
        let first_quoted = n.args.first().is_some_and(|t| t.quoted)
            || n.raw
                .get(n.keyword.text.len()..)
                .is_some_and(|r| r.trim_start().starts_with('\''));
        let kw = n.keyword.text.as_str();
        let takes_user = first_quoted || kw.starts_with("notify") || kw.starts_with("quorum");
        let (command, user, group) = if takes_user || words.len() == 2 {
            (
                words[1].clone(),
                words.get(2).cloned(),
                words.get(3).cloned(),
            )
        } else {
            (words[1..].join(" "), None, None)
        };
        let argv = split_quoted_escaped(&command)
            .unwrap_or_else(|_| command.split_whitespace().map(str::to_string).collect());
        Some(Script {
            command,
            argv,
            user,
            group,
        })
    }

    pub(super) fn script_user(&mut self, n: &Node) -> Option<ScriptUser> {
        self.no_block(n);
        let user = self.arg(n, 0)?.to_string();
        let group = n
            .args
            .get(1)
            .map(|g| g.text.trim_start_matches(':').to_string());
        match user.split_once(':') {
            Some((u, g)) => Some(ScriptUser {
                user: u.into(),
                group: Some(g.into()),
            }),
            None => Some(ScriptUser { user, group }),
        }
    }

    /// Lines of a value block (`{ a b }`, one entry per line); every word.
    pub(super) fn value_lines<'n>(&mut self, n: &'n Node) -> Vec<Vec<&'n Token>> {
        let children = self.block(n);
        let mut out = Vec::new();
        for c in children {
            if let Some(b) = &c.block {
                self.push(
                    Severity::Error,
                    ConfigErr::UnexpectedBob,
                    b.open,
                    "{",
                    "Unexpected '{' - ignoring".into(),
                    None,
                );
            }
            out.push(c.words().collect());
        }
        if !n.args.is_empty() {
            let extra: Vec<&str> = n.args.iter().map(|t| t.text.as_str()).collect();
            let kw = n.keyword.text.clone();
            self.warn(
                n.args[0].span,
                &kw,
                format!(
                    "Block {kw} has extra parameters {} - ignoring",
                    join(&extra)
                ),
            );
        }
        out
    }

    pub(super) fn value_words(&mut self, n: &Node) -> Vec<String> {
        self.value_lines(n)
            .into_iter()
            .flatten()
            .map(|t| t.text.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers() {
        assert_eq!(parse_timer("1"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_timer("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_timer(".25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_timer("0.000001"), Ok(Duration::from_micros(1)));
        assert!(parse_timer("1.0000001").is_err());
        assert!(parse_timer("x").is_err());
        assert!(parse_timer("-1").is_err());
        assert!(parse_timer("").is_err());
    }
}
