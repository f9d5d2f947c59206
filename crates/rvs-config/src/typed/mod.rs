//! Typed pass: keyword tree → [`Config`], with keepalived's defaults,
//! inheritance and validation messages.
//!
//! One file per block family, as keepalived splits its parser:
//! [`global`] (global_defs), [`vrrp`] (vrrp_script, vrrp_sync_group,
//! vrrp_instance) with [`ipaddress`] (address lines), [`virtual_server`]
//! (virtual_server_group, virtual_server, real_server) and [`checkers`]
//! (the checker blocks and SSL). [`keywords`] holds the keyword tables,
//! [`values`] the argument readers and [`report`] the diagnostics.

mod checkers;
mod global;
mod ipaddress;
mod keywords;
mod report;
mod values;
mod virtual_server;
mod vrrp;

use crate::diag::{ConfigErr, Diagnostic, Severity};
use crate::model::*;
use crate::tree::Node;
use keywords::{TOP_KW, TOP_UNSUPPORTED};
use std::collections::HashSet;

/// The typed pass over one configuration: the file names (for locations)
/// and the diagnostics found so far.
pub(crate) struct Ctx<'a> {
    files: &'a [String],
    pub diags: Vec<Diagnostic>,
    unsupported_seen: HashSet<String>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(files: &'a [String]) -> Self {
        Ctx {
            files,
            diags: Vec::new(),
            unsupported_seen: HashSet::new(),
        }
    }

    pub(crate) fn config(&mut self, nodes: &[Node]) -> Config {
        let mut cfg = Config::default();
        // global_defs first: instances take their defaults from it
        for n in nodes.iter().filter(|n| n.keyword.text == "global_defs") {
            let children = self.block(n);
            self.global_defs(children, &mut cfg.global_defs);
            self.block_args_ignored(n);
        }
        for n in nodes {
            let kw = n.keyword.text.as_str();
            match kw {
                "global_defs" => {}
                "vrrp_script" => {
                    if let Some(s) = self.vrrp_script(n) {
                        cfg.vrrp_scripts.push(s);
                    }
                }
                "vrrp_sync_group" => {
                    if let Some(g) = self.sync_group(n) {
                        cfg.vrrp_sync_groups.push(g);
                    }
                }
                "vrrp_instance" => {
                    if let Some(v) = self.vrrp_instance(n, &mut cfg.global_defs) {
                        if let Some(o) = cfg.vrrp_instances.iter().find(|o| o.name == v.name) {
                            let l = o.location.line;
                            self.warn_at(
                                n,
                                format!("vrrp_instance {} already defined at line {l}", v.name),
                            );
                        }
                        cfg.vrrp_instances.push(v);
                    }
                }
                "static_ipaddress" => {
                    let lines = self.value_lines(n);
                    for l in lines {
                        if let Some(v) = self.vip(&l, "static_ipaddress") {
                            cfg.static_ipaddress.push(v);
                        }
                    }
                }
                "virtual_server_group" => {
                    if let Some(g) = self.vsg(n) {
                        cfg.virtual_server_groups.push(g);
                    }
                }
                "virtual_server" => {
                    if let Some(v) = self.virtual_server(n, &cfg.global_defs) {
                        cfg.virtual_servers.push(v);
                    }
                }
                "SSL" => cfg.ssl = Some(self.ssl(n)),
                _ if TOP_UNSUPPORTED.contains(&kw) => {
                    if kw == "vrrp_track_file" {
                        self.deprecated(
                            n,
                            "Keyword \"vrrp_track_file\" is deprecated - please use \"track_file\""
                                .into(),
                        );
                    }
                    let g = self.unsupported(n, "the configuration");
                    cfg.unsupported.push(g);
                }
                _ => self.unknown(n, "the top level", &[TOP_KW, TOP_UNSUPPORTED]),
            }
        }
        self.cross_checks(&cfg);
        self.script_security(&cfg);
        cfg
    }

    /// keepalived: any script that would be executed while
    /// `enable_script_security` is off gives "SECURITY VIOLATION" (class
    /// SECURITY_ERROR, `-t` exit 6). Only scripts whose program exists count
    /// (keepalived drops missing ones), and vrrp_scripts only when tracked.
    fn script_security(&mut self, cfg: &Config) {
        if cfg.global_defs.enable_script_security {
            return;
        }
        let tracked: HashSet<&str> = cfg
            .vrrp_instances
            .iter()
            .flat_map(|v| v.track_script.iter())
            .chain(
                cfg.vrrp_sync_groups
                    .iter()
                    .flat_map(|g| g.track_script.iter()),
            )
            .map(|t| t.name.as_str())
            .collect();
        let g = &cfg.global_defs;
        let mut scripts: Vec<&Script> = Vec::new();
        scripts.extend(g.startup_script.iter().chain(g.shutdown_script.iter()));
        scripts.extend(
            cfg.vrrp_scripts
                .iter()
                .filter(|s| tracked.contains(s.name.as_str()))
                .map(|s| &s.script),
        );
        for sg in &cfg.vrrp_sync_groups {
            scripts.extend(
                [
                    &sg.notify_master,
                    &sg.notify_backup,
                    &sg.notify_fault,
                    &sg.notify_stop,
                    &sg.notify,
                ]
                .into_iter()
                .flatten(),
            );
        }
        for v in &cfg.vrrp_instances {
            scripts.extend(
                [
                    &v.notify_master,
                    &v.notify_backup,
                    &v.notify_fault,
                    &v.notify_stop,
                    &v.notify_deleted,
                    &v.notify_master_rx_lower_pri,
                    &v.notify,
                ]
                .into_iter()
                .flatten(),
            );
        }
        for vs in &cfg.virtual_servers {
            scripts.extend(vs.quorum_up.iter().chain(vs.quorum_down.iter()));
            for rs in &vs.real_servers {
                scripts.extend(rs.notify_up.iter().chain(rs.notify_down.iter()));
                for c in &rs.checkers {
                    if let Checker::Misc(m) = c {
                        scripts.push(&m.misc_path);
                    }
                }
            }
        }
        if scripts
            .iter()
            .any(|s| s.argv.first().is_some_and(|p| program_exists(p)))
        {
            self.diags.push(Diagnostic {
                severity: Severity::Warning,
                class: ConfigErr::SecurityError,
                file: self.files.first().cloned().unwrap_or_default(),
                line: 0,
                column: 0,
                text: String::new(),
                message: "SECURITY VIOLATION - scripts are being executed but script_security not enabled.".into(),
                help: Some("add 'enable_script_security' (and a 'script_user') to global_defs".into()),
            });
        }
    }

    fn cross_checks(&mut self, cfg: &Config) {
        let insts: HashSet<&str> = cfg.vrrp_instances.iter().map(|v| v.name.as_str()).collect();
        let scripts: HashSet<&str> = cfg.vrrp_scripts.iter().map(|v| v.name.as_str()).collect();
        let mut msgs = Vec::new();
        for g in &cfg.vrrp_sync_groups {
            for m in &g.group {
                if !insts.contains(m.as_str()) {
                    msgs.push((
                        g.location.clone(),
                        m.clone(),
                        format!("Virtual router {m} specified in sync group {} doesn't exist - ignoring", g.name),
                    ));
                }
            }
        }
        for v in &cfg.vrrp_instances {
            for t in &v.track_script {
                if !scripts.contains(t.name.as_str()) {
                    msgs.push((
                        v.location.clone(),
                        t.name.clone(),
                        format!(
                            "({}) track script {} not found, ignoring...",
                            v.name, t.name
                        ),
                    ));
                }
            }
        }
        let groups: HashSet<&str> = cfg
            .virtual_server_groups
            .iter()
            .map(|g| g.name.as_str())
            .collect();
        for vs in &cfg.virtual_servers {
            if let VsKey::Group { name } = &vs.key {
                if !groups.contains(name.as_str()) {
                    msgs.push((
                        vs.location.clone(),
                        name.clone(),
                        format!("Virtual server group {name} does not exist"),
                    ));
                }
            }
        }
        for (loc, text, msg) in msgs {
            self.warn_in(&loc, text, msg);
        }
    }
}

/// The script's program exists (absolute/relative path, or found in PATH).
fn program_exists(p: &str) -> bool {
    use std::path::Path;
    if p.is_empty() {
        return false;
    }
    if p.contains('/') {
        return Path::new(p).is_file();
    }
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    path.split(':')
        .filter(|d| !d.is_empty())
        .any(|d| Path::new(d).join(p).is_file())
}
