//! keepalived.conf with includes, read from a real file tree: the input is
//! split at NUL bytes into a main file (`keepalived.conf`), `inc.conf` and
//! `conf.d/a.conf` in a temporary directory, then loaded with
//! `rvs_config::load` (globs, include variants, loops, depth, per-file
//! spans). Include lines naming an absolute path or `..` are not run: the
//! fuzzer must stay inside its tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn tree() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::Builder::new()
            .prefix("rvs-fuzz-include")
            .tempdir()
            .expect("temp dir")
            .keep();
        std::fs::create_dir_all(d.join("conf.d")).expect("conf.d");
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let main = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let inc = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let sub = String::from_utf8_lossy(parts.next().unwrap_or_default());
    for text in [&main, &inc, &sub] {
        if text
            .lines()
            .any(|l| l.contains("include") && (l.contains('/') || l.contains("..")))
        {
            return;
        }
    }
    let dir = tree();
    let main_path = dir.join("keepalived.conf");
    for (p, t) in [
        (main_path.clone(), &main),
        (dir.join("inc.conf"), &inc),
        (dir.join("conf.d/a.conf"), &sub),
    ] {
        std::fs::write(&p, t.as_bytes()).expect("write fuzz file");
    }
    let opts = rvs_config::LoadOptions {
        config_id: Some("fuzz".into()),
        random_seed: Some(1),
        env: Some(Default::default()),
        ..Default::default()
    };
    match rvs_config::load(&main_path, &opts) {
        Ok(loaded) => {
            for d in &loaded.diagnostics {
                let _ = d.to_string();
            }
            assert_eq!(loaded.files[0], main_path.to_string_lossy());
            let _ = serde_json::to_string(&loaded.config);
            let _ = loaded.config_test_exit_code();
        }
        Err(e) => {
            let _ = (e.to_string(), e.config_test_exit_code());
        }
    }
});
