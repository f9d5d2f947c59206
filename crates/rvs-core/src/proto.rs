//! Protocol state machines: TCP (ip_vs_proto_tcp.c), UDP (ip_vs_proto_udp.c)
//! and SCTP (ip_vs_proto_sctp.c) transition and timeout tables.

use crate::types::TcpFlags;

// TCP states (enum order = table column index).
#[allow(dead_code)]
pub(crate) const TCP_NONE: u8 = 0;
pub(crate) const TCP_ESTABLISHED: u8 = 1;
pub(crate) const TCP_SYN_SENT: u8 = 2;
pub(crate) const TCP_SYN_RECV: u8 = 3;
pub(crate) const TCP_FIN_WAIT: u8 = 4;
pub(crate) const TCP_TIME_WAIT: u8 = 5;
pub(crate) const TCP_CLOSE: u8 = 6;
pub(crate) const TCP_CLOSE_WAIT: u8 = 7;
pub(crate) const TCP_LAST_ACK: u8 = 8;
pub(crate) const TCP_LISTEN: u8 = 9;
pub(crate) const TCP_SYNACK: u8 = 10;
pub(crate) const TCP_NUM_STATES: usize = 11;

pub(crate) const TCP_STATE_NAMES: [&str; TCP_NUM_STATES] = [
    "NONE",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "SYNACK",
];

/// Compiled-in TCP timeouts in seconds (tcp_timeouts[]).
pub(crate) const TCP_TIMEOUTS: [u32; TCP_NUM_STATES] =
    [2, 900, 120, 60, 120, 120, 10, 60, 30, 120, 120];

/// UDP: single state "UDP", 300 s.
pub(crate) const UDP_TIMEOUT: u32 = 300;

/// Current kernels (tcp_state_active_table): SYN_SENT, SYN_RECV,
/// ESTABLISHED and SYNACK count as active.
#[inline]
pub(crate) fn tcp_state_active(s: u8) -> bool {
    matches!(
        s,
        TCP_ESTABLISHED | TCP_SYN_SENT | TCP_SYN_RECV | TCP_SYNACK
    )
}

/// tcp_state_idx: RST > SYN > FIN > ACK, none -> -1 (CLOSE).
#[inline]
pub(crate) fn tcp_state_idx(f: TcpFlags) -> Option<usize> {
    if f.contains(TcpFlags::RST) {
        Some(3)
    } else if f.contains(TcpFlags::SYN) {
        Some(0)
    } else if f.contains(TcpFlags::FIN) {
        Some(1)
    } else if f.contains(TcpFlags::ACK) {
        Some(2)
    } else {
        None
    }
}

#[allow(dead_code)]
const NO: u8 = TCP_NONE;
const ES: u8 = TCP_ESTABLISHED;
const SS: u8 = TCP_SYN_SENT;
const SR: u8 = TCP_SYN_RECV;
const FW: u8 = TCP_FIN_WAIT;
const TW: u8 = TCP_TIME_WAIT;
const CL: u8 = TCP_CLOSE;
const CW: u8 = TCP_CLOSE_WAIT;
const LA: u8 = TCP_LAST_ACK;
const LI: u8 = TCP_LISTEN;
const SA: u8 = TCP_SYNACK;

/// tcp_states[]: rows INPUT(syn,fin,ack,rst), OUTPUT(...), INPUT_ONLY(...).
#[rustfmt::skip]
pub(crate) const TCP_STATES: [[u8; TCP_NUM_STATES]; 12] = [
    //  NO  ES  SS  SR  FW  TW  CL  CW  LA  LI  SA
    /*INPUT*/
    [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR], // syn
    [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW], // fin
    [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES], // ack
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR], // rst
    /*OUTPUT*/
    [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
    [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
    [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
    /*INPUT_ONLY*/
    [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
    [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
];

/// tcp_states_dos[] (secure_tcp).
#[rustfmt::skip]
pub(crate) const TCP_STATES_DOS: [[u8; TCP_NUM_STATES]; 12] = [
    //  NO  ES  SS  SR  FW  TW  CL  CW  LA  LI  SA
    /*INPUT*/
    [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SA],
    [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, SA],
    [ES, ES, SS, SR, FW, TW, CL, CW, CL, LI, SA],
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    /*OUTPUT*/
    [SS, ES, SS, SA, SS, SS, SS, SS, SS, LI, SA],
    [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
    [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
    /*INPUT_ONLY*/
    [SA, ES, ES, SR, SA, SA, SA, SA, SA, SA, SA],
    [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
];

/// Direction row offsets.
pub(crate) const DIR_INPUT: usize = 0;
pub(crate) const DIR_OUTPUT: usize = 4;
pub(crate) const DIR_INPUT_ONLY: usize = 8;

/// Next TCP state for a packet of class `flags` seen in row block `off`.
#[inline]
pub(crate) fn tcp_next(secure: bool, off: usize, flags: TcpFlags, cur: u8) -> u8 {
    match tcp_state_idx(flags) {
        None => TCP_CLOSE,
        Some(idx) => {
            let t = if secure { &TCP_STATES_DOS } else { &TCP_STATES };
            let col = (cur as usize).min(TCP_NUM_STATES - 1);
            t[off + idx][col]
        }
    }
}

// ---------------------------------------------------------------- SCTP

pub(crate) const SCTP_NUM_STATES: usize = 14;
pub(crate) const SCTP_ESTABLISHED: u8 = 8;
pub(crate) const SCTP_CLOSED: u8 = 13;

pub(crate) const SCTP_STATE_NAMES: [&str; SCTP_NUM_STATES] = [
    "NONE",
    "INIT1",
    "INIT",
    "C-SENT",
    "C-REPLIED",
    "C-WAIT",
    "COOKIE",
    "C-ECHOED",
    "ESTABLISHED",
    "S-SENT",
    "S-RECEIVED",
    "S-ACK-SENT",
    "REJECTED",
    "CLOSED",
];

const MAX_RTO: u32 = 61;
pub(crate) const SCTP_TIMEOUTS: [u32; SCTP_NUM_STATES] = [
    2,
    4,
    MAX_RTO,
    MAX_RTO,
    MAX_RTO,
    MAX_RTO,
    MAX_RTO,
    MAX_RTO,
    15 * 60,
    MAX_RTO,
    MAX_RTO,
    MAX_RTO,
    4,
    MAX_RTO,
];

/// sctp_events[]: chunk type -> event row (d, i, i_a, c_e, c_a, s, s_a, s_c, err, ab).
pub(crate) fn sctp_event(chunk: u8) -> usize {
    match chunk {
        1 => 1,  // INIT
        2 => 2,  // INIT_ACK
        10 => 3, // COOKIE_ECHO
        11 => 4, // COOKIE_ACK
        7 => 5,  // SHUTDOWN
        8 => 6,  // SHUTDOWN_ACK
        14 => 7, // SHUTDOWN_COMPLETE
        9 => 8,  // ERROR
        6 => 9,  // ABORT
        _ => 0,  // DATA, SACK, HEARTBEAT(_ACK), ECNE, CWR, unknown
    }
}

#[allow(dead_code)]
const S_NO: u8 = 0;
const S_I1: u8 = 1;
const S_IN: u8 = 2;
const S_CS: u8 = 3;
const S_CR: u8 = 4;
const S_CW: u8 = 5;
const S_CO: u8 = 6;
const S_CE: u8 = 7;
const S_ES: u8 = 8;
const S_SS: u8 = 9;
const S_SR: u8 = 10;
const S_SA: u8 = 11;
const S_RJ: u8 = 12;
const S_CL: u8 = 13;

/// sctp_states[dir][event][state], dir = INPUT, OUTPUT, INPUT_ONLY.
#[rustfmt::skip]
pub(crate) const SCTP_STATES: [[[u8; SCTP_NUM_STATES]; 10]; 3] = [
    [ // INPUT
        // NO  I1  IN  CS  CR  CW  CO  CE  ES  SS  SR  SA  RJ  CL
        [S_ES, S_I1, S_IN, S_CS, S_CR, S_CW, S_CO, S_CE, S_ES, S_SS, S_SR, S_SA, S_RJ, S_CL], // d
        [S_I1, S_IN, S_IN, S_CS, S_CR, S_CW, S_CO, S_CE, S_ES, S_SS, S_SR, S_SA, S_IN, S_IN],   // i
        [S_CW, S_CW, S_CW, S_CS, S_CR, S_CO, S_CO, S_CE, S_ES, S_SS, S_SR, S_SA, S_RJ, S_CL], // i_a
        [S_CR, S_IN, S_IN, S_CR, S_CR, S_CW, S_CO, S_CE, S_ES, S_SS, S_SR, S_SA, S_RJ, S_CL],  // c_e
        [S_ES, S_I1, S_IN, S_CS, S_CR, S_CW, S_CO, S_ES, S_ES, S_SS, S_SR, S_SA, S_RJ, S_CL], // c_a
        [S_SR, S_I1, S_IN, S_CS, S_CR, S_CW, S_CO, S_CE, S_SR, S_SS, S_SR, S_SA, S_RJ, S_CL], // s
        [S_CL, S_IN, S_IN, S_CS, S_CR, S_CW, S_CO, S_CE, S_ES, S_CL, S_SR, S_CL, S_RJ, S_CL], // s_a
        [S_CL, S_CL, S_CL, S_CS, S_CR, S_CW, S_CO, S_CE, S_ES, S_SS, S_SR, S_CL, S_RJ, S_CL], // s_c
        [S_CL, S_I1, S_IN, S_CS, S_CR, S_CW, S_CO, S_CL, S_ES, S_SS, S_SR, S_SA, S_RJ, S_CL], // err
        [S_CL, S_CL, S_CL, S_CL, S_CL, S_RJ, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL], // ab
    ],
    [ // OUTPUT
        [S_ES, S_I1, S_IN, S_CS, S_CR, S_CW, S_CO, S_CE, S_ES, S_SS, S_SR, S_SA, S_RJ, S_CL],
        [S_CW, S_CW, S_CW, S_CW, S_CW, S_CW, S_CW, S_CW, S_ES, S_CW, S_CW, S_CW, S_CW, S_CW],
        [S_CS, S_CS, S_CS, S_CS, S_CR, S_CW, S_CO, S_CE, S_ES, S_SS, S_SR, S_SA, S_RJ, S_CL],
        [S_CE, S_CE, S_CE, S_CE, S_CE, S_CE, S_CE, S_CE, S_ES, S_SS, S_SR, S_SA, S_RJ, S_CL],
        [S_ES, S_ES, S_ES, S_ES, S_ES, S_ES, S_ES, S_ES, S_ES, S_SS, S_SR, S_SA, S_RJ, S_CL],
        [S_SS, S_SS, S_SS, S_SS, S_SS, S_SS, S_SS, S_SS, S_SS, S_SS, S_SR, S_SA, S_RJ, S_CL],
        [S_SA, S_SA, S_SA, S_SA, S_SA, S_CW, S_CO, S_CE, S_ES, S_SA, S_SA, S_SA, S_RJ, S_CL],
        [S_CL, S_I1, S_IN, S_CS, S_CR, S_CW, S_CO, S_CE, S_ES, S_SS, S_SR, S_SA, S_RJ, S_CL],
        [S_CL, S_CL, S_CL, S_CL, S_CL, S_CW, S_CO, S_CE, S_ES, S_SS, S_SR, S_SA, S_RJ, S_CL],
        [S_CL, S_RJ, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL],
    ],
    [ // INPUT_ONLY
        [S_ES, S_I1, S_IN, S_CS, S_CR, S_ES, S_CO, S_CE, S_ES, S_SS, S_SR, S_SA, S_RJ, S_CL],
        [S_I1, S_IN, S_IN, S_IN, S_IN, S_IN, S_CO, S_CE, S_ES, S_SS, S_SR, S_SA, S_IN, S_IN],
        [S_CE, S_CE, S_CE, S_CE, S_CE, S_CE, S_CO, S_CE, S_ES, S_SS, S_SR, S_SA, S_RJ, S_CL],
        [S_ES, S_ES, S_ES, S_ES, S_ES, S_ES, S_CO, S_CE, S_ES, S_SS, S_SR, S_SA, S_RJ, S_CL],
        [S_ES, S_I1, S_IN, S_ES, S_ES, S_CW, S_ES, S_ES, S_ES, S_SS, S_SR, S_SA, S_RJ, S_CL],
        [S_SR, S_I1, S_IN, S_CS, S_CR, S_CW, S_CO, S_CE, S_SR, S_SS, S_SR, S_SA, S_RJ, S_CL],
        [S_CL, S_IN, S_IN, S_CS, S_CR, S_CW, S_CO, S_CE, S_CL, S_CL, S_SR, S_CL, S_RJ, S_CL],
        [S_CL, S_CL, S_CL, S_CL, S_CL, S_CW, S_CO, S_CE, S_ES, S_SS, S_CL, S_CL, S_RJ, S_CL],
        [S_CL, S_I1, S_IN, S_CS, S_CR, S_CW, S_CO, S_CE, S_ES, S_SS, S_SR, S_SA, S_RJ, S_CL],
        [S_CL, S_CL, S_CL, S_CL, S_CL, S_RJ, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL],
    ],
];

/// Next SCTP state; `dir` 0 INPUT, 1 OUTPUT, 2 INPUT_ONLY.
#[inline]
pub(crate) fn sctp_next(dir: usize, chunk: u8, cur: u8) -> u8 {
    let col = (cur as usize).min(SCTP_NUM_STATES - 1);
    SCTP_STATES[dir.min(2)][sctp_event(chunk)][col]
}

/// Template state names (IP_VS_CTPL_S_*).
#[allow(dead_code)]
pub(crate) const CTPL_NONE: u8 = 0;
pub(crate) const CTPL_ASSURED: u8 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_priority_rst_syn_fin_ack() {
        assert_eq!(tcp_state_idx(TcpFlags::RST | TcpFlags::SYN), Some(3));
        assert_eq!(tcp_state_idx(TcpFlags::SYN | TcpFlags::ACK), Some(0));
        assert_eq!(tcp_state_idx(TcpFlags::FIN | TcpFlags::ACK), Some(1));
        assert_eq!(tcp_state_idx(TcpFlags::ACK), Some(2));
        assert_eq!(tcp_state_idx(TcpFlags::PSH), None);
        assert_eq!(
            tcp_next(false, DIR_INPUT, TcpFlags::PSH, TCP_ESTABLISHED),
            TCP_CLOSE
        );
    }

    #[test]
    fn input_only_fin_in_established_is_fin_wait() {
        assert_eq!(
            tcp_next(false, DIR_INPUT_ONLY, TcpFlags::FIN, TCP_ESTABLISHED),
            TCP_FIN_WAIT
        );
        assert_eq!(
            tcp_next(false, DIR_INPUT, TcpFlags::FIN, TCP_ESTABLISHED),
            TCP_CLOSE_WAIT
        );
        assert_eq!(
            tcp_next(true, DIR_INPUT_ONLY, TcpFlags::SYN, TCP_NONE),
            TCP_SYNACK
        );
    }

    #[test]
    fn sctp_basic_handshake_input_only() {
        let mut s = 0u8;
        s = sctp_next(2, 1, s); // INIT
        assert_eq!(SCTP_STATE_NAMES[s as usize], "INIT1");
        s = sctp_next(2, 10, s); // COOKIE_ECHO
        assert_eq!(s, SCTP_ESTABLISHED);
        s = sctp_next(2, 7, s); // SHUTDOWN
        assert_eq!(SCTP_STATE_NAMES[s as usize], "S-RECEIVED");
    }
}
