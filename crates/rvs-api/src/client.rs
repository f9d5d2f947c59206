//! A small blocking client: one HTTP/1.1 request per connection over the
//! unix socket (`Connection: close`), no async runtime needed in the CLI.

use crate::{ApiError, Command, Reply, COMMAND_PATH};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// rvsd is not reachable at the socket path.
    #[error(
        "cannot connect to rvsd at {path} (is rvsd running? start it with: rvsd -f FILE): {source}"
    )]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// I/O failed after connecting.
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The answer was not valid HTTP/JSON.
    #[error("control socket {path}: malformed answer from rvsd: {detail}")]
    Protocol { path: PathBuf, detail: String },
    /// rvsd refused the command.
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// Client for rvsd's control socket.
#[derive(Debug, Clone)]
pub struct Client {
    path: PathBuf,
    timeout: Duration,
}

impl Client {
    pub fn new(path: impl AsRef<Path>) -> Self {
        Client {
            path: path.as_ref().to_path_buf(),
            timeout: Duration::from_secs(30),
        }
    }

    /// The socket from `$RVS_SOCKET`, else [`crate::default_socket_path`].
    pub fn from_env() -> Self {
        Self::new(crate::default_socket_path())
    }

    /// The same client with another I/O timeout (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Post one command and decode the reply.
    pub fn call(&self, cmd: &Command) -> Result<Reply, ClientError> {
        let body = serde_json::to_vec(cmd).map_err(|e| self.proto(e.to_string()))?;
        let (status, resp) = self.request("POST", COMMAND_PATH, &body)?;
        if status == 200 {
            serde_json::from_slice(&resp).map_err(|e| self.proto(format!("bad reply JSON: {e}")))
        } else {
            match serde_json::from_slice::<ApiError>(&resp) {
                Ok(e) => Err(ClientError::Api(e)),
                Err(_) => {
                    Err(self.proto(format!("HTTP {status}: {}", String::from_utf8_lossy(&resp))))
                }
            }
        }
    }

    /// Raw HTTP request; returns (status, body).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let mut s = UnixStream::connect(&self.path).map_err(|source| ClientError::Connect {
            path: self.path.clone(),
            source,
        })?;
        let io = |source| ClientError::Io {
            path: self.path.clone(),
            source,
        };
        s.set_read_timeout(Some(self.timeout)).map_err(io)?;
        s.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: rvsd\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).map_err(io)?;
        s.write_all(body).map_err(io)?;
        let mut buf = Vec::with_capacity(4096);
        s.read_to_end(&mut buf).map_err(io)?;
        parse_response(&buf).map_err(|d| self.proto(d))
    }

    fn proto(&self, detail: String) -> ClientError {
        ClientError::Protocol {
            path: self.path.clone(),
            detail,
        }
    }
}

/// Parse an HTTP/1.1 response (Content-Length or chunked body, or until EOF).
fn parse_response(buf: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end = find(buf, b"\r\n\r\n").ok_or("truncated HTTP header")?;
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "non-UTF-8 HTTP header")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut chunked = false;
    let mut len: Option<usize> = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim();
            if k == "content-length" {
                len = v.parse().ok();
            } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    let rest = &buf[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = len {
        rest.get(..n).ok_or("truncated HTTP body")?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = find(b, b"\r\n").ok_or("truncated chunk size")?;
        let size_s = std::str::from_utf8(&b[..eol]).map_err(|_| "bad chunk size")?;
        let size_s = size_s.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_s, 16).map_err(|_| "bad chunk size")?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..size).ok_or("truncated chunk")?);
        b = b.get(size + 2..).ok_or("truncated chunk")?;
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_and_chunked() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA";
        assert_eq!(parse_response(r).unwrap(), (200, b"ok".to_vec()));
        let r = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n";
        assert_eq!(parse_response(r).unwrap(), (404, b"abcd".to_vec()));
        assert!(parse_response(b"HTTP/1.1 200").is_err());
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn connect_error_names_socket_and_fix() {
        let c = Client::new("/nonexistent/rvsd.sock");
        let e = c.call(&Command::GetInfo).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("cannot connect to rvsd at /nonexistent/rvsd.sock (is rvsd running? start it with: rvsd -f FILE)"), "{msg}");
    }
}
