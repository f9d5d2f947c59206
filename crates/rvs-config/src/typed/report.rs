//! Diagnostics of the typed pass: errors, warnings, unknown and
//! unsupported keywords with keepalived's texts.

use super::keywords::BLOCKS;
use super::Ctx;
use crate::diag::{suggest, ConfigErr, Diagnostic, Severity};
use crate::lexer::Span;
use crate::model::*;
use crate::tree::Node;

impl Ctx<'_> {
    pub(super) fn loc(&self, n: &Node) -> Location {
        Location {
            file: self.file(n.span()),
            line: n.span().line,
        }
    }

    fn file(&self, s: Span) -> String {
        self.files.get(s.file as usize).cloned().unwrap_or_default()
    }

    pub(super) fn push(
        &mut self,
        sev: Severity,
        class: ConfigErr,
        span: Span,
        text: &str,
        msg: String,
        help: Option<String>,
    ) {
        let file = self.file(span);
        self.diags.push(Diagnostic {
            severity: sev,
            class,
            file,
            line: span.line,
            column: span.col,
            text: text.to_string(),
            message: msg,
            help,
        });
    }

    pub(super) fn err(&mut self, span: Span, text: &str, msg: String) {
        self.push(
            Severity::Error,
            ConfigErr::GeneralError,
            span,
            text,
            msg,
            None,
        );
    }
    pub(super) fn warn(&mut self, span: Span, text: &str, msg: String) {
        self.push(
            Severity::Warning,
            ConfigErr::GeneralError,
            span,
            text,
            msg,
            None,
        );
    }
    /// A number out of range or not a number (class INVALID_NUMBER).
    pub(super) fn bad_number(&mut self, span: Span, text: &str, msg: String) {
        self.push(
            Severity::Error,
            ConfigErr::InvalidNumber,
            span,
            text,
            msg,
            None,
        );
    }
    /// Warning at a block's location, column 1 (checks after the block).
    pub(super) fn warn_in(&mut self, loc: &Location, text: String, msg: String) {
        self.diags.push(Diagnostic {
            severity: Severity::Warning,
            class: ConfigErr::GeneralError,
            file: loc.file.clone(),
            line: loc.line,
            column: 1,
            text,
            message: msg,
            help: None,
        });
    }
    /// Words after a block's keyword (`TCP_CHECK x {`): keepalived ignores
    /// them and names the first.
    pub(super) fn block_args_ignored(&mut self, n: &Node) {
        if let Some(a) = n.args.first() {
            let (kw, t) = (&n.keyword.text, &a.text);
            let msg = format!("Block {kw} has extra parameters {t} - ignoring");
            self.warn(a.span, t, msg);
        }
    }
    /// Validation message without a location (like keepalived's end handlers).
    pub(super) fn warn_at(&mut self, n: &Node, msg: String) {
        let t = n.keyword.text.clone();
        self.warn(n.span(), &t, msg);
    }
    pub(super) fn deprecated(&mut self, n: &Node, msg: String) {
        let t = n.keyword.text.clone();
        self.push(
            Severity::Deprecated,
            ConfigErr::Deprecated,
            n.span(),
            &t,
            msg,
            None,
        );
    }

    pub(super) fn unknown(&mut self, n: &Node, ctx: &str, valid: &[&[&str]]) {
        let kw = n.keyword.text.clone();
        let all: Vec<&str> = valid.iter().flat_map(|v| v.iter().copied()).collect();
        let help = match (kw.as_str(), suggest(&kw, &all)) {
            ("lvs_id", _) if all.contains(&"router_id") => {
                Some("'lvs_id' was removed; use 'router_id'".to_string())
            }
            ("lvs_sync_daemon_interface", _) if all.contains(&"router_id") => {
                Some("use 'lvs_sync_daemon IFNAME'".to_string())
            }
            (_, Some(s)) => Some(format!("did you mean '{s}'?")),
            (_, None) => BLOCKS
                .iter()
                .find(|(b, sets)| *b != ctx && sets.iter().any(|set| set.contains(&kw.as_str())))
                .map(|(b, _)| format!("'{kw}' is valid in {b}")),
        };
        let mut msg = format!("unknown keyword '{kw}' in {ctx}");
        if n.block.is_some() {
            msg.push_str("; its block is skipped");
        }
        self.push(
            Severity::Warning,
            ConfigErr::UnknownKeyword,
            n.span(),
            &kw,
            msg,
            help,
        );
    }

    fn generic(n: &Node) -> GenericNode {
        GenericNode {
            keyword: n.keyword.text.clone(),
            args: n.args.iter().map(|t| t.text.clone()).collect(),
            line: n.span().line,
            children: n
                .block
                .as_ref()
                .map(|b| b.children.iter().map(Self::generic).collect())
                .unwrap_or_default(),
        }
    }

    pub(super) fn unsupported(&mut self, n: &Node, ctx: &str) -> GenericNode {
        let kw = n.keyword.text.clone();
        if self.unsupported_seen.insert(kw.clone()) {
            self.push(
                Severity::Unsupported,
                ConfigErr::Ok,
                n.span(),
                &kw,
                format!("'{kw}' in {ctx} is not supported yet - ignored"),
                None,
            );
        }
        Self::generic(n)
    }

    /// Keyword that takes no block but has one.
    pub(super) fn no_block(&mut self, n: &Node) {
        if let Some(b) = &n.block {
            self.push(
                Severity::Error,
                ConfigErr::UnexpectedBob,
                b.open,
                "{",
                format!(
                    "Unexpected '{{' after '{}' - ignoring the block",
                    n.keyword.text
                ),
                None,
            );
        }
    }

    /// keepalived reads one keyword per line and silently ignores extra
    /// words (`url { path / status_code 200 }` sets only the path): say so.
    pub(super) fn extra_args(&mut self, n: &Node, used: usize) {
        const MULTI_ARG: &[&str] = &[
            "smtp_server",
            "script_user",
            "user",
            "lvs_sync_daemon",
            "weight",
            "sorry_server",
            "lvs_method",
            "lb_kind",
            "sorry_server_lvs_method",
            "status_code",
            "require_reply",
            "fwmark",
        ];
        if n.args.len() <= used || MULTI_ARG.contains(&n.keyword.text.as_str()) {
            return;
        }
        let extra: Vec<&str> = n.args[used..].iter().map(|t| t.text.as_str()).collect();
        let kw = n.keyword.text.clone();
        self.push(
            Severity::Warning,
            ConfigErr::Ok,
            n.args[used].span,
            &extra.join(" "),
            format!("extra parameters after '{kw}' ignored: {}", extra.join(" ")),
            Some("keepalived reads one keyword per line".into()),
        );
    }
}
