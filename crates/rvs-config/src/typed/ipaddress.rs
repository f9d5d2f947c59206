//! Address lines of `virtual_ipaddress`, `virtual_ipaddress_excluded`
//! and `static_ipaddress` (keepalived's vrrp_ipaddress.c).

use super::Ctx;
use crate::lexer::Token;
use crate::model::*;
use crate::tree::Node;
use std::net::IpAddr;

impl Ctx<'_> {
    /// One `virtual_ipaddress`-style line.
    pub(super) fn vip(&mut self, l: &[&Token], ctx: &str) -> Option<VirtualIp> {
        let first = l.first()?;
        let (a, mask) = match first.text.split_once('/') {
            Some((a, m)) => (a, Some(m)),
            None => (first.text.as_str(), None),
        };
        let Ok(addr) = a.parse::<IpAddr>() else {
            let t = first.text.clone();
            self.err(
                first.span,
                &t,
                format!("Invalid address '{t}' in {ctx} - ignoring"),
            );
            return None;
        };
        let maxlen = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match mask.map(str::parse::<u8>) {
            None => maxlen,
            Some(Ok(m)) if m <= maxlen => m,
            Some(_) => {
                let t = first.text.clone();
                self.err(
                    first.span,
                    &t,
                    format!("Invalid address mask '{t}' in {ctx} - ignoring"),
                );
                return None;
            }
        };
        let mut v = VirtualIp {
            addr,
            prefix_len,
            brd: None,
            dev: None,
            scope: None,
            label: None,
            peer: None,
            home: false,
            nodad: false,
            mngtmpaddr: false,
            noprefixroute: false,
            autojoin: false,
            no_track: false,
            use_vmac: false,
            preferred_lft: None,
            track_group: None,
        };
        let mut i = 1;
        while i < l.len() {
            let k = l[i].text.as_str();
            let val = l.get(i + 1).map(|t| t.text.clone());
            let takes = matches!(
                k,
                "brd"
                    | "broadcast"
                    | "dev"
                    | "scope"
                    | "label"
                    | "peer"
                    | "preferred_lft"
                    | "track_group"
            );
            if takes && val.is_none() {
                self.err(
                    l[i].span,
                    k,
                    format!("{ctx}: option '{k}' is missing a value"),
                );
                break;
            }
            match k {
                "brd" | "broadcast" => match val.as_deref() {
                    Some("+") | Some("-") => {}
                    Some(s) => match s.parse() {
                        Ok(ip) => v.brd = Some(ip),
                        Err(_) => self.err(
                            l[i + 1].span,
                            s,
                            format!("Invalid broadcast address '{s}' in {ctx}"),
                        ),
                    },
                    None => {}
                },
                "dev" => v.dev = val,
                "scope" => v.scope = val,
                "label" => v.label = val,
                "peer" => match val.as_deref().map(str::parse::<IpAddr>) {
                    Some(Ok(ip)) => v.peer = Some(ip),
                    _ => {
                        let s = val.unwrap_or_default();
                        self.err(
                            l[i + 1].span,
                            &s,
                            format!("Invalid peer address '{s}' in {ctx}"),
                        )
                    }
                },
                "preferred_lft" => v.preferred_lft = val,
                "track_group" => v.track_group = val,
                "home" => v.home = true,
                "-nodad" | "nodad" => v.nodad = true,
                "mngtmpaddr" => v.mngtmpaddr = true,
                "noprefixroute" => v.noprefixroute = true,
                "autojoin" => v.autojoin = true,
                "no_track" => v.no_track = true,
                "use_vmac" => v.use_vmac = true,
                _ => {
                    let t = k.to_string();
                    self.warn(
                        l[i].span,
                        &t,
                        format!("Unknown configuration entry '{t}' for ip address - ignoring"),
                    );
                }
            }
            i += if takes { 2 } else { 1 };
        }
        Some(v)
    }

    pub(super) fn vips(&mut self, n: &Node, ctx: &str) -> Vec<VirtualIp> {
        let mut out = Vec::new();
        for l in self.value_lines(n) {
            if let Some(v) = self.vip(&l, ctx) {
                out.push(v);
            }
        }
        out
    }
}
