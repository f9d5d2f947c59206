//! The seed's ipvsadm session, through the real stack: rvsadm's parser and
//! views → control commands → rvsd's handler → the rvs-core table, with the
//! table driven by packets (not test setters) to reach the seed's figures.
//! No data plane runs (NullEngine): the seed's 192.168.253.x addresses are
//! table entries only.

mod common;

use rvs_api::{ApiError, Command, Reply};
use rvs_core::{Dir, Ipvs, Packet, Protocol, TcpFlags};
use rvs_dataplane::{Clock, NullEngine, Shared};
use rvsadm::backend::{Backend, BackendError};
use rvsd::state::Daemon;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

struct InProc(Arc<Daemon>);

impl Backend for InProc {
    fn call(&mut self, cmd: &Command) -> Result<Reply, BackendError> {
        self.0
            .handle(cmd.clone())
            .map_err(|e: ApiError| BackendError::Api(e))
    }
}

struct Seed {
    d: Arc<Daemon>,
}

impl Seed {
    fn new() -> Seed {
        let shared = Shared::with_clock(Ipvs::new(), Clock::Manual(AtomicU64::new(0)));
        Seed {
            d: Daemon::new(shared, Arc::new(NullEngine)),
        }
    }

    /// Run one command line; returns (status, stdout, stderr).
    fn run(&self, line: &str) -> (i32, String, String) {
        common::run_rvsadm(&mut InProc(self.d.clone()), line)
    }

    fn ok(&self, line: &str) -> String {
        let (c, out, err) = self.run(line);
        assert_eq!(c, 0, "{line}: {err}");
        out
    }

    /// One packet from client to VIP.
    fn packet(&self, client: SocketAddr, vip: SocketAddr, flags: TcpFlags, len: u32) {
        let now = self.d.shared.now();
        let pkt = Packet {
            fwmark: 0,
            proto: Protocol::Tcp,
            src: client,
            dst: vip,
            tcp_flags: flags,
            len,
            dir: Dir::In,
        };
        let _ = self.d.shared.ipvs.lock().process(now, &pkt, &[]);
    }
}

const BANNER: &str = "IP Virtual Server version 1.2.1 (size=4096)\n";
const TITLE: &str = "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n";

#[test]
fn empty_table_listing() {
    let s = Seed::new();
    assert_eq!(s.ok("-Ln"), format!("{BANNER}{TITLE}"));
}

#[test]
fn seed_dr_setup_and_persistent_listing() {
    let s = Seed::new();
    s.ok("-A -t 192.168.253.150:80 -s rr");
    s.ok("-a -t 192.168.253.150:80 -r 192.168.253.129:80 -g");
    s.ok("-a -t 192.168.253.150:80 -r 192.168.253.148:80 -g");
    assert_eq!(
        s.ok("-Ln"),
        format!(
            "{BANNER}{TITLE}TCP  192.168.253.150:80 rr\n  -> 192.168.253.129:80           Route   1      0          0         \n  -> 192.168.253.148:80           Route   1      0          0         \n"
        )
    );
    s.ok("-E -t 192.168.253.150:80 -s rr -p 10");
    assert_eq!(
        s.ok("-Ln"),
        format!(
            "{BANNER}{TITLE}TCP  192.168.253.150:80 rr persistent 10\n  -> 192.168.253.129:80           Route   1      0          0         \n  -> 192.168.253.148:80           Route   1      0          0         \n"
        )
    );
    // Kernel errors come back with ipvsadm's texts and status.
    let (c, _, err) = s.run("-A -t 192.168.253.150:80 -s rr");
    assert_eq!((c, err.as_str()), (255, "Service already exists\n"));
    let (c, _, err) = s.run("-A -t 192.168.253.151:80 -s nosuch");
    assert_eq!(
        (c, err.as_str()),
        (255, "Scheduler or persistence engine not found\n")
    );
    let (c, _, err) = s.run("-a -t 192.168.253.151:80 -r 192.168.253.129:80 -g");
    assert_eq!((c, err.as_str()), (255, "Service not defined\n"));
    let (c, _, err) = s.run("-d -t 192.168.253.150:80 -r 192.168.253.1:80");
    assert_eq!((c, err.as_str()), (255, "No such destination\n"));
    s.ok("-C");
    assert_eq!(s.ok("-Ln"), format!("{BANNER}{TITLE}"));
}

#[test]
fn seed_stats_reached_by_packets() {
    let s = Seed::new();
    s.ok("-A -t 192.168.253.150:80 -s rr");
    s.ok("-a -t 192.168.253.150:80 -r 192.168.253.129:80 -g");
    s.ok("-a -t 192.168.253.150:80 -r 192.168.253.148:80 -g");
    let vip: SocketAddr = "192.168.253.150:80".parse().unwrap();
    // rr starts at the most recently added server (.148), so connections
    // alternate .148, .129, ...: 6 for .148, 5 for .129 out of 11.
    // Drive them in two groups so the per-server packet/byte totals match
    // the course's figures.
    let client = |p: u16| SocketAddr::new("192.168.253.1".parse().unwrap(), p);
    let mut to_148 = Vec::new();
    let mut to_129 = Vec::new();
    for i in 0..11u16 {
        let c = client(50000 + i);
        s.packet(c, vip, TcpFlags::SYN, 60);
        let conns = match s.d.handle(Command::ListConnections) {
            Ok(Reply::Connections(c)) => c,
            r => panic!("{r:?}"),
        };
        let e = conns
            .iter()
            .find(|x| x.cport == 50000 + i)
            .expect("connection entry");
        if e.daddr.to_string() == "192.168.253.148" {
            to_148.push(c)
        } else {
            to_129.push(c)
        }
    }
    assert_eq!((to_148.len(), to_129.len()), (6, 5));
    let fill = |clients: &[SocketAddr], pkts: u32, bytes: u32| {
        // The SYNs above already counted one 60-byte packet per client.
        let n = clients.len() as u32;
        let (pkts, bytes) = (pkts - n, bytes - 60 * n);
        let per = bytes / pkts;
        for i in 0..pkts {
            let len = if i == pkts - 1 {
                bytes - per * (pkts - 1)
            } else {
                per
            };
            s.packet(clients[(i % n) as usize], vip, TcpFlags::ACK, len);
        }
    };
    fill(&to_129, 236, 65528);
    fill(&to_148, 97, 22795);
    assert_eq!(
        s.ok("-Ln --stats"),
        "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  192.168.253.150:80                 11      333        0    88323        0
  -> 192.168.253.129:80                  5      236        0    65528        0
  -> 192.168.253.148:80                  6       97        0    22795        0
"
    );
}

#[test]
fn seed_persistence_template_in_connection_listing() {
    let s = Seed::new();
    s.ok("-A -t 192.168.253.150:80 -s rr");
    s.ok("-a -t 192.168.253.150:80 -r 192.168.253.129:80 -g");
    s.ok("-a -t 192.168.253.150:80 -r 192.168.253.148:80 -g");
    s.ok("-E -t 192.168.253.150:80 -s rr -p 5");
    s.ok("--set 1 1 1");
    assert_eq!(s.ok("-L --timeout"), "Timeout (tcp tcpfin udp): 1 1 1\n");
    let vip: SocketAddr = "192.168.253.150:80".parse().unwrap();
    let c: SocketAddr = "192.168.253.1:52000".parse().unwrap();
    s.packet(c, vip, TcpFlags::SYN, 60);
    let out = s.ok("-Lnc");
    assert!(out.starts_with(
        "IPVS connection entries\npro expire state       source             virtual            destination\n"
    ));
    assert!(
        out.contains(
            "TCP 00:05  NONE        192.168.253.1:0    192.168.253.150:80 192.168.253.148:80\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "TCP 01:00  SYN_RECV    192.168.253.1:52000 192.168.253.150:80 192.168.253.148:80\n"
        ),
        "{out}"
    );
    // The same client sticks to .148 for new connections while the template lives.
    s.packet(c, vip, TcpFlags::ACK, 52);
    s.packet(c, vip, TcpFlags::FIN | TcpFlags::ACK, 52);
    let c2: SocketAddr = "192.168.253.1:52001".parse().unwrap();
    s.packet(c2, vip, TcpFlags::SYN, 60);
    let out = s.ok("-Lnc");
    assert!(
        out.contains("192.168.253.1:52001 192.168.253.150:80 192.168.253.148:80"),
        "{out}"
    );
    // After the template and its connections expire, the listing is empty
    // and rr moves on to .129.
    for _ in 0..80 {
        s.d.shared.advance(Duration::from_millis(1000));
        let now = s.d.shared.now();
        s.d.shared.ipvs.lock().handle_timeout(now);
    }
    assert_eq!(
        s.ok("-Lnc"),
        "IPVS connection entries\npro expire state       source             virtual            destination\n"
    );
    let c3: SocketAddr = "192.168.253.1:52002".parse().unwrap();
    s.packet(c3, vip, TcpFlags::SYN, 60);
    assert!(s
        .ok("-Lnc")
        .contains("192.168.253.1:52002 192.168.253.150:80 192.168.253.129:80"));
}
