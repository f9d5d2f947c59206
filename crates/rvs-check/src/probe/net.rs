//! Sockets as keepalived opens them (bindto, bind_if, fwmark) and reads and
//! writes bounded by a timeout.

use std::io;
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

use crate::config::CheckerConfig;

pub(super) fn new_socket(
    cfg: &CheckerConfig,
    ty: Type,
    proto: socket2::Protocol,
) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(cfg.connect), ty, Some(proto))?;
    s.set_nonblocking(true)?;
    if let Some(dev) = &cfg.bind_if {
        s.bind_device(Some(dev.as_bytes()))?;
    }
    if let Some(mark) = cfg.fwmark {
        s.set_mark(mark)?;
    }
    if let Some(b) = cfg.bind {
        s.bind(&b.into())?;
    }
    Ok(s)
}

/// Connect a TCP stream as keepalived's `tcp_bind_connect` (bindto/bind_port,
/// bind_if, fwmark), bounded by `connect_timeout`.
pub async fn tcp_connect(cfg: &CheckerConfig) -> Result<TcpStream, ConnectError> {
    let s = new_socket(cfg, Type::STREAM, socket2::Protocol::TCP).map_err(ConnectError::Socket)?;
    let sock = TcpSocket::from_std_stream(std::net::TcpStream::from(s));
    match tokio::time::timeout(cfg.connect_timeout, sock.connect(cfg.connect)).await {
        Ok(Ok(st)) => Ok(st),
        Ok(Err(e)) => Err(ConnectError::Failed(e)),
        Err(_) => Err(ConnectError::Timeout),
    }
}

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Could not create/bind the socket.
    #[error("socket setup failed: {0}")]
    Socket(io::Error),
    /// Connect failed (refused, unreachable...).
    #[error("connect failed: {0}")]
    Failed(io::Error),
    /// No answer within connect_timeout.
    #[error("connect timed out")]
    Timeout,
}

pub(super) async fn read_some<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
    t: Duration,
) -> Result<usize, &'static str> {
    match tokio::time::timeout(t, r.read(buf)).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(_)) => Err("read error"),
        Err(_) => Err("timeout"),
    }
}

pub(super) async fn write_all<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8], t: Duration) -> bool {
    matches!(
        tokio::time::timeout(t, async { w.write_all(data).await.and(w.flush().await) }).await,
        Ok(Ok(()))
    )
}

pub(super) fn new_udp(cfg: &CheckerConfig) -> io::Result<UdpSocket> {
    let s = new_socket(cfg, Type::DGRAM, socket2::Protocol::UDP)?;
    UdpSocket::from_std(std::net::UdpSocket::from(s))
}
