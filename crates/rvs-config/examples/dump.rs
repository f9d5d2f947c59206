//! Print the diagnostics, the resolved model (JSON) and the `-t` exit code
//! of a keepalived.conf: `cargo run -p rvs-config --example dump -- FILE [CONFIG_ID]`.

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: dump FILE [CONFIG_ID]");
        std::process::exit(2);
    };
    let opts = rvs_config::LoadOptions {
        config_id: args.next(),
        ..Default::default()
    };
    match rvs_config::load(std::path::Path::new(&path), &opts) {
        Ok(l) => {
            for d in &l.diagnostics {
                eprintln!("{d}");
            }
            match serde_json::to_string_pretty(&l.config) {
                Ok(j) => println!("{j}"),
                Err(e) => eprintln!("json: {e}"),
            }
            std::process::exit(l.config_test_exit_code());
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(e.config_test_exit_code());
        }
    }
}
