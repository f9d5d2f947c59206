//! `rvsadm` binary: wires real stdio, the libc resolver and the control
//! socket client (`$RVS_SOCKET` or the default path) into [`rvsadm::run`].

use rvsadm::backend::ClientBackend;
use rvsadm::resolve::LibcResolver;
use std::io::Write;

fn main() {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // `rvsadm realserver setup|teardown`: local real-server preparation.
    if argv.get(1).map(String::as_str) == Some("realserver") {
        let code = match rvsadm::realserver::parse(&argv[2..]) {
            Ok(a) => rvsadm::realserver::run(&a, &mut std::io::stdout(), &mut std::io::stderr()),
            Err(e) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "rvsadm: realserver: {e}\n{}",
                    rvsadm::realserver::USAGE
                );
                2
            }
        };
        std::process::exit(code);
    }
    let mut backend = ClientBackend::new(rvs_api::Client::from_env());
    // ipvsadm initialises IPVS before parsing anything ("Can't initialize
    // ipvs"); rvsadm does the same with rvsd, except that -h/-v still work
    // without a daemon.
    if !rvsadm::cli::is_help_or_version(&argv) {
        if let Err(e) = backend.init() {
            let _ = writeln!(std::io::stderr(), "rvsadm: {e}");
            std::process::exit(2);
        }
        if let Some(w) = backend.info().and_then(rvsadm::format::version_warning) {
            let _ = write!(std::io::stderr(), "{w}");
        }
    }
    let stdin = std::io::stdin();
    let mut stdin = stdin.lock();
    let stdout = std::io::stdout();
    let mut stdout = std::io::BufWriter::new(stdout.lock());
    let stderr = std::io::stderr();
    let mut stderr = stderr.lock();
    let code = {
        let mut ctx = rvsadm::Ctx {
            backend: &mut backend,
            resolver: &LibcResolver,
            stdin: &mut stdin,
            stdout: &mut stdout,
            stderr: &mut stderr,
        };
        rvsadm::run(&argv, &mut ctx)
    };
    let _ = stdout.flush();
    std::process::exit(code);
}
