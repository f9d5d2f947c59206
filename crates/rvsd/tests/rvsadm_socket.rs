//! rvsd started on a temporary socket; the course's ipvsadm lines run
//! through rvsadm (its real parser, views and socket client) and their
//! output is compared with what ipvsadm prints. Lab addresses as table
//! entries; no traffic is sent.

mod common;

use common::{rvsadm, Rvsd};

#[test]
fn course_lines_over_the_socket() {
    let d = Rvsd::start(&["--engine", "proxy"]);
    let s = d.socket.clone();
    let ok = |l: &str| {
        let (c, out, err) = rvsadm(&s, l);
        assert_eq!(c, 0, "{l}: {err}");
        out
    };
    assert_eq!(
        ok("-Ln"),
        "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
    );
    ok("-A -t 198.18.0.100:80 -s rr");
    ok("-a -t 198.18.0.100:80 -r 198.18.0.21:80 -g");
    ok("-a -t 198.18.0.100:80 -r 198.18.0.22:80 -g");
    ok("-E -t 198.18.0.100:80 -s rr -p 5");
    ok("--set 1 1 1");
    assert_eq!(ok("-L --timeout"), "Timeout (tcp tcpfin udp): 1 1 1\n");
    assert_eq!(
        ok("-Ln"),
        "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  198.18.0.100:80 rr persistent 5
  -> 198.18.0.21:80               Route   1      0          0         
  -> 198.18.0.22:80               Route   1      0          0         
"
    );
    assert_eq!(
        ok("-Ln --stats"),
        "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  198.18.0.100:80                     0        0        0        0        0
  -> 198.18.0.21:80                      0        0        0        0        0
  -> 198.18.0.22:80                      0        0        0        0        0
"
    );
    assert_eq!(
        ok("-Lnc"),
        "IPVS connection entries\npro expire state       source             virtual            destination\n"
    );
    // Save and restore round trip through the daemon.
    let saved = ok("-Sn");
    assert_eq!(
        saved,
        "-A -t 198.18.0.100:80 -s rr -p 5\n-a -t 198.18.0.100:80 -r 198.18.0.21:80 -g -w 1\n-a -t 198.18.0.100:80 -r 198.18.0.22:80 -g -w 1\n"
    );
    // Kernel-class errors with ipvsadm's text and status.
    let (c, _, err) = rvsadm(&s, "-A -t 198.18.0.100:80 -s rr");
    assert_eq!((c, err.as_str()), (255, "Service already exists\n"));
    let (c, _, err) = rvsadm(&s, "-L -n -t 198.18.0.9:80");
    assert_eq!((c, err.as_str()), (1, "No such service\n"));
    let (c, _, err) = rvsadm(&s, "-A -t 198.18.0.100:80 -m");
    assert_eq!(
        (c, err.as_str()),
        (
            2,
            "Illegal 'forwarding-method' option with the 'add-service' command\n"
        )
    );
    ok("-C");
    assert_eq!(ok("-Sn"), "");
}

#[test]
fn malformed_requests_get_clear_errors() {
    let d = Rvsd::start(&[]);
    let c = d.client();
    let (st, body) = c
        .request("POST", rvs_api::COMMAND_PATH, b"{not json")
        .expect("request");
    assert_eq!(st, 400);
    let e: rvs_api::ApiError = serde_json::from_slice(&body).expect("ApiError JSON");
    assert_eq!(e.code, rvs_api::ErrorCode::BadRequest);
    assert!(e.message.starts_with("malformed command"), "{}", e.message);
    let (st, _) = c
        .request(
            "POST",
            rvs_api::COMMAND_PATH,
            br#"{"cmd":"no_such_command"}"#,
        )
        .expect("request");
    assert_eq!(st, 400);
    // Out-of-range values are refused by the model, not by a panic.
    let (st, body) = c
        .request(
            "POST",
            rvs_api::COMMAND_PATH,
            br#"{"cmd":"set_timeouts","timeouts":{"tcp":4294967295,"tcpfin":0,"udp":0}}"#,
        )
        .expect("request");
    assert_eq!(st, 400, "{}", String::from_utf8_lossy(&body));
    // The daemon is still serving.
    assert!(c.call(&rvs_api::Command::GetInfo).is_ok());
}
