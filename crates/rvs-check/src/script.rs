//! Running scripts as keepalived does (MISC_CHECK `misc_path`, `notify_up`,
//! `notify_down`, `quorum_up`, `quorum_down`), and keepalived's
//! `enable_script_security` rules.
//!
//! keepalived splits the script string into words honouring quotes and
//! backslash escapes (`alloc_strvec_quoted_escaped`). If the first word resolves
//! (PATH search when it has no `/`) to an executable file, it is `execve`d with
//! those words as argv; otherwise the whole string is run by `/bin/sh -c`
//! (keepalived's `system()` fallback). The child gets its own process group so a
//! timeout kills the whole tree: SIGTERM, then SIGKILL 2 s later.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::process::Command;

use crate::config::ScriptConfig;

/// Split a script string like keepalived: whitespace separates words, `"..."`
/// and `'...'` group, `\x` escapes `x` (outside single quotes).
pub fn split_command(cmd: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = cmd.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (Some('\''), c) => cur.push(c),
            (_, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(match n {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                }
                in_word = true;
            }
            (Some(_), c) => cur.push(c),
            (None, '"') | (None, '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

fn is_executable_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Resolve a command name like keepalived's `find_path` (PATH search when the
/// name has no `/`).
pub fn resolve_command(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_executable_file(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable_file(p))
}

fn am_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Build the command for a script string (exec directly or `/bin/sh -c`).
pub fn build_command(cmd: &str, user: Option<(u32, u32)>) -> Command {
    let words = split_command(cmd);
    let mut c = match words.first().and_then(|w| resolve_command(w)) {
        Some(prog) => {
            let mut c = Command::new(prog);
            if let Some(w0) = words.first() {
                c.arg0(w0);
            }
            c.args(&words[1..]);
            c
        }
        None => {
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(cmd);
            c
        }
    };
    if let Some((uid, gid)) = user {
        if am_root() {
            c.uid(uid).gid(gid);
        }
    }
    c.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    c
}

/// How a script run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ScriptOutcome {
    /// Exited with this status.
    Exited(i32),
    /// Killed by this signal; `timed_out` when we killed it after the timeout.
    Signaled {
        /// Signal number.
        signal: i32,
        /// We sent it because the timeout expired.
        timed_out: bool,
    },
    /// Could not be started.
    SpawnFailed,
}

fn kill_group(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) with a negative pid signals the process group we created.
        unsafe {
            libc::kill(-pid, sig);
        }
    }
}

/// Run a script string with a timeout (keepalived's `system_call_script`):
/// on timeout SIGTERM to the process group, then SIGKILL after 2 s.
pub async fn run_with_timeout(
    cmd: &str,
    user: Option<(u32, u32)>,
    timeout: Duration,
) -> ScriptOutcome {
    use std::os::unix::process::ExitStatusExt;
    let mut command = build_command(cmd, user);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(target: "rvs_check", "Error exec-ing command '{cmd}': {e}");
            return ScriptOutcome::SpawnFailed;
        }
    };
    let pid = child.id();
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => return ScriptOutcome::SpawnFailed,
        Err(_) => {
            if let Some(pid) = pid {
                kill_group(pid, libc::SIGTERM);
            }
            let st = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
                Ok(Ok(s)) => Some(s),
                _ => None,
            };
            if let Some(pid) = pid {
                kill_group(pid, libc::SIGKILL);
            }
            let st = match st {
                Some(s) => Some(s),
                None => child.wait().await.ok(),
            };
            return match st.and_then(|s| s.signal()) {
                Some(sig) => ScriptOutcome::Signaled {
                    signal: sig,
                    timed_out: true,
                },
                None => ScriptOutcome::Signaled {
                    signal: libc::SIGKILL,
                    timed_out: true,
                },
            };
        }
    };
    match (status.code(), status.signal()) {
        (Some(c), _) => ScriptOutcome::Exited(c),
        (None, Some(s)) => ScriptOutcome::Signaled {
            signal: s,
            timed_out: false,
        },
        _ => ScriptOutcome::SpawnFailed,
    }
}

/// Fire-and-forget a notify / quorum script (keepalived `notify_exec`): no
/// extra arguments are appended for checker notifies.
pub fn spawn_notify(script: &ScriptConfig) {
    let mut c = build_command(&script.cmd, script.user);
    c.kill_on_drop(false);
    match c.spawn() {
        Ok(mut child) => {
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
        }
        Err(e) => {
            tracing::warn!(target: "rvs_check", "Error exec-ing command '{}': {e}", script.cmd)
        }
    }
}

// ===== script security =====

/// Result of [`check_script_security`] (keepalived's SC_* flags).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ScriptSecurity {
    /// Script (or a bare name found in PATH) not found / not accessible (SC_NOTFOUND).
    pub not_found: bool,
    /// Executable by the user that runs it (SC_EXECUTABLE).
    pub executable: bool,
    /// A path component is writable by a non-root user (SC_INSECURE).
    pub insecure: bool,
    /// Must not be run (SC_INHIBIT: insecure with `enable_script_security`, or a bad file type).
    pub inhibit: bool,
    /// keepalived's log lines explaining the verdict.
    pub messages: Vec<String>,
}

impl ScriptSecurity {
    /// May the script be run?
    pub fn allowed(&self) -> bool {
        !self.not_found && !self.inhibit && self.executable
    }
}

/// keepalived's `check_script_secure`: resolve the script's first word, check it
/// is executable by `run_as` (uid, gid), and when it will run with root powers
/// (uid or gid 0, or setuid/setgid root) check that no component of its path is
/// writable by non-root (owner not root, or group/world writable without the
/// sticky bit for directories). With `script_security` such a script is
/// inhibited; without it only a warning is produced.
pub fn check_script_security(
    cmd: &str,
    run_as: (u32, u32),
    script_security: bool,
) -> ScriptSecurity {
    let mut out = ScriptSecurity::default();
    let words = split_command(cmd);
    let Some(first) = words.first() else {
        out.not_found = true;
        return out;
    };
    // "</file": a file-openable test, never executed.
    if first.starts_with('<') && first[1..].trim_start().starts_with('/') {
        out.executable = true;
        return out;
    }
    let path = if first.contains('/') {
        PathBuf::from(first)
    } else {
        match resolve_command(first) {
            Some(p) => p,
            None => {
                out.messages
                    .push(format!("Cannot find script {first} in path - disabling"));
                out.not_found = true;
                return out;
            }
        }
    };
    let real = match std::fs::canonicalize(&path) {
        Ok(p) => p,
        Err(e) => {
            out.messages.push(format!(
                "Script {} cannot be accessed - {e}",
                path.display()
            ));
            out.not_found = true;
            return out;
        }
    };
    let md = match std::fs::metadata(&real) {
        Ok(m) => m,
        Err(_) => {
            out.messages.push(format!(
                "Unable to access script `{}` - disabling",
                path.display()
            ));
            out.not_found = true;
            return out;
        }
    };
    let mode = md.mode();
    let (uid, gid) = run_as;
    let executable = md.is_file()
        && if uid == 0 {
            mode & 0o111 != 0
        } else if md.uid() == uid {
            mode & 0o100 != 0
        } else if md.gid() == gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
    out.executable = executable;
    if !executable {
        out.messages.push(format!(
            "WARNING - script '{}' is not executable for uid:gid {uid}:{gid} - disabling.",
            path.display()
        ));
        return out;
    }
    let need_protection = uid == 0
        || gid == 0
        || (md.uid() == 0 && mode & 0o100 != 0 && mode & 0o4000 != 0)
        || (md.gid() == 0 && mode & 0o010 != 0 && mode & 0o2000 != 0);
    if !need_protection {
        return out;
    }
    for p in [path.clone(), real]
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
    {
        check_path_components(p, script_security, &mut out);
    }
    out
}

fn check_path_components(path: &Path, script_security: bool, out: &mut ScriptSecurity) {
    let comps: Vec<PathBuf> = path.ancestors().map(Path::to_path_buf).collect();
    // ancestors() goes leaf -> root; keepalived checks root -> leaf.
    for (idx, p) in comps.iter().rev().enumerate() {
        if p.as_os_str().is_empty() {
            continue;
        }
        let is_last = idx == comps.len() - 1;
        let md = match std::fs::symlink_metadata(p) {
            Ok(m) => m,
            Err(_) => {
                out.messages.push(format!(
                    "check_script_secure could not find script '{}' - disabling",
                    path.display()
                ));
                out.not_found = true;
                return;
            }
        };
        let ft = md.file_type();
        if (!is_last && !ft.is_dir()) || (is_last && !ft.is_file() && !ft.is_symlink()) {
            out.messages.push(format!(
                "Wrong file type found in script path '{}'.",
                path.display()
            ));
            out.inhibit = true;
            return;
        }
        let mode = md.mode();
        let writable_by_others = ((ft.is_dir() && mode & 0o1000 == 0) || ft.is_file())
            && ((md.gid() != 0 && mode & 0o020 != 0) || mode & 0o002 != 0);
        if md.uid() != 0 || writable_by_others {
            out.messages.push(format!(
                "Unsafe permissions found for script '{}'{}.",
                path.display(),
                if script_security { " - disabling" } else { "" }
            ));
            out.insecure = true;
            if script_security {
                out.inhibit = true;
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_like_keepalived() {
        assert_eq!(
            split_command("/bin/check -p 80"),
            vec!["/bin/check", "-p", "80"]
        );
        assert_eq!(
            split_command(r#"sh -c "exit 3""#),
            vec!["sh", "-c", "exit 3"]
        );
        assert_eq!(split_command(r"a\ b 'c d' e"), vec!["a b", "c d", "e"]);
        assert_eq!(split_command("  "), Vec::<String>::new());
        assert_eq!(split_command(r#""""#), vec![""]);
    }

    #[test]
    fn resolve_in_path() {
        assert!(resolve_command("sh").is_some());
        assert!(resolve_command("/definitely/not/here").is_none());
    }

    #[test]
    fn security_world_writable_dir() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().join("s.sh");
        std::fs::write(&s, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Running as root (uid 0) needs protection; the temp dir is not root-owned
        // unless we are root, and /tmp is sticky.
        let r = check_script_security(s.to_str().unwrap(), (0, 0), true);
        assert!(r.executable);
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            assert!(r.insecure && r.inhibit && !r.allowed(), "{r:?}");
        }
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o757)).unwrap();
        let r = check_script_security(s.to_str().unwrap(), (0, 0), false);
        assert!(r.insecure && !r.inhibit, "{r:?}");
        let r = check_script_security("/nonexistent/x.sh", (0, 0), true);
        assert!(r.not_found && !r.allowed());
    }
}
