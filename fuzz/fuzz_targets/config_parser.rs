//! Fuzz the keepalived.conf preprocessor, parser and typed pass.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let opts = rvs_config::LoadOptions {
        config_id: Some("fuzz".into()),
        random_seed: Some(1),
        disable_includes: true,
        ..Default::default()
    };
    let loaded = rvs_config::parse_str(&text, "fuzz.conf", &opts);
    for d in &loaded.diagnostics {
        let _ = d.to_string();
    }
    let _ = serde_json::to_string(&loaded.config);
    let _ = rvs_config::config_test_exit_code(&loaded.diagnostics);
});
