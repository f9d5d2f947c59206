//! Heap per connection (issue 27): many short proxied connections through
//! one in-process rvsd (proxy engine, the daemon's command handler, a
//! manual clock that the test moves on and `Ipvs::handle_timeout` as the
//! daemon's timer task calls it) must leave nothing behind once the
//! connection table has emptied.
//!
//! Live heap bytes are counted by a global allocator (allocated minus
//! freed), so the measure is deterministic, unlike RSS. A warm-up run of
//! the same shape first brings every cache that reaches a steady size (the
//! slab of connection entries at its peak, tokio's and the kernel-facing
//! buffers) to that size; the bound then applies to what the measured run
//! adds. Before the fix, every new connection left about 15 bytes in the
//! table's timer wheel (see docs/PERFORMANCE.md, "Memory over time").
//!
//! Connections: `RVS_CHURN_CONNS` (default 200 000). In debug this takes
//! about 45 s of CPU (46 s wall time in `scripts/test` on the shared 2-core
//! machine, up to ~90 s while other builds load it).

use rvs_api::{Command, DestSpec, FwdMethod, Protocol, ServiceKey, ServiceSpec, Timeouts};
use rvs_core::Ipvs;
use rvs_dataplane::proxy::{ProxyEngine, ProxyOptions};
use rvs_dataplane::{Clock, Engine, Shared};
use rvsd::state::Daemon;
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Counts the bytes currently allocated.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as i64 - l.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn live() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

/// Connections per simulated second: the table's clock moves on by one
/// second after each such batch, so a run touches a new timer-wheel tick
/// every `PER_TICK` connections, as a director under steady load does.
const PER_TICK: usize = 100;
/// Client connections in flight at once.
const CONCURRENCY: usize = 32;
/// The reply every real server sends before closing.
const REPLY: &[u8] = b"ok\n";

struct Lab {
    rt: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    daemon: Arc<Daemon>,
    vip: SocketAddr,
    /// Tasks alive when idle (the listeners' accept loops).
    idle_tasks: usize,
}

/// A real server: answers every connection with [`REPLY`] and closes.
async fn real_server(l: tokio::net::TcpListener) {
    loop {
        if let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(REPLY).await;
        }
    }
}

impl Lab {
    fn start() -> Lab {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let shared = Shared::with_clock(Ipvs::new(), Clock::Manual(AtomicU64::new(1_000)));
        let (daemon, vip) = rt.block_on(async {
            let engine: Arc<dyn Engine> =
                Arc::new(ProxyEngine::new(shared.clone(), ProxyOptions::default()));
            let daemon = Daemon::new(shared.clone(), engine);
            // One port for the VIP (127.0.0.1) and both real servers
            // (127.0.0.2, 127.0.0.3), so the DR destination keeps the
            // service's port as IPVS requires.
            let (port, a, b) = loop {
                let p = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("a free port on 127.0.0.1")
                    .port();
                let a = tokio::net::TcpListener::bind(("127.0.0.2", p)).await;
                let b = tokio::net::TcpListener::bind(("127.0.0.3", p)).await;
                if let (Ok(a), Ok(b)) = (a, b) {
                    break (p, a, b);
                }
            };
            tokio::spawn(real_server(a));
            tokio::spawn(real_server(b));
            let key = ServiceKey::Addr {
                protocol: Protocol::Tcp,
                addr: "127.0.0.1".parse().unwrap(),
                port,
            };
            let cmds = [
                // As in the report: `rvsadm --set 30 10 30`, wlc, one NAT
                // and one DR real server (both report paths of the proxy).
                Command::SetTimeouts {
                    timeouts: Timeouts {
                        tcp: 30,
                        tcpfin: 10,
                        udp: 30,
                    },
                },
                Command::AddService {
                    spec: ServiceSpec::new(key, "wlc"),
                },
                Command::AddDest {
                    service: key,
                    dest: DestSpec::new("127.0.0.2".parse().unwrap(), port, FwdMethod::Masq, 1),
                },
                Command::AddDest {
                    service: key,
                    dest: DestSpec::new("127.0.0.3".parse().unwrap(), port, FwdMethod::Route, 1),
                },
            ];
            for c in cmds {
                daemon.handle(c).expect("rvsd accepts the test's table");
            }
            (daemon, SocketAddr::from(([127, 0, 0, 1], port)))
        });
        assert_eq!(daemon.engine.name(), "proxy");
        let idle_tasks = rt.metrics().num_alive_tasks();
        Lab {
            rt,
            shared,
            daemon,
            vip,
            idle_tasks,
        }
    }

    /// Moves the table's clock on and runs its timers, as rvsd's timer task.
    fn tick(&self, d: Duration) {
        self.shared.advance(d);
        let now = self.shared.now();
        self.shared.ipvs.lock().handle_timeout(now);
    }

    /// `n` client connections, each reading the real server's reply to the
    /// end; the clock moves on by a second every [`PER_TICK`]. Returns how
    /// many got the full reply.
    fn churn(&self, n: usize) -> usize {
        let mut ok = 0;
        for _ in 0..n.div_ceil(PER_TICK) {
            ok += self.rt.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                for w in 0..CONCURRENCY {
                    let vip = self.vip;
                    let mine = (PER_TICK + CONCURRENCY - 1 - w) / CONCURRENCY;
                    set.spawn(async move {
                        let mut ok = 0;
                        for _ in 0..mine {
                            let Ok(mut s) = tokio::net::TcpStream::connect(vip).await else {
                                continue;
                            };
                            let mut buf = Vec::new();
                            if s.read_to_end(&mut buf).await.is_ok() && buf == REPLY {
                                ok += 1;
                            }
                        }
                        ok
                    });
                }
                set.join_all().await.into_iter().sum::<usize>()
            });
            self.tick(Duration::from_secs(1));
        }
        ok
    }

    /// Waits for every relay task to end, then lets every entry expire.
    fn drain(&self) {
        let idle = rvs_lab::wait_for(Duration::from_secs(60), || {
            (self.rt.metrics().num_alive_tasks() <= self.idle_tasks).then_some(())
        });
        assert!(
            idle.is_some(),
            "relay tasks still running after 60 s: {} alive, {} expected",
            self.rt.metrics().num_alive_tasks(),
            self.idle_tasks
        );
        // Longer than any IPVS TCP timeout (SYN_SENT / TIME_WAIT: 120 s).
        self.tick(Duration::from_secs(600));
        assert_eq!(
            self.shared.ipvs.lock().conn_count(),
            0,
            "the table must be empty"
        );
    }
}

#[test]
fn heap_does_not_grow_with_the_number_of_proxied_connections() {
    let n: usize = std::env::var("RVS_CHURN_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let lab = Lab::start();

    // Warm-up: long enough (200 simulated seconds) for the table to reach
    // its steady peak (connections linger for the TIME_WAIT timeout, 120 s).
    let warm = 20_000.min(n);
    assert_eq!(
        lab.churn(warm),
        warm,
        "warm-up connections must all succeed"
    );
    lab.drain();
    let base = live();

    let ok = lab.churn(n);
    lab.drain();
    let grown = live() - base;
    let per_conn = grown as f64 / n as f64;
    eprintln!(
        "{n} connections: live heap {base} -> {} bytes ({grown:+} bytes, {per_conn:.2} per connection); table structures {} bytes",
        live(),
        lab.shared.ipvs.lock().conn_table_bytes()
    );
    assert_eq!(ok, n, "every proxied connection must get the reply");
    // A client port the kernel hands out again while the previous
    // connection's entry still lingers (FIN_WAIT) continues that entry, as
    // in IPVS, so a few connections are not counted as new ones.
    let made = lab.shared.ipvs.lock().total_stats().conns;
    assert!(
        made * 100 >= (n + warm) as u64 * 99,
        "the table saw only {made} of {} connections",
        n + warm
    );
    assert!(
        grown < 1_000_000,
        "the heap grew by {grown} bytes ({per_conn:.2} per connection) over {n} connections once the table emptied"
    );
    lab.daemon.stop();
}
