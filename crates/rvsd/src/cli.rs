//! rvsd's command line: rvs's own options plus the keepalived flags that make
//! sense for a single-process daemon (`-f -n -D -l -P -C -t -i -p -r -c ...`).

use std::ffi::OsString;
use std::path::PathBuf;

pub const USAGE: &str = "\
Usage: rvsd [OPTION...]
rvs daemon: IPVS virtual-server table, data plane, health checks, VRRP and
control API. Runs keepalived configuration files unchanged.

  -f, --use-file=FILE        keepalived configuration file to run
  -t, --config-test          check the configuration file and exit
                             (exit status as keepalived's -t)
      --dump-config          print the resolved configuration as JSON and exit
  -i, --config-id=ID         config id for @id conditional lines
                             (default: first label of the host name)
      --socket=PATH          control socket (default /run/rvs/rvsd.sock as
                             root, else $XDG_RUNTIME_DIR/rvs/rvsd.sock;
                             also $RVS_SOCKET)
      --engine=ENGINE        data plane: proxy (default; a socket relay that
                             needs no root), packet (DR/NAT/TUN on AF_PACKET)
                             or xdp (AF_XDP, falls back to packet)
      --interface=IF         interface for the packet and xdp engines
      --metrics-listen=ADDR  serve /metrics and the dashboard on ADDR
      --demo                 run a demo virtual service on 127.0.0.1 with two
                             built-in backends
      --demo-port=PORT       port of the demo virtual service (default 8080)
      --log-format=text|json log line format (default text)
  -D, --log-detail           detailed (debug) logs
  -l, --log-console          log to the console (always on: rvsd logs to stderr)
  -n, --dont-fork            stay in the foreground (rvsd never forks)
  -p, --pid=FILE             write the daemon's pid to FILE
  -P, --vrrp                 run only VRRP
  -C, --check                run only the health checkers and the table
  -r, --vrrp_pid=FILE        accepted for keepalived compatibility (one process)
  -c, --checkers_pid=FILE    accepted for keepalived compatibility (one process)
  -h, --help                 show this help
  -v, --version              show the version

Signals: SIGTERM/SIGINT stop; SIGHUP reloads the -f file (only the
difference is applied); SIGUSR2 upgrades without an outage: rvsd starts the
binary at its own path with the same arguments and hands over its sockets,
connections, table, health checks and VRRP state; if that fails, this rvsd
goes on serving and logs why.
";

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Run,
    Help,
    Version,
    ConfigTest,
    DumpConfig,
}

#[derive(Debug, Clone, Default)]
pub struct Args {
    pub mode: Mode,
    pub config: Option<PathBuf>,
    pub config_id: Option<String>,
    pub socket: Option<PathBuf>,
    pub engine: String,
    pub interface: Option<String>,
    pub metrics_listen: Option<String>,
    pub demo: bool,
    pub demo_port: u16,
    pub log_format: LogFormat,
    pub log_detail: bool,
    pub pid_file: Option<PathBuf>,
    pub vrrp_only: bool,
    pub check_only: bool,
}

/// Parse argv (without the program name). Errors are one line, naming the
/// option and the fix.
pub fn parse<I: IntoIterator<Item = OsString>>(argv: I) -> Result<Args, String> {
    use lexopt::prelude::*;
    let mut a = Args {
        engine: "proxy".into(),
        demo_port: 8080,
        ..Args::default()
    };
    let mut p = lexopt::Parser::from_args(argv);
    let val = |p: &mut lexopt::Parser, name: &str| -> Result<String, String> {
        p.value()
            .map_err(|_| format!("option {name} needs a value (see rvsd --help)"))?
            .into_string()
            .map_err(|_| format!("option {name}: value is not valid UTF-8"))
    };
    while let Some(arg) = p.next().map_err(|e| format!("{e} (see rvsd --help)"))? {
        match arg {
            Short('f') | Long("use-file") => a.config = Some(val(&mut p, "--use-file")?.into()),
            Short('t') | Long("config-test") => a.mode = Mode::ConfigTest,
            Long("dump-config") => a.mode = Mode::DumpConfig,
            Short('i') | Long("config-id") => a.config_id = Some(val(&mut p, "--config-id")?),
            Long("socket") => a.socket = Some(val(&mut p, "--socket")?.into()),
            Long("engine") => {
                let e = val(&mut p, "--engine")?;
                if !matches!(e.as_str(), "proxy" | "packet" | "xdp") {
                    return Err(format!(
                        "unknown engine '{e}' for --engine (choose proxy, packet or xdp)"
                    ));
                }
                a.engine = e;
            }
            Long("interface") => a.interface = Some(val(&mut p, "--interface")?),
            Long("metrics-listen") => a.metrics_listen = Some(val(&mut p, "--metrics-listen")?),
            Long("demo") => a.demo = true,
            Long("demo-port") => {
                let v = val(&mut p, "--demo-port")?;
                a.demo_port = v
                    .parse()
                    .map_err(|_| format!("invalid port '{v}' for --demo-port (1-65535)"))?;
            }
            Long("log-format") => {
                a.log_format = match val(&mut p, "--log-format")?.as_str() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    o => {
                        return Err(format!(
                            "unknown log format '{o}' for --log-format (choose text or json)"
                        ))
                    }
                }
            }
            Short('D') | Long("log-detail") => a.log_detail = true,
            Short('l') | Long("log-console") | Short('n') | Long("dont-fork") => {}
            Short('G') | Long("no-syslog") | Short('R') | Long("dont-respawn") => {}
            Short('V') | Long("dont-release-vrrp") | Short('I') | Long("dont-release-ipvs") => {}
            Short('X') | Long("release-vips") | Short('B') | Long("no_bfd") | Long("all") => {}
            Short('d') | Long("dump-conf") => {}
            Short('S') | Long("log-facility") => {
                val(&mut p, "--log-facility")?;
            }
            Short('p') | Long("pid") => a.pid_file = Some(val(&mut p, "--pid")?.into()),
            Short('r') | Long("vrrp_pid") => {
                val(&mut p, "--vrrp_pid")?;
            }
            Short('c') | Long("checkers_pid") => {
                val(&mut p, "--checkers_pid")?;
            }
            Short('P') | Long("vrrp") => a.vrrp_only = true,
            Short('C') | Long("check") => a.check_only = true,
            Short('h') | Long("help") => a.mode = Mode::Help,
            Short('v') | Long("version") => a.mode = Mode::Version,
            Value(v) => {
                return Err(format!(
                    "unexpected argument '{}' (options only; the config file goes after -f)",
                    v.to_string_lossy()
                ))
            }
            other => return Err(format!("{} (see rvsd --help)", other.unexpected())),
        }
    }
    if matches!(a.mode, Mode::ConfigTest | Mode::DumpConfig) && a.config.is_none() {
        a.config = Some(PathBuf::from("/etc/keepalived/keepalived.conf"));
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Args, String> {
        parse(s.split_whitespace().map(OsString::from))
    }

    #[test]
    fn keepalived_style_command_line() {
        let a = p("-P -n -l -f /etc/k.conf -p /run/k.pid -r /run/v.pid -i lvs1").unwrap();
        assert_eq!(
            a.config.as_deref(),
            Some(std::path::Path::new("/etc/k.conf"))
        );
        assert_eq!(a.config_id.as_deref(), Some("lvs1"));
        assert!(a.vrrp_only);
        assert_eq!(a.mode, Mode::Run);
        let a = p("-t -f x.conf").unwrap();
        assert_eq!(a.mode, Mode::ConfigTest);
        let a = p("--use-file=x.conf --engine=proxy --socket /tmp/s").unwrap();
        assert_eq!(a.engine, "proxy");
    }

    #[test]
    fn errors_name_the_fix() {
        assert_eq!(
            p("--engine xdp2").unwrap_err(),
            "unknown engine 'xdp2' for --engine (choose proxy, packet or xdp)"
        );
        assert!(p("--bogus").unwrap_err().contains("--bogus"));
        assert!(p("-f").unwrap_err().contains("needs a value"));
        assert!(p("stray")
            .unwrap_err()
            .contains("unexpected argument 'stray'"));
        assert!(p("--demo-port 99999").unwrap_err().contains("invalid port"));
    }
}
