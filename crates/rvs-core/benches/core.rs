//! Criterion benchmarks: lookup hit, new connection, Maglev build.
//! Run: cargo bench -p rvs-core --bench core -- --warm-up-time 1 --measurement-time 3

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use rvs_core::*;

const VIP: [u8; 4] = [198, 18, 0, 100];

fn key() -> SvcKey {
    SvcKey::Addr {
        proto: Protocol::Tcp,
        addr: IpAddr::from(VIP),
        port: 80,
    }
}

fn table(sched: &str, n_dests: usize) -> Ipvs {
    let mut v = Ipvs::new();
    v.add_service(Time::ZERO, &ServiceConf::new(key(), sched))
        .unwrap();
    for i in 0..n_dests {
        let a = IpAddr::from(Ipv4Addr::new(198, 18, 2, 1 + i as u8));
        v.add_dest(
            Time::ZERO,
            &key(),
            &DestConf::new(a, 80, FwdMethod::Masq, 1),
        )
        .unwrap();
    }
    v
}

/// Client i: address 198.19.x.y, port 1024 + (i % 60000).
fn client(i: u64) -> SocketAddr {
    let hi = (i / 60000) as u32;
    SocketAddr::new(
        IpAddr::from(Ipv4Addr::from(0xc613_0000u32.wrapping_add(hi))),
        1024 + (i % 60000) as u16,
    )
}

fn pkt(i: u64, flags: TcpFlags) -> Packet {
    Packet {
        fwmark: 0,
        proto: Protocol::Tcp,
        src: client(i),
        dst: SocketAddr::new(IpAddr::from(VIP), 80),
        tcp_flags: flags,
        len: 1500,
        dir: Dir::In,
    }
}

fn bench_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup_hit");
    // `cargo test --all-targets` runs this binary without `--bench` (one
    // quick pass over each benchmark): keep the setup small there.
    let full = std::env::args().any(|a| a == "--bench");
    let sizes: &[u64] = if full { &[1_000, 1_000_000] } else { &[1_000] };
    for &n in sizes {
        let mut v = table("rr", 2);
        v.reserve_conns(n as usize);
        for i in 0..n {
            v.process(Time::ZERO, &pkt(i, TcpFlags::SYN), &[]);
            v.process(Time::ZERO, &pkt(i, TcpFlags::ACK), &[]);
        }
        // a pseudo-random walk over existing connections
        let mut x = 0x9e37_79b9u64;
        let pkts: Vec<Packet> = (0..4096)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                pkt((x >> 33) % n, TcpFlags::ACK)
            })
            .collect();
        let mut k = 0usize;
        g.bench_function(format!("process_established_{n}_conns"), |b| {
            b.iter(|| {
                k = (k + 1) & 4095;
                black_box(v.process(Time::from_secs(1), black_box(&pkts[k]), &[]))
            })
        });
    }
    g.finish();
}

fn bench_new_conn(c: &mut Criterion) {
    let mut g = c.benchmark_group("new_conn");
    for sched in ["rr", "wlc", "mh"] {
        g.bench_function(format!("syn_schedule_insert_{sched}"), |b| {
            b.iter_custom(|iters| {
                // fresh table every 1M connections (setup not timed)
                let mut total = Duration::ZERO;
                let mut done = 0u64;
                while done < iters {
                    let batch = (iters - done).min(1_000_000);
                    let mut v = table(sched, 8);
                    // steady-state sizing (a daemon reserves for its expected
                    // connection count): no index growth inside the timing
                    v.reserve_conns(batch as usize);
                    let t0 = Instant::now();
                    for i in 0..batch {
                        black_box(v.process(Time::ZERO, &pkt(i, TcpFlags::SYN), &[]));
                    }
                    total += t0.elapsed();
                    done += batch;
                }
                total
            })
        });
    }
    g.bench_function("syn_schedule_insert_rr_with_growth", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0u64;
            while done < iters {
                let batch = (iters - done).min(1_000_000);
                let mut v = table("rr", 8);
                let t0 = Instant::now();
                for i in 0..batch {
                    black_box(v.process(Time::ZERO, &pkt(i, TcpFlags::SYN), &[]));
                }
                total += t0.elapsed();
                done += batch;
            }
            total
        })
    });
    g.finish();
}

fn bench_maglev(c: &mut Criterion) {
    let members: Vec<(IpAddr, u16, i32)> = (0..1000u32)
        .map(|i| (IpAddr::from(Ipv4Addr::from(0x0a00_0000 + i)), 80, 1))
        .collect();
    let mut g = c.benchmark_group("maglev");
    g.bench_function("build_65537_slots_1000_dests", |b| {
        b.iter(|| black_box(maglev_build(65537, black_box(&members))))
    });
    g.bench_function("build_4093_slots_100_dests", |b| {
        b.iter(|| black_box(maglev_build(MH_TAB_SIZE, black_box(&members[..100]))))
    });
    g.finish();
}

criterion_group!(benches, bench_lookup, bench_new_conn, bench_maglev);
criterion_main!(benches);
