//! Room in the live segment set aside before records are acknowledged (`fsync` mode).
//!
//! Why: in `fsync` mode a record is durable once the journal is flushed; appending it
//! to the segment afterwards is a page-cache write that only a full disk can refuse.
//! Reserving the segment's blocks ahead (`fallocate` with `FALLOC_FL_KEEP_SIZE`: the
//! file's size does not change, so a tailer still sees only JSON lines) takes that
//! refusal out of the append, so waiters are answered right after the flush and the
//! append is off their path. Where the file system cannot reserve (or the segment is
//! not a regular file), the writer keeps the old order: append, then answer.

use std::fs::File;

/// Reserved a step at a time: one `fallocate` per this many bytes of records.
pub const STEP: u64 = 1 << 20;

/// What a reservation achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// `[from, from + len)` is allocated: writes there cannot fail for lack of space.
    Yes,
    /// The file system (or the file) does not support it.
    Unsupported,
}

/// Allocate `[from, from + len)` of `file` without changing its size.
#[cfg(target_os = "linux")]
pub fn reserve(file: &File, from: u64, len: u64) -> std::io::Result<Reserved> {
    use rustix::fs::{fallocate, FallocateFlags};
    use rustix::io::Errno;
    match fallocate(file, FallocateFlags::KEEP_SIZE, from, len) {
        Ok(()) => Ok(Reserved::Yes),
        Err(Errno::OPNOTSUPP | Errno::NODEV | Errno::NOSYS | Errno::INVAL | Errno::SPIPE) => {
            Ok(Reserved::Unsupported)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(target_os = "linux"))]
pub fn reserve(_file: &File, _from: u64, _len: u64) -> std::io::Result<Reserved> {
    Ok(Reserved::Unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_reservation_keeps_the_size_and_a_device_is_not_reserved() {
        let dir = std::env::temp_dir().join(format!("pgmoat-reserve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("seg");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{}\n").unwrap();
        let r = reserve(&f, 3, STEP).unwrap();
        // Size unchanged either way: a tailer never sees the reserved room.
        assert_eq!(f.metadata().unwrap().len(), 3);
        if r == Reserved::Yes {
            use std::os::unix::fs::MetadataExt;
            assert!(
                f.metadata().unwrap().blocks() * 512 >= STEP,
                "blocks allocated"
            );
        }
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        assert_eq!(reserve(&full, 0, STEP).unwrap(), Reserved::Unsupported);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
