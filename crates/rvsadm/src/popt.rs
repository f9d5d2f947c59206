//! A faithful emulation of the parts of popt 1.19 that ipvsadm relies on.
//!
//! * Options are read left to right; non-option words (and everything
//!   after `--`) are collected as leftovers, in order.
//! * `--long`, `--long=value`, `--long value`; a single dash never matches a
//!   long option (no ipvsadm option has `POPT_ARGFLAG_ONEDASH`), so `-abc`
//!   is always a cluster of short options.
//! * In a cluster, an option that takes an argument takes the rest of the
//!   word (one leading `=` skipped), else the next word — even if it starts
//!   with `-`, except for an *optional* argument (`-p`), which is only taken
//!   from the next word when that word does not start with `-`.
//! * A no-argument option given `=value` (`--numeric=1`, `-n=1`) is an
//!   error, as is an unknown option or a missing argument.
//! * [`Popt::bad_option`] is `poptBadOption(con, POPT_BADOPTION_NOALIAS)`:
//!   the last argv word consumed.

/// Every option ipvsadm 1.31 knows (plus rvsadm's `--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opt {
    AddService,
    EditService,
    DeleteService,
    Clear,
    List,
    Zero,
    AddServer,
    EditServer,
    DeleteServer,
    Set,
    Help,
    Version,
    Restore,
    Save,
    StartDaemon,
    StopDaemon,
    TcpService,
    UdpService,
    SctpService,
    FwmarkService,
    Scheduler,
    Persistent,
    Netmask,
    RealServer,
    Masquerading,
    Ipip,
    Gatewaying,
    Weight,
    UThreshold,
    LThreshold,
    Numeric,
    Connection,
    McastInterface,
    Syncid,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Sort,
    Exact,
    Ipv6,
    Ops,
    Pe,
    SchedFlags,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    TunInfo,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    TunRemcsum,
    Json,
}

/// Argument kind of an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    None,
    Required,
    Optional,
}

/// One row of the option table.
#[derive(Debug, Clone, Copy)]
pub struct OptDef {
    pub long: &'static str,
    pub short: Option<u8>,
    pub kind: ArgKind,
    pub id: Opt,
}

const fn d(long: &'static str, short: Option<u8>, kind: ArgKind, id: Opt) -> OptDef {
    OptDef {
        long,
        short,
        kind,
        id,
    }
}

use ArgKind::{None as N, Optional as O, Required as R};

/// The option table, in ipvsadm's order (first match wins).
pub const TABLE: &[OptDef] = &[
    d("add-service", Some(b'A'), N, Opt::AddService),
    d("edit-service", Some(b'E'), N, Opt::EditService),
    d("delete-service", Some(b'D'), N, Opt::DeleteService),
    d("clear", Some(b'C'), N, Opt::Clear),
    d("list", Some(b'L'), N, Opt::List),
    d("list", Some(b'l'), N, Opt::List),
    d("zero", Some(b'Z'), N, Opt::Zero),
    d("add-server", Some(b'a'), N, Opt::AddServer),
    d("edit-server", Some(b'e'), N, Opt::EditServer),
    d("delete-server", Some(b'd'), N, Opt::DeleteServer),
    d("set", None, N, Opt::Set),
    d("help", Some(b'h'), N, Opt::Help),
    d("version", Some(b'v'), N, Opt::Version),
    d("restore", Some(b'R'), N, Opt::Restore),
    d("save", Some(b'S'), N, Opt::Save),
    d("start-daemon", None, R, Opt::StartDaemon),
    d("stop-daemon", None, R, Opt::StopDaemon),
    d("tcp-service", Some(b't'), R, Opt::TcpService),
    d("udp-service", Some(b'u'), R, Opt::UdpService),
    d("sctp-service", None, R, Opt::SctpService),
    d("fwmark-service", Some(b'f'), R, Opt::FwmarkService),
    d("scheduler", Some(b's'), R, Opt::Scheduler),
    d("persistent", Some(b'p'), O, Opt::Persistent),
    d("netmask", Some(b'M'), R, Opt::Netmask),
    d("real-server", Some(b'r'), R, Opt::RealServer),
    d("masquerading", Some(b'm'), N, Opt::Masquerading),
    d("ipip", Some(b'i'), N, Opt::Ipip),
    d("gatewaying", Some(b'g'), N, Opt::Gatewaying),
    d("weight", Some(b'w'), R, Opt::Weight),
    d("u-threshold", Some(b'x'), R, Opt::UThreshold),
    d("l-threshold", Some(b'y'), R, Opt::LThreshold),
    d("numeric", Some(b'n'), N, Opt::Numeric),
    d("connection", Some(b'c'), N, Opt::Connection),
    d("mcast-interface", None, R, Opt::McastInterface),
    d("syncid", None, R, Opt::Syncid),
    d("timeout", None, N, Opt::Timeout),
    d("daemon", None, N, Opt::Daemon),
    d("stats", None, N, Opt::Stats),
    d("rate", None, N, Opt::Rate),
    d("thresholds", None, N, Opt::Thresholds),
    d("persistent-conn", None, N, Opt::PersistentConn),
    d("nosort", None, N, Opt::NoSort),
    d("sort", None, N, Opt::Sort),
    d("exact", Some(b'X'), N, Opt::Exact),
    d("ipv6", Some(b'6'), N, Opt::Ipv6),
    d("ops", Some(b'o'), N, Opt::Ops),
    d("pe", None, R, Opt::Pe),
    d("sched-flags", Some(b'b'), R, Opt::SchedFlags),
    d("mcast-group", None, R, Opt::McastGroup),
    d("mcast-port", None, R, Opt::McastPort),
    d("mcast-ttl", None, R, Opt::McastTtl),
    d("sync-maxlen", None, R, Opt::SyncMaxlen),
    d("tun-info", None, N, Opt::TunInfo),
    d("tun-type", None, R, Opt::TunType),
    d("tun-port", None, R, Opt::TunPort),
    d("tun-nocsum", None, N, Opt::TunNocsum),
    d("tun-csum", None, N, Opt::TunCsum),
    d("tun-remcsum", None, N, Opt::TunRemcsum),
    d("json", None, N, Opt::Json),
];

/// popt error classes ipvsadm can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoptError {
    NoArg,
    BadOpt,
    UnwantedArg,
}

impl PoptError {
    /// `poptStrerror` text.
    pub fn text(self) -> &'static str {
        match self {
            PoptError::NoArg => "missing argument",
            PoptError::BadOpt => "unknown option",
            PoptError::UnwantedArg => "option does not take an argument",
        }
    }
}

/// popt context over `argv[1..]`.
#[derive(Debug)]
pub struct Popt<'a> {
    args: &'a [String],
    next: usize,
    /// (word index, byte offset) of the rest of a short-option cluster.
    next_char: Option<(usize, usize)>,
    rest_leftover: bool,
    leftovers: Vec<String>,
    next_leftover: usize,
}

impl<'a> Popt<'a> {
    pub fn new(args: &'a [String]) -> Self {
        Popt {
            args,
            next: 0,
            next_char: None,
            rest_leftover: false,
            leftovers: Vec::new(),
            next_leftover: 0,
        }
    }

    /// The last argv word consumed (`poptBadOption`).
    pub fn bad_option(&self) -> &str {
        match self.next.checked_sub(1) {
            Some(i) => &self.args[i],
            None => "",
        }
    }

    /// `poptGetArg`: the next leftover (non-option) word.
    pub fn get_arg(&mut self) -> Option<String> {
        let a = self.leftovers.get(self.next_leftover).cloned();
        if a.is_some() {
            self.next_leftover += 1;
        }
        a
    }

    /// `poptGetNextOpt`: `Ok(None)` at the end of argv.
    pub fn next_opt(&mut self) -> Result<Option<(Opt, Option<String>)>, PoptError> {
        loop {
            let mut found: Option<&'static OptDef> = None;
            let mut long_arg: Option<String> = None;
            if self.next_char.is_none() {
                if self.next >= self.args.len() {
                    return Ok(None);
                }
                let word = &self.args[self.next];
                self.next += 1;
                if self.rest_leftover || !word.starts_with('-') || word == "-" {
                    self.leftovers.push(word.clone());
                    continue;
                }
                if word == "--" {
                    self.rest_leftover = true;
                    continue;
                }
                if let Some(body) = word.strip_prefix("--") {
                    let (name, arg) = match body.find('=') {
                        Some(i) => (&body[..i], Some(body[i + 1..].to_string())),
                        None => (body, None),
                    };
                    match TABLE.iter().find(|o| o.long == name) {
                        Some(o) => {
                            found = Some(o);
                            long_arg = arg;
                        }
                        None => return Err(PoptError::BadOpt),
                    }
                } else {
                    self.next_char = Some((self.next - 1, 1));
                }
            }
            if let Some((wi, off)) = self.next_char.take() {
                let bytes = self.args[wi].as_bytes();
                let c = bytes[off];
                let o = TABLE
                    .iter()
                    .find(|o| o.short == Some(c))
                    .ok_or(PoptError::BadOpt)?;
                if off + 1 < bytes.len() {
                    self.next_char = Some((wi, off + 1));
                }
                found = Some(o);
            }
            let Some(o) = found else {
                return Err(PoptError::BadOpt);
            };
            match o.kind {
                ArgKind::None => {
                    let eq = self
                        .next_char
                        .map(|(wi, off)| self.args[wi].as_bytes()[off] == b'=')
                        .unwrap_or(false);
                    if long_arg.is_some() || eq {
                        return Err(PoptError::UnwantedArg);
                    }
                    return Ok(Some((o.id, None)));
                }
                kind => {
                    let arg = if let Some(a) = long_arg {
                        Some(a)
                    } else if let Some((wi, off)) = self.next_char.take() {
                        let b = &self.args[wi].as_bytes()[off..];
                        let b = b.strip_prefix(b"=").unwrap_or(b);
                        Some(String::from_utf8_lossy(b).into_owned())
                    } else if self.next >= self.args.len() {
                        if kind == ArgKind::Optional {
                            None
                        } else {
                            return Err(PoptError::NoArg);
                        }
                    } else {
                        let w = &self.args[self.next];
                        if kind == ArgKind::Optional && w.starts_with('-') {
                            None
                        } else {
                            self.next += 1;
                            Some(w.clone())
                        }
                    };
                    return Ok(Some((o.id, arg)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Scan = (
        Vec<(Opt, Option<String>)>,
        Option<(PoptError, String)>,
        Vec<String>,
    );

    fn all(words: &[&str]) -> Scan {
        let args: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        let mut p = Popt::new(&args);
        let mut v = Vec::new();
        let err = loop {
            match p.next_opt() {
                Ok(Some(x)) => v.push(x),
                Ok(None) => break None,
                Err(e) => break Some((e, p.bad_option().to_string())),
            }
        };
        let mut left = Vec::new();
        while let Some(a) = p.get_arg() {
            left.push(a);
        }
        (v, err, left)
    }

    #[test]
    fn clusters_and_args() {
        let (v, e, _) = all(&["-Lnc"]);
        assert_eq!(
            v.iter().map(|x| x.0).collect::<Vec<_>>(),
            [Opt::List, Opt::Numeric, Opt::Connection]
        );
        assert!(e.is_none());
        let (v, _, _) = all(&["-At", "10.0.0.1:80", "-srr", "-p300"]);
        assert_eq!(v[1], (Opt::TcpService, Some("10.0.0.1:80".into())));
        assert_eq!(v[2], (Opt::Scheduler, Some("rr".into())));
        assert_eq!(v[3], (Opt::Persistent, Some("300".into())));
        let (v, _, _) = all(&["-A", "-p", "-s", "rr"]);
        assert_eq!(v[1], (Opt::Persistent, None));
        let (v, _, _) = all(&["-a", "-w", "-1"]);
        assert_eq!(v[1], (Opt::Weight, Some("-1".into())));
        let (v, _, _) = all(&["--persistent=300", "-p=5", "--tcp-service", "x"]);
        assert_eq!(v[0], (Opt::Persistent, Some("300".into())));
        assert_eq!(v[1], (Opt::Persistent, Some("5".into())));
        assert_eq!(v[2], (Opt::TcpService, Some("x".into())));
    }

    #[test]
    fn errors_and_leftovers() {
        let (_, e, _) = all(&["-L", "--foo"]);
        assert_eq!(e, Some((PoptError::BadOpt, "--foo".into())));
        let (_, e, _) = all(&["-A", "-t"]);
        assert_eq!(e, Some((PoptError::NoArg, "-t".into())));
        let (_, e, _) = all(&["--numeric=1"]);
        assert_eq!(e, Some((PoptError::UnwantedArg, "--numeric=1".into())));
        let (_, e, l) = all(&["--set", "1", "2", "-1"]);
        assert_eq!(e, Some((PoptError::BadOpt, "-1".into())));
        assert_eq!(l, ["1", "2"]);
        let (v, e, l) = all(&["foo", "-L", "--", "-n"]);
        assert_eq!(v.len(), 1);
        assert!(e.is_none());
        assert_eq!(l, ["foo", "-n"]);
    }
}
