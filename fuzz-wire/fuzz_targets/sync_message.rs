//! Decode an arbitrary datagram as an IPVS sync message (kernel v1/v0 or an
//! rvs control message). Must never panic. Every entry that decodes is
//! written again into a message of the same version and must decode to the
//! same entry; a control message must survive emit -> parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvs_wire::sync::{Conns, Message, MessageWriter, MIN_BUFFER_LEN};

fn reencode(conns: Conns<'_>) {
    let version = conns.version();
    let syncid = conns.syncid();
    let nr = usize::from(conns.nr_conns());
    let mut seen = 0;
    for item in conns {
        seen += 1;
        let Ok(entry) = item else { continue };
        let mut buf = [0u8; MIN_BUFFER_LEN];
        let mut w = MessageWriter::new(&mut buf, version, syncid);
        w.push(&entry)
            .expect("a decoded entry is representable in its own version");
        let n = w.finish();
        let again = match Message::parse(&buf[..n]) {
            Ok(Message::V1(c) | Message::V0(c)) => c,
            other => panic!("re-encoded entry parsed as {other:?}"),
        };
        assert_eq!(again.version(), version);
        let got: Vec<_> = again.collect();
        assert_eq!(got, vec![Ok(entry)]);
    }
    assert!(seen <= nr);
}

fuzz_target!(|data: &[u8]| {
    match Message::parse(data) {
        Ok(Message::V1(c) | Message::V0(c)) => reencode(c),
        Ok(Message::Control { syncid, control }) => {
            let mut buf = [0u8; 32];
            let n = control.emit(syncid, &mut buf);
            let back = Message::parse(&buf[..n]);
            assert!(
                matches!(back, Ok(Message::Control { syncid: s, control: c }) if s == syncid && c == control),
                "{back:?}"
            );
        }
        Err(_) => {}
    }
});
