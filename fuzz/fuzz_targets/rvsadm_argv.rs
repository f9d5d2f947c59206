//! rvsadm's command line: the input split at NUL bytes is argv[1..]. It
//! goes through the popt-exact parser (`cli::parse`), the whole program
//! (`rvsadm::run`) against the in-memory backend with numeric resolution
//! and, for `realserver`, that subcommand's parser (never its actions).
//! Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvsadm::backend::FakeBackend;
use rvsadm::resolve::NumericResolver;

fuzz_target!(|data: &[u8]| {
    let mut argv = vec!["rvsadm".to_string()];
    if !data.is_empty() {
        argv.extend(
            data.split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned()),
        );
    }
    let _ = rvsadm::cli::parse(&argv, &NumericResolver);
    if argv.get(1).map(String::as_str) == Some("realserver") {
        let _ = rvsadm::realserver::parse(&argv[2..]);
        return;
    }
    // A few services so that edits, deletes and listings have a table.
    let mut be = FakeBackend::default();
    for line in [
        "-A -t 198.18.0.100:80 -s rr",
        "-a -t 198.18.0.100:80 -r 198.18.0.21:80 -g -w 1",
        "-A -u [2001:2::100]:53 -s wlc -p 60",
        "-A -f 7 -s sh",
    ] {
        let mut setup = vec!["rvsadm".to_string()];
        setup.extend(line.split(' ').map(str::to_string));
        run(&mut be, &setup);
    }
    run(&mut be, &argv);
});

fn run(be: &mut FakeBackend, argv: &[String]) {
    let mut stdin = std::io::Cursor::new(Vec::<u8>::new());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut ctx = rvsadm::Ctx {
        backend: be,
        resolver: &NumericResolver,
        stdin: &mut stdin,
        stdout: &mut out,
        stderr: &mut err,
    };
    let _ = rvsadm::run(argv, &mut ctx);
}
