//! `--log-format json`: every log line is one JSON object, and state changes
//! carry their details as fields.

mod common;

use common::*;
use rvs_api::{Command, Protocol, ServiceKey, ServiceSpec};
use std::time::Duration;

#[test]
fn json_logs_have_fields() {
    let d = Rvsd::start(&["--log-format", "json"]);
    let port = free_port();
    d.call(Command::AddService {
        spec: ServiceSpec::new(
            ServiceKey::Addr {
                protocol: Protocol::Tcp,
                addr: "127.0.0.1".parse().unwrap(),
                port,
            },
            "rr",
        ),
    });
    let want = format!("[127.0.0.1]:tcp:{port}");
    let found = wait_for(Duration::from_secs(5), || {
        let log = d.log();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
            .collect();
        lines.into_iter().find(|v| {
            v["fields"]["message"] == "service added" && v["fields"]["service"] == want.as_str()
        })
    });
    let v = found.unwrap_or_else(|| panic!("no 'service added' line: {}", d.log()));
    assert_eq!(v["fields"]["scheduler"], "rr");
    assert_eq!(v["level"], "INFO");
}
