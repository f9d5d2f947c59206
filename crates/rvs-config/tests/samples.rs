//! Every sample configuration shipped in Debian's keepalived package parses
//! without errors (warnings are listed). Skipped (a failure with
//! `RVS_REQUIRE_LAB=1`) when the package is absent.

use rvs_config::*;
use std::path::Path;

const DIR: &str = "/usr/share/doc/keepalived/samples";

fn samples(test: &str) -> Option<Vec<std::path::PathBuf>> {
    let dir = Path::new(DIR);
    if rvs_lab::skip_unless_exists(test, dir, rvs_lab::need::KEEPALIVED_SAMPLES) {
        return None;
    }
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("keepalived.conf"))
        })
        .collect();
    v.sort();
    Some(v)
}

#[test]
fn all_samples_parse_without_errors() {
    let Some(files) = samples("rvs-config all_samples_parse_without_errors") else {
        return;
    };
    assert!(
        files.len() >= 20,
        "expected the 25 upstream samples, found {}",
        files.len()
    );
    for id in ["node", "high", "low"] {
        let opts = LoadOptions {
            config_id: Some(id.into()),
            ..Default::default()
        };
        for f in &files {
            let l = load(f, &opts).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            for d in &l.diagnostics {
                println!("[{id}] {d}");
            }
            let errors: Vec<String> = l
                .diagnostics
                .iter()
                .filter(|d| d.is_error())
                .map(|d| d.to_string())
                .collect();
            assert!(errors.is_empty(), "{}: {errors:#?}", f.display());
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            for d in l
                .diagnostics
                .iter()
                .filter(|d| d.class == ConfigErr::UnknownKeyword)
            {
                // the only unknown keywords keepalived itself reports in the samples
                assert!(
                    name.ends_with("vrrp.lvs_syncd") && (d.text == "VI_2" || d.text == "VI_3"),
                    "unexpected unknown keyword: {d}"
                );
            }
            // every sample has something to run
            let c = &l.config;
            assert!(
                !c.vrrp_instances.is_empty() || !c.virtual_servers.is_empty(),
                "{name}: nothing parsed"
            );
            serde_json::to_string(c).unwrap();
        }
    }
}

#[test]
fn sample_details() {
    if samples("rvs-config sample_details").is_none() {
        return;
    }
    let opts = LoadOptions {
        config_id: Some("high".into()),
        ..Default::default()
    };
    let l = load(
        &Path::new(DIR).join("keepalived.conf.conditional_conf"),
        &opts,
    )
    .unwrap();
    let vi = &l.config.vrrp_instances[0];
    assert_eq!(vi.priority, 170);
    assert_eq!(vi.version, 3);
    assert_eq!(vi.advert_int, std::time::Duration::from_secs(12));
    assert_eq!(
        l.config.vrrp_scripts[0].script.command,
        "/etc/keepalived/scripts/check_high_VI_0.sh"
    );
    let l = load(
        &Path::new(DIR).join("keepalived.conf.conditional_conf"),
        &LoadOptions {
            config_id: Some("low".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(l.config.vrrp_instances[0].priority, 85);

    let l = load(
        &Path::new(DIR).join("keepalived.conf.SSL_GET"),
        &Default::default(),
    )
    .unwrap();
    assert!(l.diagnostics.iter().any(|d| d.message
        == "(VI_1) Initial state master is incompatible with AH authentication - clearing"));
    assert_eq!(l.config_test_exit_code(), 5);

    let l = load(
        &Path::new(DIR).join("keepalived.conf.fwmark"),
        &Default::default(),
    )
    .unwrap();
    assert!(l
        .diagnostics
        .iter()
        .any(|d| d.message == "Warning: Virtual server FWM 1: protocol specified for fwmark - protocol will be ignored"));
    assert!(matches!(
        l.config.virtual_servers[0].key,
        VsKey::Fwmark { mark: 1 }
    ));

    for clean in [
        "HTTP_GET.port",
        "IPv6",
        "PING_CHECK",
        "UDP_CHECK",
        "inhibit",
        "misc_check",
        "misc_check_arg",
        "quorum",
        "sample",
        "status_code",
        "virtual_server_group",
        "virtualhost",
        "vrrp.scripts",
    ] {
        let l = load(
            &Path::new(DIR).join(format!("keepalived.conf.{clean}")),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(
            l.config_test_exit_code(),
            0,
            "{clean}: {:#?}",
            l.diagnostics
        );
    }
}
