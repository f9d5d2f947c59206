//! Observability end to end: rvsd runs as a child process with
//! `--metrics-listen` on loopback, real clients drive traffic through the
//! proxy engine, and the tests scrape `/metrics` (values and the exposition
//! format, checked with `prometheus-parse` and a strict line checker), read
//! `/api/state`, and load the dashboard in headless Chromium (skipped when
//! no Chromium is installed, a failure with `RVS_REQUIRE_LAB=1`), saving a
//! screenshot as `target/dashboard.png`.

mod common;

use common::*;
use rvs_api::{Command, DestSpec, FwdMethod, Protocol, ServiceKey, ServiceSpec};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command as Proc, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn vip(port: u16) -> SocketAddr {
    SocketAddr::new("127.0.0.1".parse().unwrap(), port)
}

fn key(port: u16) -> ServiceKey {
    ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: "127.0.0.1".parse().unwrap(),
        port,
    }
}

fn dest(addr: SocketAddr, weight: u32) -> DestSpec {
    DestSpec {
        addr: addr.ip(),
        port: addr.port(),
        fwd: FwdMethod::Masq,
        weight,
        u_threshold: 0,
        l_threshold: 0,
        tun_type: Default::default(),
        tun_port: 0,
        tun_flags: Default::default(),
    }
}

/// A plain HTTP/1.1 GET: (status, content type, body).
fn http_get(addr: SocketAddr, path: &str, accept: Option<&str>) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let ctype = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Some((status, ctype, body.to_string()))
}

/// rvsd with `--metrics-listen` on a free loopback port.
fn start_with_metrics(extra: &[&str]) -> (Rvsd, SocketAddr) {
    let maddr = SocketAddr::new("127.0.0.1".parse().unwrap(), free_port());
    let ms = maddr.to_string();
    let mut args = vec!["--metrics-listen", ms.as_str()];
    args.extend_from_slice(extra);
    let d = Rvsd::start(&args);
    let up = wait_for(Duration::from_secs(10), || {
        http_get(maddr, "/healthz", None).filter(|r| r.0 == 200)
    });
    assert!(up.is_some(), "metrics listener never answered: {}", d.log());
    (d, maddr)
}

fn scrape(maddr: SocketAddr) -> String {
    let (status, ctype, body) = http_get(maddr, "/metrics", None).expect("scrape /metrics");
    assert_eq!(status, 200, "{body}");
    assert!(
        ctype.starts_with("text/plain; version=0.0.4"),
        "content type {ctype}"
    );
    body
}

/// Parsed samples: name → [(labels, value)].
type Samples = HashMap<String, Vec<(HashMap<String, String>, f64)>>;

fn parse(text: &str) -> Samples {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("prometheus-parse accepts the exposition");
    let mut out: Samples = HashMap::new();
    for s in scrape.samples {
        let v = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            other => panic!("unexpected sample type for {}: {other:?}", s.metric),
        };
        let labels: HashMap<String, String> = s
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        out.entry(s.metric).or_default().push((labels, v));
    }
    out
}

/// The value of `name` whose labels include all of `want`.
fn value(s: &Samples, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    s.get(name)?
        .iter()
        .find(|(l, _)| {
            want.iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| *v)
}

/// A strict check of the Prometheus text format (0.0.4) beyond what the
/// lenient parser enforces: HELP/TYPE once per family and before its
/// samples, valid metric and label names, counters named `_total`, escaped
/// label values, numeric values, no duplicate series.
fn validate_exposition(text: &str) {
    fn valid_name(n: &str, colon: bool) -> bool {
        let mut c = n.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || (colon && f == ':'))
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || (colon && x == ':'))
    }
    assert!(text.ends_with('\n'), "exposition must end with a newline");
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashSet<String> = HashSet::new();
    let mut series: HashSet<String> = HashSet::new();
    let mut closed: HashSet<String> = HashSet::new();
    let mut current = String::new();
    for line in text.lines() {
        assert!(!line.is_empty(), "empty line in exposition");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            assert!(valid_name(name, true), "bad name in {line}");
            assert!(helps.insert(name.to_string()), "HELP twice: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (name, kind) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad type: {line}"
            );
            assert!(helps.contains(name), "TYPE without HELP: {line}");
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "TYPE twice: {line}"
            );
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter not named _total: {name}");
            }
            assert!(name.starts_with("rvs_"), "metric not prefixed rvs_: {name}");
            if !current.is_empty() {
                closed.insert(std::mem::take(&mut current));
            }
            current = name.to_string();
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment: {line}");
        // name{labels} value
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => panic!("sample without value: {line}"),
        };
        assert!(valid_name(name, true), "bad metric name: {line}");
        assert_eq!(name, current, "sample outside its family: {line}");
        assert!(!closed.contains(name), "family interleaved: {line}");
        let (labels, val) = if let Some(r) = rest.strip_prefix('{') {
            // Walk the label set honouring escapes.
            let mut labels = Vec::new();
            let b = r.as_bytes();
            let mut i = 0;
            loop {
                if b[i] == b'}' {
                    i += 1;
                    break;
                }
                let eq = r[i..].find('=').expect("label =") + i;
                let lname = &r[i..eq];
                assert!(valid_name(lname, false), "bad label name {lname}: {line}");
                assert!(!lname.starts_with("__"), "reserved label: {line}");
                assert_eq!(b[eq + 1], b'"', "label value not quoted: {line}");
                let mut j = eq + 2;
                let mut v = String::new();
                while b[j] != b'"' {
                    if b[j] == b'\\' {
                        assert!(
                            matches!(b[j + 1], b'\\' | b'"' | b'n'),
                            "bad escape: {line}"
                        );
                        j += 1;
                    }
                    v.push(b[j] as char);
                    j += 1;
                }
                labels.push(format!("{lname}={v}"));
                i = j + 1;
                if b[i] == b',' {
                    i += 1;
                }
            }
            (labels, &r[i..])
        } else {
            (Vec::new(), rest)
        };
        let names: HashSet<_> = labels
            .iter()
            .map(|l| l.split('=').next().unwrap_or(""))
            .collect();
        assert_eq!(names.len(), labels.len(), "label repeated: {line}");
        let val = val.strip_prefix(' ').expect("space before value");
        let v: f64 = val.parse().unwrap_or_else(|_| panic!("bad value: {line}"));
        assert!(v.is_finite() && v >= 0.0, "unexpected value: {line}");
        let mut sorted = labels.clone();
        sorted.sort();
        assert!(
            series.insert(format!("{name}{sorted:?}")),
            "duplicate series: {line}"
        );
    }
}

#[test]
fn metrics_count_the_traffic_and_parse() {
    let (d, maddr) = start_with_metrics(&[]);
    let port = free_port();
    let a = Backend::start(&format!("127.0.0.2:{port}"), "a");
    let b = Backend::start(&format!("127.0.0.3:{port}"), "b");
    d.call(Command::AddService {
        spec: ServiceSpec {
            key: key(port),
            scheduler: "rr".into(),
            flags: 0,
            timeout: 0,
            netmask: 0xffff_ffff,
            pe_name: None,
        },
    });
    d.call(Command::AddDest {
        service: key(port),
        dest: dest(a.addr, 1),
    });
    d.call(Command::AddDest {
        service: key(port),
        dest: dest(b.addr, 3),
    });
    // Every successful request is one scheduled connection.
    let mut made = 0u64;
    assert!(
        wait_for(Duration::from_secs(5), || get(vip(port))).is_some(),
        "{}",
        d.log()
    );
    made += 1;
    for _ in 0..19 {
        get(vip(port)).expect("request through the virtual service");
        made += 1;
    }

    let p = port.to_string();
    let svc = [("proto", "tcp"), ("vip", "127.0.0.1"), ("port", p.as_str())];
    // Bytes are counted as the relays finish: wait until every reply is in.
    let text = wait_for(Duration::from_secs(5), || {
        let t = scrape(maddr);
        let s = parse(&t);
        let body_bytes = value(&s, "rvs_service_out_bytes_total", &svc)?;
        let active = value(&s, "rvs_service_active_connections", &svc)?;
        (body_bytes >= (made * 40) as f64 && active == 0.0).then_some(t)
    })
    .unwrap_or_else(|| {
        panic!(
            "out bytes never reached the replies' size:\n{}",
            scrape(maddr)
        )
    });
    validate_exposition(&text);
    let s = parse(&text);

    assert_eq!(
        value(&s, "rvs_service_connections_total", &svc),
        Some(made as f64),
        "{text}"
    );
    assert_eq!(value(&s, "rvs_services", &[]), Some(1.0));
    assert_eq!(value(&s, "rvs_service_destinations", &svc), Some(2.0));
    assert!(value(&s, "rvs_service_in_bytes_total", &svc).unwrap() >= (made * 40) as f64);
    assert!(value(&s, "rvs_service_in_packets_total", &svc).unwrap() >= made as f64);
    assert!(value(&s, "rvs_service_out_packets_total", &svc).unwrap() >= made as f64);
    assert!(value(&s, "rvs_service_connections_per_second", &svc).is_some());
    assert!(value(&s, "rvs_service_in_bytes_per_second", &svc).is_some());
    assert_eq!(
        value(
            &s,
            "rvs_service_info",
            &[
                ("port", p.as_str()),
                ("scheduler", "rr"),
                ("persistent", "false")
            ]
        ),
        Some(1.0)
    );
    // Per destination: rr over weights 1 and 3 is still alternation (rr
    // ignores weights), so each got half; weights are exported as set.
    let rs_a = a.addr.to_string();
    let rs_b = b.addr.to_string();
    let dconns = |rs: &str| {
        value(
            &s,
            "rvs_destination_connections_total",
            &[("port", p.as_str()), ("rs", rs)],
        )
        .unwrap_or(-1.0)
    };
    assert_eq!(dconns(&rs_a) + dconns(&rs_b), made as f64, "{text}");
    assert_eq!(dconns(&rs_a), (made / 2) as f64);
    assert_eq!(
        value(&s, "rvs_destination_weight", &[("rs", rs_b.as_str())]),
        Some(3.0)
    );
    assert_eq!(
        value(
            &s,
            "rvs_destination_info",
            &[("rs", rs_a.as_str()), ("forward", "Masq")]
        ),
        Some(1.0)
    );
    // All connections closed: inactive (FIN_WAIT/TIME_WAIT), none active.
    assert_eq!(value(&s, "rvs_service_active_connections", &svc), Some(0.0));
    assert!(value(
        &s,
        "rvs_destination_inactive_connections",
        &[("rs", rs_a.as_str())]
    )
    .is_some());
    // Process-level metrics.
    assert_eq!(
        value(&s, "rvs_build_info", &[("engine", "proxy")]),
        Some(1.0)
    );
    assert_eq!(value(&s, "rvs_config_reloads_total", &[]), Some(0.0));
    assert_eq!(
        value(&s, "rvs_config_last_reload_successful", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "rvs_dataplane_drops_total", &[("reason", "no_dest")]),
        Some(0.0)
    );

    // A service without destinations: its flows are dropped, by reason.
    let port2 = free_port();
    d.call(Command::AddService {
        spec: ServiceSpec {
            key: key(port2),
            scheduler: "wlc".into(),
            flags: rvs_api::svc_flags::PERSISTENT,
            timeout: 300,
            netmask: 0xffff_ffff,
            pe_name: None,
        },
    });
    let dropped = wait_for(Duration::from_secs(5), || {
        let _ = get(vip(port2));
        let s = parse(&scrape(maddr));
        value(&s, "rvs_dataplane_drops_total", &[("reason", "no_dest")]).filter(|v| *v >= 1.0)
    });
    assert!(dropped.is_some(), "no_dest drop not counted: {}", d.log());
    let text = scrape(maddr);
    validate_exposition(&text);
    let s = parse(&text);
    assert_eq!(value(&s, "rvs_services", &[]), Some(2.0));
    let p2 = port2.to_string();
    assert_eq!(
        value(
            &s,
            "rvs_service_info",
            &[
                ("port", p2.as_str()),
                ("scheduler", "wlc"),
                ("persistent", "true")
            ]
        ),
        Some(1.0)
    );

    // The estimator sees the traffic within a few seconds (2 s EWMA).
    for _ in 0..20 {
        get(vip(port)).expect("request");
    }
    let rate = wait_for(Duration::from_secs(8), || {
        let s = parse(&scrape(maddr));
        value(&s, "rvs_service_connections_per_second", &svc).filter(|v| *v > 0.0)
    });
    assert!(rate.is_some(), "connection rate stayed 0");

    // OpenMetrics on request.
    let (status, ctype, body) = http_get(
        maddr,
        "/metrics",
        Some("application/openmetrics-text; version=1.0.0"),
    )
    .expect("openmetrics scrape");
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(body.ends_with("# EOF\n"), "{body}");

    // The dashboard's JSON.
    let (status, ctype, body) = http_get(maddr, "/api/state", None).expect("/api/state");
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/json"), "{ctype}");
    let st: serde_json::Value = serde_json::from_str(&body).expect("json");
    let svc0 = st["services"]
        .as_array()
        .and_then(|v| {
            v.iter()
                .find(|s| s["display"] == format!("TCP 127.0.0.1:{port}"))
        })
        .unwrap_or_else(|| panic!("service missing from /api/state: {body}"));
    assert_eq!(svc0["stats"]["conns"], made + 20);
    assert_eq!(svc0["dests"].as_array().map(Vec::len), Some(2));
    assert_eq!(st["engine"], "proxy");
    assert!(st["history"]["total"].is_array(), "{body}");

    // The dashboard page is self-contained and locked down.
    let (status, ctype, page) = http_get(maddr, "/", None).expect("dashboard");
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/html"));
    assert!(page.contains("id=\"services\""));
    // Read-only: nothing but GET.
    let mut s = TcpStream::connect(maddr).unwrap();
    write!(
        s,
        "POST /api/state HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = String::new();
    let _ = s.read_to_string(&mut r);
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    assert_eq!(http_get(maddr, "/nope", None).map(|r| r.0), Some(404));
}

fn keepalived_conf(port: u16, port2: u16, weight_b: u32) -> String {
    format!(
        "global_defs {{
    router_id observe_test
}}
virtual_server 127.0.0.1 {port} {{
    delay_loop 1
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    real_server 127.0.0.2 {port} {{
        weight 2
        TCP_CHECK {{
            connect_timeout 1
            retry 0
        }}
    }}
    real_server 127.0.0.3 {port} {{
        weight {weight_b}
        TCP_CHECK {{
            connect_timeout 1
            retry 0
        }}
    }}
    real_server 127.0.0.4 {port} {{
        weight 1
        TCP_CHECK {{
            connect_timeout 1
            retry 0
        }}
    }}
}}
virtual_server 127.0.0.1 {port2} {{
    delay_loop 1
    lb_algo lc
    lb_kind NAT
    protocol TCP
    real_server 127.0.0.5 {port2} {{
        weight 1
        TCP_CHECK {{
            connect_timeout 1
        }}
    }}
    real_server 127.0.0.6 {port2} {{
        weight 1
        TCP_CHECK {{
            connect_timeout 1
        }}
    }}
}}
"
    )
}

fn hup(d: &Rvsd) {
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(d.child.id() as i32, libc::SIGHUP);
    }
}

/// A keepalived configuration: two services, one real server down. Health
/// state, transitions and reloads appear in the metrics.
struct HealthSetup {
    d: Rvsd,
    maddr: SocketAddr,
    port: u16,
    port2: u16,
    conf: PathBuf,
    _dir: tempfile::TempDir,
    _backends: Vec<Backend>,
}

fn health_setup() -> HealthSetup {
    let port = free_port();
    let port2 = free_port();
    // 127.0.0.4:port has no server: its check fails.
    let backends = vec![
        Backend::start(&format!("127.0.0.2:{port}"), "web-a"),
        Backend::start(&format!("127.0.0.3:{port}"), "web-b"),
        Backend::start(&format!("127.0.0.5:{port2}"), "api-a"),
        Backend::start(&format!("127.0.0.6:{port2}"), "api-b"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("keepalived.conf");
    std::fs::write(&conf, keepalived_conf(port, port2, 3)).unwrap();
    let (d, maddr) = start_with_metrics(&["-f", conf.to_str().unwrap()]);
    assert!(
        wait_for(Duration::from_secs(5), || get(vip(port))).is_some(),
        "{}",
        d.log()
    );
    HealthSetup {
        d,
        maddr,
        port,
        port2,
        conf,
        _dir: dir,
        _backends: backends,
    }
}

#[test]
fn health_and_reload_metrics() {
    let h = health_setup();
    let p = h.port.to_string();
    let down = format!("127.0.0.4:{}", h.port);
    let up = format!("127.0.0.2:{}", h.port);
    // The failing real server leaves the table; the metrics say why.
    let s = wait_for(Duration::from_secs(15), || {
        let s = parse(&scrape(h.maddr));
        (value(&s, "rvs_health_real_server_up", &[("rs", down.as_str())]) == Some(0.0)).then_some(s)
    })
    .unwrap_or_else(|| panic!("down real server not reported:\n{}", scrape(h.maddr)));
    let text = scrape(h.maddr);
    validate_exposition(&text);
    let svc = [("proto", "tcp"), ("vip", "127.0.0.1"), ("port", p.as_str())];
    assert_eq!(
        value(&s, "rvs_health_real_server_up", &[("rs", up.as_str())]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &s,
            "rvs_health_checker_up",
            &[("rs", down.as_str()), ("checker", "TCP_CHECK")]
        ),
        Some(0.0),
        "{text}"
    );
    assert!(
        value(
            &s,
            "rvs_health_checker_transitions_total",
            &[("rs", down.as_str()), ("port", p.as_str())]
        )
        .is_some_and(|v| v >= 1.0),
        "{text}"
    );
    // Probes of the healthy servers count as they complete (delay_loop 1).
    let probed = wait_for(Duration::from_secs(10), || {
        let s = parse(&scrape(h.maddr));
        value(
            &s,
            "rvs_health_checker_probes_total",
            &[("rs", up.as_str())],
        )
        .filter(|v| *v >= 1.0)
    });
    assert!(probed.is_some(), "{}", scrape(h.maddr));
    assert!(value(
        &s,
        "rvs_health_checker_failures_total",
        &[("rs", down.as_str())]
    )
    .is_some_and(|v| v >= 1.0));
    assert_eq!(value(&s, "rvs_health_quorum_up", &svc), Some(1.0), "{text}");
    // The health checks' removal reaches the table right after.
    let shrunk = wait_for(Duration::from_secs(5), || {
        let s = parse(&scrape(h.maddr));
        (value(&s, "rvs_service_destinations", &svc) == Some(2.0)).then_some(())
    });
    assert!(shrunk.is_some(), "{}", scrape(h.maddr));

    // A reload that changes a weight: counted, successful, weight exported.
    std::fs::write(&h.conf, keepalived_conf(h.port, h.port2, 5)).unwrap();
    hup(&h.d);
    let rs_b = format!("127.0.0.3:{}", h.port);
    let s = wait_for(Duration::from_secs(10), || {
        let s = parse(&scrape(h.maddr));
        (value(&s, "rvs_destination_weight", &[("rs", rs_b.as_str())]) == Some(5.0)).then_some(s)
    })
    .unwrap_or_else(|| panic!("reload not applied:\n{}", h.d.log()));
    assert_eq!(value(&s, "rvs_config_reloads_total", &[]), Some(1.0));
    assert_eq!(
        value(&s, "rvs_config_last_reload_successful", &[]),
        Some(1.0)
    );
    // A broken file: counted, failed.
    std::fs::write(&h.conf, "virtual_server {{{ broken").unwrap();
    hup(&h.d);
    let s = wait_for(Duration::from_secs(10), || {
        let s = parse(&scrape(h.maddr));
        (value(&s, "rvs_config_reloads_total", &[]) == Some(2.0)).then_some(s)
    })
    .expect("second reload counted");
    assert_eq!(
        value(&s, "rvs_config_last_reload_successful", &[]),
        Some(0.0)
    );

    // The dashboard JSON: health merged into destinations (the removed one
    // included), events recorded.
    let (_, _, body) = http_get(h.maddr, "/api/state", None).expect("/api/state");
    let st: serde_json::Value = serde_json::from_str(&body).unwrap();
    let svc = st["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["display"] == format!("TCP 127.0.0.1:{}", h.port))
        .expect("service");
    let dests = svc["dests"].as_array().unwrap();
    assert_eq!(dests.len(), 3, "{body}");
    let d4 = dests.iter().find(|d| d["rs"] == down.as_str()).unwrap();
    assert_eq!(d4["in_table"], false);
    assert_eq!(d4["health"]["alive"], false);
    let d2 = dests.iter().find(|d| d["rs"] == up.as_str()).unwrap();
    assert_eq!(d2["health"]["alive"], true);
    let events = st["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["kind"] == "reload"), "{body}");
    assert!(events.iter().any(|e| e["kind"] == "health"), "{body}");
}

/// Chromium (Debian `chromium`), or None.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RVS_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser", "google-chrome", "chrome"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Run headless Chromium with `args` on `url`; its stdout (the DOM for
/// `--dump-dom`). Killed after 90 s.
fn run_chromium(bin: &Path, profile: &Path, args: &[&str], url: &str) -> String {
    let mut child = Proc::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            "--force-color-profile=srgb",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromium");
    let mut out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let end = Instant::now() + Duration::from_secs(90);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish in 90 s");
            }
        }
    }
    reader.join().unwrap_or_default()
}

/// Steady, gently varying traffic on `ports` until dropped.
struct Traffic {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(ports: &[(u16, u64)]) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let threads = ports
            .iter()
            .map(|&(port, per_sec)| {
                let (stop, done) = (stop.clone(), done.clone());
                std::thread::spawn(move || {
                    let t0 = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        let t = t0.elapsed().as_secs_f64();
                        // 40–100 % of the nominal rate, a slow wave.
                        let rate = per_sec as f64 * (0.7 + 0.3 * (t / 3.0).sin());
                        if get(vip(port)).is_some() {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        std::thread::sleep(Duration::from_secs_f64(1.0 / rate.max(1.0)));
                    }
                })
            })
            .collect();
        Traffic {
            stop,
            done,
            threads,
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The `n` in `data-polls="n"` of the dumped DOM.
fn polls(dom: &str) -> u64 {
    dom.split("data-polls=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn dashboard_renders_live_data_in_headless_chromium() {
    let Some(bin) = chromium() else {
        rvs_lab::skip(
            "rvsd dashboard_renders_live_data_in_headless_chromium",
            rvs_lab::need::CHROMIUM,
            "no chromium, chromium-browser or google-chrome in PATH",
        );
        return;
    };
    let h = health_setup();
    let traffic = Traffic::start(&[(h.port, 40), (h.port2, 15)]);
    // Let the 1 s sampler collect some history for the sparklines: poll
    // /api/state until the total series has 10 points with traffic.
    let history = wait_for(Duration::from_secs(60), || {
        let (_, _, body) = http_get(h.maddr, "/api/state", None)?;
        let st: serde_json::Value = serde_json::from_str(&body).ok()?;
        let busy = st["history"]["total"]
            .as_array()?
            .iter()
            .filter(|p| p[1].as_f64().is_some_and(|c| c > 0.0))
            .count();
        (busy >= 10).then_some(())
    });
    assert!(history.is_some(), "no rate history: {}", h.d.log());
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{}/", h.maddr);
    let svc = format!("data-service=\"TCP 127.0.0.1:{}\"", h.port);
    let dom = wait_for(Duration::from_secs(60), || {
        let dom = run_chromium(
            &bin,
            profile.path(),
            &["--virtual-time-budget=5000", "--dump-dom"],
            &url,
        );
        (polls(&dom) >= 2 && dom.contains(&svc)).then_some(dom)
    })
    .unwrap_or_else(|| panic!("the dashboard never rendered the services table"));
    // Live data: the rows carry the table's numbers.
    let conns: u64 = dom
        .split(&svc)
        .nth(1)
        .and_then(|r| r.split("data-conns=\"").nth(1))
        .and_then(|r| r.split('"').next())
        .and_then(|n| n.parse().ok())
        .expect("conns cell");
    assert!(conns >= 10, "conns {conns}");
    assert!(traffic.done.load(Ordering::Relaxed) >= 10);
    assert!(dom.contains(&format!("data-rs=\"127.0.0.4:{}\"", h.port)));
    assert!(dom.contains(">DOWN<"), "health badge missing");
    assert!(dom.contains(">UP<"), "health badge missing");
    assert!(dom.contains("<polyline"), "no sparkline drawn");
    assert!(dom.contains("live ·"), "live indicator not set");

    // The screenshot, a CI artifact.
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target");
    std::fs::create_dir_all(&target).unwrap();
    let shot = target.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    run_chromium(
        &bin,
        profile.path(),
        &[
            "--virtual-time-budget=5000",
            "--window-size=1280,900",
            &format!("--screenshot={}", shot.display()),
        ],
        &url,
    );
    drop(traffic);
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
    eprintln!("dashboard screenshot: {}", shot.display());
}
