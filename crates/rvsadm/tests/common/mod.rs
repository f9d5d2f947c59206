//! Shared test helpers: run rvsadm against a fake backend.
#![allow(dead_code)]

use rvsadm::backend::FakeBackend;
use rvsadm::resolve::{NumericResolver, Resolver};
use std::path::PathBuf;

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run_full(be: &mut FakeBackend, res: &dyn Resolver, args: &[&str], stdin: &str) -> Out {
    let mut argv = vec!["rvsadm".to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    let mut input = std::io::Cursor::new(stdin.as_bytes().to_vec());
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let code = {
        let mut ctx = rvsadm::Ctx {
            backend: be,
            resolver: res,
            stdin: &mut input,
            stdout: &mut stdout,
            stderr: &mut stderr,
        };
        rvsadm::run(&argv, &mut ctx)
    };
    Out {
        code,
        stdout: String::from_utf8(stdout).expect("utf8 stdout"),
        stderr: String::from_utf8(stderr).expect("utf8 stderr"),
    }
}

/// Run with numeric resolution only and empty stdin.
pub fn run(be: &mut FakeBackend, args: &[&str]) -> Out {
    run_full(be, &NumericResolver, args, "")
}

/// Run and require success with no output on stderr.
pub fn ok(be: &mut FakeBackend, args: &[&str]) -> String {
    let o = run(be, args);
    assert_eq!(o.stderr, "", "stderr of {args:?}");
    assert_eq!(o.code, 0, "exit status of {args:?}");
    o.stdout
}

/// Feed lines to `-R`.
pub fn restore(be: &mut FakeBackend, text: &str) -> Out {
    run_full(be, &NumericResolver, &["-R"], text)
}

pub fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
        .join(name)
}

/// Compare with a golden file byte for byte. `UPDATE_GOLDEN=1` rewrites
/// files that do not start with `ref_` (those are copied verbatim from the
/// reference and never rewritten).
pub fn golden(name: &str, actual: &str) {
    let p = golden_path(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() && !name.starts_with("ref_") {
        std::fs::write(&p, actual).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    if want != actual {
        panic!(
            "golden mismatch for {name}\n--- want (cat -A style)\n{}\n--- got\n{}",
            show(&want),
            show(actual)
        );
    }
}

/// Every line of the golden file must appear as a whole line of `actual`.
pub fn golden_lines(name: &str, actual: &str) {
    let p = golden_path(name);
    let want = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let got: Vec<&str> = actual.lines().collect();
    for l in want.lines() {
        assert!(
            got.contains(&l),
            "line {:?} of {name} missing in output:\n{}",
            l,
            show(actual)
        );
    }
}

pub fn show(s: &str) -> String {
    s.replace(' ', "·").replace('\n', "$\n")
}
