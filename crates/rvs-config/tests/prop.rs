//! Property tests: arbitrary input never panics, and the results stay
//! consistent (spans inside the input, Display works, JSON serialises).

use proptest::prelude::*;
use rvs_config::*;

fn opts() -> LoadOptions {
    LoadOptions {
        config_id: Some("p".into()),
        random_seed: Some(3),
        disable_includes: true,
        ..Default::default()
    }
}

fn check(text: &str) {
    let l = parse_str(text, "p.conf", &opts());
    let lines = text.split('\n').count() as u32;
    for d in &l.diagnostics {
        let _ = d.to_string();
        assert!(
            d.line <= lines,
            "diagnostic line {} beyond input ({lines} lines): {d}",
            d.line
        );
    }
    serde_json::to_string(&l.config).unwrap();
    let _ = config_test_exit_code(&l.diagnostics);
}

const WORDS: &[&str] = &[
    "global_defs",
    "vrrp_instance",
    "vrrp_script",
    "vrrp_sync_group",
    "virtual_server",
    "virtual_server_group",
    "real_server",
    "TCP_CHECK",
    "HTTP_GET",
    "SSL_GET",
    "MISC_CHECK",
    "DNS_CHECK",
    "UDP_CHECK",
    "SMTP_CHECK",
    "PING_CHECK",
    "FILE_CHECK",
    "BFD_CHECK",
    "url",
    "path",
    "status_code",
    "digest",
    "host",
    "group",
    "authentication",
    "auth_type",
    "auth_pass",
    "PASS",
    "AH",
    "virtual_ipaddress",
    "track_script",
    "track_interface",
    "unicast_peer",
    "state",
    "MASTER",
    "BACKUP",
    "priority",
    "virtual_router_id",
    "advert_int",
    "version",
    "lb_algo",
    "lb_kind",
    "lvs_method",
    "TUN",
    "type",
    "gue",
    "port",
    "DR",
    "NAT",
    "rr",
    "persistence_timeout",
    "protocol",
    "TCP",
    "fwmark",
    "weight",
    "retry",
    "nb_get_retry",
    "connect_port",
    "connet_port",
    "delay_loop",
    "misc_path",
    "notify",
    "script",
    "bfd_instance",
    "static_routes",
    "10.0.0.1",
    "10.0.0.1/24",
    "fe80::1",
    "80",
    "0",
    "-1",
    "1.5",
    "999999999999",
    "{",
    "}",
    "{",
    "}",
    "\"",
    "'",
    "!",
    "#",
    "\\",
    "@p",
    "@^p",
    "@x",
    "$A=1",
    "$A",
    "${A}",
    "$B=${A} ${A}",
    "$M= \\",
    "~SEQ(i,1,3)",
    "~SEQx(i,3)",
    "~LST(v,a,b)",
    "~LST({a,b},{1,2})",
    "${_RANDOM 1 5}",
    "${_ENV X}",
    "${_HASH}",
    "${_BANG}",
    "${_PWD}",
    "include",
    "\n",
    "\n",
    "\n",
    "\t",
    " ",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_text_never_panics(s in "[ -~\t\n{}\"'!#$@~\\\\]{0,600}") {
        check(&s);
    }

    #[test]
    fn keyword_soup_never_panics(idx in proptest::collection::vec(0..WORDS.len(), 0..300)) {
        let text: Vec<&str> = idx.iter().map(|&i| WORDS[i]).collect();
        check(&text.join(" "));
    }

    #[test]
    fn structured_soup_never_panics(
        lines in proptest::collection::vec(proptest::collection::vec(0..WORDS.len(), 1..5), 0..80)
    ) {
        let text: Vec<String> = lines
            .iter()
            .map(|l| l.iter().map(|&i| WORDS[i]).collect::<Vec<_>>().join(" "))
            .collect();
        check(&text.join("\n"));
    }
}

#[test]
fn pathological_inputs_are_bounded() {
    // exponential substitution
    let mut s = String::from("$A0=x x\n");
    for i in 1..40 {
        s.push_str(&format!("$A{i}=${{A{}}} ${{A{}}}\n", i - 1, i - 1));
    }
    s.push_str("router_id ${A39}\n");
    check(&s);
    // nested sequences
    check("~SEQ(a,65536) ~SEQ(b,65536) ~SEQ(c,65536) $X=1\n");
    // self-referencing definition
    check("$A=$A $A\nx $A\n");
    // deep nesting
    check(&"a {\n".repeat(10_000));
    check(&"}\n".repeat(1000));
    check(&"{".repeat(10_000));
}
