//! Memory per connection entry with 10 M entries held, and bulk insert
//! cost with and without pre-sizing.
//! Run: cargo bench -p rvs-core --bench memory   (RVS_MEM_ENTRIES to change N)

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use rvs_core::*;

fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn fill(n: u64, reserve: bool) {
    let vip = IpAddr::from([198, 18, 0, 100]);
    let key = SvcKey::Addr {
        proto: Protocol::Tcp,
        addr: vip,
        port: 80,
    };
    let mut v = Ipvs::new();
    v.add_service(Time::ZERO, &ServiceConf::new(key, "rr"))
        .unwrap();
    for i in 0..4u8 {
        let d = DestConf::new(IpAddr::from([198, 18, 2, 1 + i]), 80, FwdMethod::Route, 1);
        v.add_dest(Time::ZERO, &key, &d).unwrap();
    }
    let rss0 = rss_bytes().unwrap_or(0);
    if reserve {
        v.reserve_conns(n as usize);
    }
    let t0 = Instant::now();
    for i in 0..n {
        let src = SocketAddr::new(
            IpAddr::from(Ipv4Addr::from(0xc613_0000u32 + (i / 60000) as u32)),
            1024 + (i % 60000) as u16,
        );
        let p = Packet {
            fwmark: 0,
            proto: Protocol::Tcp,
            src,
            dst: SocketAddr::new(vip, 80),
            tcp_flags: TcpFlags::SYN,
            len: 60,
            dir: Dir::In,
        };
        if !matches!(v.process(Time::ZERO, &p, &[]), Verdict::Forward { .. }) {
            panic!("insert {i} failed");
        }
    }
    let dt = t0.elapsed();
    let rss1 = rss_bytes().unwrap_or(0);
    assert_eq!(v.conn_count() as u64, n);
    println!(
        "-- {} entries, {}",
        n,
        if reserve {
            "pre-sized (reserve_conns)"
        } else {
            "growing from empty"
        }
    );
    println!("entry struct size:       {} B", CONN_ENTRY_SIZE);
    println!(
        "table bytes / entry:     {:.1} B (entries + index + timer wheel)",
        v.conn_table_bytes() as f64 / n as f64
    );
    println!(
        "RSS growth / entry:      {:.1} B",
        (rss1.saturating_sub(rss0)) as f64 / n as f64
    );
    println!(
        "insert (SYN) time:       {:.1} ns/conn",
        dt.as_nanos() as f64 / n as f64
    );
    let t1 = Instant::now();
    v.handle_timeout(Time::from_secs(61));
    println!(
        "expire all entries:      {:.2} s",
        t1.elapsed().as_secs_f64()
    );
    assert_eq!(v.conn_count(), 0);
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // Without `--bench` (i.e. under `cargo test --all-targets`) only a quick
    // smoke run.
    let default = if std::env::args().any(|a| a == "--bench") {
        10_000_000
    } else {
        10_000
    };
    let n: u64 = std::env::var("RVS_MEM_ENTRIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    fill(n, false);
    fill(n, true);
}
