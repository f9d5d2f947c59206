//! Bounded reads of configuration files (the main file and every include).
//!
//! Like keepalived 2.2.7 (`check_glob_file` in lib/parser.c), a file that is
//! a directory, or not a regular non-executable file (a FIFO, a device such
//! as `/dev/zero`, a socket, an executable), is skipped with keepalived's
//! message instead of being read: a FIFO would block the reader forever and
//! `/dev/zero` never ends. The file is opened non-blocking and checked again
//! on the open descriptor, so one swapped in after the first check cannot
//! block either.
//!
//! keepalived reads whatever regular file it is given; rvs also bounds the
//! size: at most [`MAX_FILE_BYTES`] (16 MiB) per file, so a file that claims
//! to be regular but never ends (`/proc/self/pagemap`, …) stops there, and at
//! most [`MAX_TOTAL_BYTES`] (64 MiB) for the main file and all its includes
//! together. The largest real keepalived.conf files are a few MiB
//! (thousands of virtual servers), far below either cap.

use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Largest configuration file read (16 MiB).
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// Largest total of the main file and all its includes (64 MiB).
pub const MAX_TOTAL_BYTES: u64 = 64 << 20;

/// Why a configuration file was not read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// A directory (keepalived: skipped with a message).
    Directory,
    /// Not a regular non-executable file (FIFO, device, socket, executable).
    NotRegular,
    /// Longer than the cap given to [`read_bounded`].
    TooBig(u64),
    /// open/read failed.
    Io(std::io::Error),
}

impl ReadError {
    /// The diagnostic text (keepalived 2.2.7's for the first two).
    pub(crate) fn message(&self, path: &Path) -> String {
        let p = path.display();
        match self {
            ReadError::Directory => format!("Configuration file '{p}' is a directory - skipping"),
            ReadError::NotRegular => {
                format!("Configuration file '{p}' is not a regular non-executable file - skipping")
            }
            ReadError::TooBig(cap) => format!(
                "Configuration file '{p}' is larger than {} - skipping (rvs reads at most {} per \
                 file and {} in total)",
                mib(*cap),
                mib(MAX_FILE_BYTES),
                mib(MAX_TOTAL_BYTES)
            ),
            ReadError::Io(e) => format!("Unable to read configuration file {p} ({e})"),
        }
    }
}

fn mib(n: u64) -> String {
    if n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else {
        format!("{n} bytes")
    }
}

fn check(meta: &std::fs::Metadata) -> Result<(), ReadError> {
    if meta.is_dir() {
        return Err(ReadError::Directory);
    }
    if !meta.is_file() || meta.permissions().mode() & 0o111 != 0 {
        return Err(ReadError::NotRegular);
    }
    Ok(())
}

/// Read `path` if it is a regular non-executable file of at most `cap`
/// bytes.
pub(crate) fn read_bounded(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    // stat first (following links, as keepalived does): a FIFO is never
    // opened, so its writer never sees a reader.
    check(&std::fs::metadata(path).map_err(ReadError::Io)?)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(ReadError::Io)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    check(&meta)?;
    if meta.len() > cap {
        return Err(ReadError::TooBig(cap));
    }
    // st_size can lie (procfs says 0): stop reading once past the cap. Whole
    // 64 KiB chunks, as some procfs files (pagemap) take only aligned reads.
    let mut file = file;
    let mut buf = Vec::with_capacity(meta.len().min(cap) as usize);
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        };
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() as u64 > cap {
            return Err(ReadError::TooBig(cap));
        }
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.conf");
        std::fs::write(&p, "global_defs {\n}\n").unwrap();
        assert_eq!(read_bounded(&p, 100).unwrap(), b"global_defs {\n}\n");
    }

    #[test]
    fn directory_is_skipped_with_keepalived_text() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_bounded(dir.path(), MAX_FILE_BYTES).unwrap_err();
        assert!(matches!(e, ReadError::Directory), "{e:?}");
        assert_eq!(
            e.message(Path::new("/etc/keepalived/conf.d")),
            "Configuration file '/etc/keepalived/conf.d' is a directory - skipping"
        );
    }

    #[test]
    fn fifo_is_skipped_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo");
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo on a NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_bounded(&p, MAX_FILE_BYTES).unwrap_err();
        assert!(matches!(e, ReadError::NotRegular), "{e:?}");
        assert_eq!(
            e.message(&p),
            format!(
                "Configuration file '{}' is not a regular non-executable file - skipping",
                p.display()
            )
        );
    }

    #[test]
    fn devices_are_skipped() {
        for dev in ["/dev/zero", "/dev/null", "/dev/urandom"] {
            let e = read_bounded(Path::new(dev), MAX_FILE_BYTES).unwrap_err();
            assert!(matches!(e, ReadError::NotRegular), "{dev}: {e:?}");
        }
    }

    #[test]
    fn executable_is_skipped_like_keepalived() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.conf");
        std::fs::write(&p, "global_defs {\n}\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o744)).unwrap();
        assert!(matches!(
            read_bounded(&p, MAX_FILE_BYTES),
            Err(ReadError::NotRegular)
        ));
    }

    #[test]
    fn size_cap_from_stat_and_from_reading() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.conf");
        std::fs::write(&p, vec![b'!'; 101]).unwrap();
        let e = read_bounded(&p, 100).unwrap_err();
        assert!(matches!(e, ReadError::TooBig(100)), "{e:?}");
        assert!(e
            .message(&p)
            .contains("is larger than 100 bytes - skipping"));
        assert_eq!(read_bounded(&p, 101).unwrap().len(), 101);
        // procfs reports size 0 and may be long: stopped by the read cap
        // (a process's environment or maps are more than 8 bytes).
        let e = read_bounded(Path::new("/proc/self/maps"), 8).unwrap_err();
        assert!(matches!(e, ReadError::TooBig(8)), "{e:?}");
        assert_eq!(
            ReadError::TooBig(MAX_FILE_BYTES).message(Path::new("/x")),
            "Configuration file '/x' is larger than 16 MiB - skipping (rvs reads at most 16 MiB \
             per file and 64 MiB in total)"
        );
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let e = read_bounded(Path::new("/nonexistent/k.conf"), 10).unwrap_err();
        assert!(matches!(e, ReadError::Io(_)), "{e:?}");
        assert!(e
            .message(Path::new("/nonexistent/k.conf"))
            .starts_with("Unable to read configuration file /nonexistent/k.conf ("));
    }
}
