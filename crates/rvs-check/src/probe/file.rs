//! FILE_CHECK.

use crate::machine::ProbeResult;

/// FILE_CHECK: read the leading integer of the file (keepalived `track_file`
/// semantics: unparsable content reads as 0).
pub async fn probe_file(path: &std::path::Path) -> ProbeResult {
    match tokio::fs::read(path).await {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]).into_owned();
            let t = text.trim_start();
            let end = t
                .char_indices()
                .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && (*c == '-' || *c == '+')))
                .count();
            ProbeResult::file(t[..end].parse().unwrap_or(0))
        }
        Err(e) => ProbeResult::failure(format!("cannot read {}: {e}", path.display())),
    }
}
