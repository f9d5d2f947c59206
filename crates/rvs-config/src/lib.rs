//! # rvs-config — keepalived.conf for rvs
//!
//! Reads real keepalived 2.2 configuration files and turns them into a
//! typed, fully resolved [`Config`] plus precise [`Diagnostic`]s.
//!
//! Pipeline:
//!
//! 1. **Preprocessor / lexer** (`lexer`): `!`/`#` comments (not inside
//!    `"..."`; `\#`, `\!` literal), `include` / `includer` / `includem` /
//!    `includew` / `includeb` / `includea` with glob and csh brace expansion
//!    relative to the including file, `@id` / `@^id` conditional lines
//!    (config-id = [`LoadOptions::config_id`], default the host name's first
//!    label), `$NAME=value` definitions (multi-line with trailing `\`),
//!    `$NAME` / `${NAME}` substitution (lazy, recursive, re-decommented),
//!    predefined `${_PWD}` `${_INSTANCE}` `${_RANDOM [MIN [MAX]]}`
//!    `${_ENV VAR}` `${_HASH}` `${_BANG}`, `~SEQ(var,[start,[step,]]end)`,
//!    `~SEQx`, `~LST(var, v...)` / `~LST({a,b}, {1,2}, ...)`. Braces split
//!    lines anywhere (outside quotes); the default tokeniser treats `"..."`
//!    as one word. Every token keeps its span (file, line, column).
//! 2. **Tree** ([`Node`]): keyword, arguments, optional `{ }` block.
//! 3. **Typed pass** (`typed`, one file per block family as keepalived
//!    splits its parser): keyword tables per block, keepalived's defaults
//!    (linked `state`/`priority`, checker retry/delay defaults, ...),
//!    inheritance checker ← real_server ← virtual_server, deprecated
//!    aliases, validation messages with keepalived's texts.
//!
//! Differences from keepalived (deliberate):
//! - An **unknown keyword's block is skipped** with one warning. keepalived
//!   instead ignores the `{`, parses the block's contents in the enclosing
//!   block and lets its `}` close the enclosing block, which garbles
//!   everything after it (reference §7). The first message is the same
//!   (unknown keyword); later cascading messages do not appear.
//! - `nb_get_retry` is accepted (deprecated alias of `retry`) in every
//!   checker, including TCP_CHECK where keepalived 2.2.7 says "Unknown
//!   keyword" and ignores it. Both count as config errors for `-t` (rc 5).
//! - An unexpected `{` (not after a keyword) skips that block instead of
//!   merging its contents into the enclosing block.
//! - Keywords of keepalived that rvs does not implement (SNMP, DBUS,
//!   nftables, process tuning, bfd_instance, static_routes, ...) are kept as
//!   [`GenericNode`]s and reported once per keyword as
//!   [`Severity::Unsupported`] (class [`ConfigErr::Ok`], so they do not
//!   change the `-t` exit code).
//! - `include_check` applies to the plain `include` lines that follow it in
//!   the text (keepalived applies it once global_defs has been parsed).
//! - Reads are bounded: a file over [`MAX_FILE_BYTES`] (16 MiB), or that
//!   would take the main file and its includes past [`MAX_TOTAL_BYTES`]
//!   (64 MiB), is skipped with an error. keepalived has no cap. Like
//!   keepalived, a directory or anything but a regular non-executable file
//!   (FIFO, `/dev/zero`, socket) is skipped with its warning and never
//!   opened for reading, so `include` of such a file cannot block.
//!
//! ```
//! let text = "virtual_server 10.0.0.1 80 {\n lb_algo rr\n lb_kind DR\n real_server 10.0.0.2 80 {\n  TCP_CHECK {\n   connet_port 81\n  }\n }\n}\n";
//! let loaded = rvs_config::parse_str(text, "k.conf", &Default::default());
//! let d = &loaded.diagnostics[0];
//! assert_eq!(d.to_string(), "k.conf:6:4: warning: unknown keyword 'connet_port' in TCP_CHECK (did you mean 'connect_port'?)");
//! assert_eq!(rvs_config::config_test_exit_code(&loaded.diagnostics), 5);
//! ```

pub mod diag;
mod lexer;
pub mod model;
mod read;
mod tree;
mod typed;

pub use diag::{config_test_exit_code, ConfigErr, Diagnostic, Severity};
pub use lexer::{split_quoted_escaped, Span, Token};
pub use model::*;
pub use read::{MAX_FILE_BYTES, MAX_TOTAL_BYTES};
pub use tree::{Block, Node};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Options for [`load`] / [`parse_str`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Config id for `@id` lines (`-i/--config-id`); `None` = the host
    /// name up to the first `.`.
    pub config_id: Option<String>,
    /// Environment for `${_ENV VAR}`; `None` = the process environment.
    pub env: Option<BTreeMap<String, String>>,
    /// Seed for `${_RANDOM}` (reproducible tests).
    pub random_seed: Option<u64>,
    /// Ignore `include` lines (with a warning); for fuzzing untrusted text.
    pub disable_includes: bool,
}

/// A successfully read configuration (possibly with problems).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// In file order of discovery (preprocessor, then parser, then typed pass).
    pub diagnostics: Vec<Diagnostic>,
    /// Every file read, main file first (indexed by [`Span::file`]).
    pub files: Vec<String>,
    /// The keyword tree (after preprocessing), for tools.
    pub tree: Vec<Node>,
}

impl Loaded {
    /// `keepalived -t` exit code for these diagnostics.
    pub fn config_test_exit_code(&self) -> i32 {
        config_test_exit_code(&self.diagnostics)
    }
    /// Any diagnostic of severity error or fatal.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Problems that prevent using the configuration at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The main file cannot be read (keepalived: `Config files missing 'FILE'.`).
    #[error("Config files missing '{}'.", path.display())]
    NotFound {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The main file is a directory, not a regular non-executable file
    /// (keepalived skips it: `Configuration file 'F' is not a regular
    /// non-executable file - skipping`), or larger than [`MAX_FILE_BYTES`].
    #[error("{message}")]
    Unreadable {
        path: PathBuf,
        message: String,
        /// Over the size cap (an rvs limit), not a kind of file keepalived
        /// skips.
        too_big: bool,
    },
    /// A strict include (`includem`, `includer`, ...) failed; keepalived
    /// exits "not configured".
    #[error("{message}")]
    StrictInclude {
        message: String,
        diagnostics: Vec<Diagnostic>,
    },
}

impl LoadError {
    /// Exit code keepalived 2.2.7 uses in this case: `-t` with a missing
    /// main file returns 0 (observed; it prints the message only); a failing
    /// strict include exits 6 ("not configured"). A daemon that cannot load
    /// its main file should exit 6 as well ([`LoadError::daemon_exit_code`]).
    /// A main file keepalived skips (directory, FIFO, device) is like a
    /// missing one (0); one over rvs's size cap is a file error (4).
    pub fn config_test_exit_code(&self) -> i32 {
        match self {
            LoadError::NotFound { .. } => 0,
            LoadError::Unreadable { too_big, .. } => {
                if *too_big {
                    4
                } else {
                    0
                }
            }
            LoadError::StrictInclude { .. } => 6,
        }
    }
    /// keepalived's "no config" exit status (6).
    pub fn daemon_exit_code(&self) -> i32 {
        6
    }
}

/// Read and parse `path` (includes are resolved relative to each including
/// file). Diagnostics use `path` as given for the main file. Every file
/// read is bounded (see [`MAX_FILE_BYTES`], [`MAX_TOTAL_BYTES`]); a
/// directory, FIFO or device is skipped as keepalived does.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Loaded, LoadError> {
    let bytes = read::read_bounded(path, MAX_FILE_BYTES).map_err(|e| match e {
        read::ReadError::Io(source) => LoadError::NotFound {
            path: path.to_path_buf(),
            source,
        },
        e => LoadError::Unreadable {
            path: path.to_path_buf(),
            message: e.message(path),
            too_big: matches!(e, read::ReadError::TooBig(_)),
        },
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    let loaded = run(
        &text,
        path.to_string_lossy().into_owned(),
        dir,
        opts,
        path.canonicalize().ok(),
    );
    match loaded {
        Ok(l) => Ok(l),
        Err((message, diagnostics)) => Err(LoadError::StrictInclude {
            message,
            diagnostics,
        }),
    }
}

/// Parse configuration text. `name` is used in diagnostics; includes are
/// resolved relative to `name`'s directory (or the current directory).
/// A failing strict include is reported as a fatal diagnostic.
pub fn parse_str(text: &str, name: &str, opts: &LoadOptions) -> Loaded {
    let dir = Path::new(name)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    match run(text, name.to_string(), dir, opts, None) {
        Ok(l) => l,
        Err((_, diagnostics)) => Loaded {
            config: Config::default(),
            diagnostics,
            files: vec![name.to_string()],
            tree: vec![],
        },
    }
}

type RunResult = Result<Loaded, (String, Vec<Diagnostic>)>;

fn run(
    text: &str,
    name: String,
    dir: PathBuf,
    opts: &LoadOptions,
    canon: Option<PathBuf>,
) -> RunResult {
    let mut lx = lexer::Lexer::new(opts);
    if let Some(c) = canon {
        lx.push_include_root(c);
    }
    lx.add_file(name, dir, text);
    let mut diags = std::mem::take(&mut lx.diags);
    if let Some(msg) = lx.strict_include_failure.take() {
        return Err((msg, diags));
    }
    let files = std::mem::take(&mut lx.files);
    let items = std::mem::take(&mut lx.items);
    let nodes = tree::build(items, &files, &mut diags);
    let mut ctx = typed::Ctx::new(&files);
    let config = ctx.config(&nodes);
    diags.extend(ctx.diags);
    Ok(Loaded {
        config,
        diagnostics: diags,
        files,
        tree: nodes,
    })
}
