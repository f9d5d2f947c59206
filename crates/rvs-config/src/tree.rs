//! Keyword tree: logical lines + braces → nested [`Node`]s.
//!
//! This step is purely syntactic: any line immediately followed by `{`
//! (on the same line or the next one) owns the block up to the matching
//! `}`. The typed pass decides whether a keyword may have a block.

use crate::diag::{ConfigErr, Diagnostic, Severity};
use crate::lexer::{Item, Span, Token};
use serde::Serialize;

/// Maximum block nesting kept in the tree; deeper blocks are dropped with an
/// error (keepalived's deepest real nesting is 4: virtual_server →
/// real_server → HTTP_GET → url).
pub const MAX_NESTING: usize = 32;

/// One keyword line with its arguments and optional block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub keyword: Token,
    pub args: Vec<Token>,
    /// The line as written (after preprocessing), for the shell-like
    /// tokeniser used by script keywords.
    #[serde(skip)]
    pub raw: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<Block>,
}

/// A `{ ... }` block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Block {
    pub open: Span,
    pub close: Option<Span>,
    pub children: Vec<Node>,
}

impl Node {
    pub fn span(&self) -> Span {
        self.keyword.span
    }
    /// Every word of the line (keyword first).
    pub fn words(&self) -> impl Iterator<Item = &Token> {
        std::iter::once(&self.keyword).chain(self.args.iter())
    }
}

struct Frame {
    node: Option<Node>, // None = an anonymous (unexpected) block being skipped
    open: Span,
    children: Vec<Node>,
}

pub(crate) fn build(items: Vec<Item>, files: &[String], diags: &mut Vec<Diagnostic>) -> Vec<Node> {
    let mut diag = |span: Span, class: ConfigErr, sev: Severity, text: &str, msg: &str| {
        diags.push(Diagnostic {
            severity: sev,
            class,
            file: files.get(span.file as usize).cloned().unwrap_or_default(),
            line: span.line,
            column: span.col,
            text: text.into(),
            message: msg.into(),
            help: None,
        })
    };
    let mut root: Vec<Node> = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    // blocks opened beyond MAX_NESTING: skipped entirely
    let mut skip_depth = 0usize;
    let mut last_was_line = false;
    for item in items {
        if skip_depth > 0 {
            match item {
                Item::Open(_) => skip_depth += 1,
                Item::Close(_) => skip_depth -= 1,
                Item::Line { .. } => {}
            }
            last_was_line = false;
            continue;
        }
        match item {
            Item::Line { mut tokens, raw } => {
                let keyword = tokens.remove(0);
                let node = Node {
                    keyword,
                    args: tokens,
                    raw,
                    block: None,
                };
                match stack.last_mut() {
                    Some(f) => f.children.push(node),
                    None => root.push(node),
                }
                last_was_line = true;
            }
            Item::Open(span) => {
                if stack.len() >= MAX_NESTING {
                    diag(
                        span,
                        ConfigErr::GeneralError,
                        Severity::Error,
                        "{",
                        "blocks nested too deeply - skipping",
                    );
                    skip_depth = 1;
                    last_was_line = false;
                    continue;
                }
                let owner = if last_was_line {
                    match stack.last_mut() {
                        Some(f) => f.children.pop(),
                        None => root.pop(),
                    }
                } else {
                    diag(
                        span,
                        ConfigErr::UnexpectedBob,
                        Severity::Error,
                        "{",
                        "Unexpected '{' - ignoring",
                    );
                    None
                };
                stack.push(Frame {
                    node: owner,
                    open: span,
                    children: Vec::new(),
                });
                last_was_line = false;
            }
            Item::Close(span) => {
                last_was_line = false;
                match stack.pop() {
                    None => diag(
                        span,
                        ConfigErr::UnexpectedEob,
                        Severity::Error,
                        "}",
                        "Extra '}' found",
                    ),
                    Some(f) => close_frame(f, Some(span), &mut stack, &mut root),
                }
            }
        }
    }
    if !stack.is_empty() || skip_depth > 0 {
        let n = stack.len() + skip_depth;
        let span = stack.last().map(|f| f.open).unwrap_or_default();
        diag(
            span,
            ConfigErr::MissingEob,
            Severity::Error,
            "{",
            &format!("There are {n} missing '}}'s or extra '{{'s"),
        );
        while let Some(f) = stack.pop() {
            close_frame(f, None, &mut stack, &mut root);
        }
    }
    root
}

fn close_frame(f: Frame, close: Option<Span>, stack: &mut [Frame], root: &mut Vec<Node>) {
    if let Some(mut node) = f.node {
        node.block = Some(Block {
            open: f.open,
            close,
            children: f.children,
        });
        match stack.last_mut() {
            Some(p) => p.children.push(node),
            None => root.push(node),
        }
    }
    // anonymous blocks are dropped (rvs skips their contents)
}
