//! Control API request bodies as rvsd's server handles them: each
//! newline-separated part of the input is deserialised as a `Command`
//! (`serde_json::from_slice`, as `control::command` does), must survive a
//! serialise/parse round trip, and the table commands are applied to an
//! `rvs_core::Ipvs` through rvsd's own conversions (`crates/rvsd/src/
//! convert.rs`, included here), which is where their validation lives.
//! The data-plane engine and the axum plumbing are left out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvs_api::Command;

#[path = "../../crates/rvsd/src/convert.rs"]
#[allow(dead_code)]
mod convert;

fn apply(t: &mut rvs_core::Ipvs, now: rvs_core::Time, cmd: &Command) {
    use convert::*;
    let _ = match cmd {
        Command::AddService { spec } => t.add_service(now, &service_to_core(spec)),
        Command::EditService { spec } => t.edit_service(now, &service_to_core(spec)),
        Command::DelService { key } => t.del_service(now, &key_to_core(key)),
        Command::Flush => {
            t.flush(now);
            Ok(())
        }
        Command::AddDest { service, dest } => {
            t.add_dest(now, &key_to_core(service), &dest_to_core(dest))
        }
        Command::EditDest { service, dest } => {
            t.edit_dest(now, &key_to_core(service), &dest_to_core(dest))
        }
        Command::DelDest {
            service,
            addr,
            port,
        } => t.del_dest(now, &key_to_core(service), *addr, *port),
        Command::Zero { service } => t.zero(service.as_ref().map(key_to_core).as_ref()),
        Command::SetTimeouts { timeouts } => {
            t.set_timeouts(timeouts.tcp, timeouts.tcpfin, timeouts.udp)
        }
        Command::GetService { key } => {
            if let Some(s) = t.service(&key_to_core(key)) {
                let _ = serde_json::to_string(&service_info(&s));
            }
            Ok(())
        }
        _ => Ok(()),
    }
    .map_err(|e| serde_json::to_string(&error_to_api(&e)));
}

fuzz_target!(|data: &[u8]| {
    let mut t = rvs_core::Ipvs::with_seed(1);
    for (i, body) in data.split(|b| *b == b'\n').enumerate() {
        let Ok(cmd) = serde_json::from_slice::<Command>(body) else {
            continue;
        };
        let json = serde_json::to_vec(&cmd).expect("a parsed command serialises");
        let back: Command = serde_json::from_slice(&json).expect("and parses again");
        assert_eq!(back, cmd, "serde round trip of {}", String::from_utf8_lossy(&json));
        apply(&mut t, rvs_core::Time::from_secs(i as u64), &cmd);
    }
    let views: Vec<_> = t.services().map(|s| convert::service_info(&s)).collect();
    let _ = serde_json::to_string(&views);
    let _ = t.connections(rvs_core::Time::ZERO).iter().map(convert::conn_info).count();
});
