//! The sftp subsystem's operations, as an auditor wants them: which paths were opened
//! (and how), read and written (bytes per handle), closed, removed, renamed, created,
//! listed, linked or had their attributes set, each with the server's answer. Reads
//! the client's requests and the server's replies of the sftp protocol version 3
//! (draft-ietf-secsh-filexfer-02, as OpenSSH speaks it, its `@openssh.com` extensions
//! included); `scp` is sftp since OpenSSH 9.
//!
//! The data of READ replies and WRITE requests is counted and hashed (SHA-256), never
//! recorded: per channel (with one file per channel, as scp, the file's hash), and per
//! handle (each `close` line says the hash of what was read or written, when it passed
//! in order from the start of the file, as scp, `get` and `put` move files).
//!
//! This reads what untrusted peers send: every length is checked, nothing panics, and
//! memory is bounded (one packet per direction, at most [`MAX_PACKET`]; at most
//! [`MAX_TRACKED`] outstanding requests and open handles, their paths cut at
//! [`MAX_PATH`]). A stream it cannot read
//! (not sftp, a malformed packet, too many handles) is noted once; from then on its
//! bytes, both directions, are only counted and hashed, and the channel carries on.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::{digest, StreamDigest};
use crate::audit::record::hex;

/// The largest packet read (OpenSSH sends at most 256 KiB).
const MAX_PACKET: usize = 1 << 20;
/// Most outstanding requests and open handles followed (OpenSSH keeps ~64 requests
/// in flight and the server a few hundred handles).
const MAX_TRACKED: usize = 1024;
/// The longest path kept (Linux's PATH_MAX): with [`MAX_TRACKED`], at most a few MiB
/// of names held per channel, however a client pipelines its requests.
const MAX_PATH: usize = 4096;

// Packet types (draft-ietf-secsh-filexfer-02, section 3).
const INIT: u8 = 1;
const VERSION: u8 = 2;
const OPEN: u8 = 3;
const CLOSE: u8 = 4;
const READ: u8 = 5;
const WRITE: u8 = 6;
const SETSTAT: u8 = 9;
const FSETSTAT: u8 = 10;
const OPENDIR: u8 = 11;
const READDIR: u8 = 12;
const REMOVE: u8 = 13;
const MKDIR: u8 = 14;
const RMDIR: u8 = 15;
const RENAME: u8 = 18;
const SYMLINK: u8 = 20;
const STATUS: u8 = 101;
const HANDLE: u8 = 102;
const DATA: u8 = 103;
const NAME: u8 = 104;
const EXTENDED: u8 = 200;

/// Which way a packet went.
#[derive(Clone, Copy)]
enum Side {
    /// Requests (client to server): the channel's input.
    Client = 0,
    /// Replies: the channel's output.
    Server = 1,
}

/// A request waiting for its reply.
enum Pending {
    Open {
        path: String,
        flags: String,
    },
    OpenDir {
        path: String,
    },
    Close {
        handle: Vec<u8>,
    },
    Read {
        handle: Vec<u8>,
        offset: u64,
    },
    Write {
        handle: Vec<u8>,
    },
    ReadDir {
        handle: Vec<u8>,
    },
    /// An operation recorded with its status, e.g. `remove "/tmp/x"`.
    Op(String),
}

/// An open file or directory.
#[derive(Default)]
struct Handle {
    path: String,
    dir: bool,
    read: u64,
    written: u64,
    entries: u64,
    /// The SHA-256 of the data read and written through this handle, while it is the
    /// file's from offset 0 on, in order (as `scp`, `get` and `put` move a file);
    /// None once a read or write went elsewhere (then no hash is claimed).
    read_hash: Option<Sha256>,
    write_hash: Option<Sha256>,
}

#[derive(Default)]
pub struct Decoder {
    /// Per side, the start of a packet not complete yet.
    partial: [Vec<u8>; 2],
    pending: HashMap<u32, Pending>,
    handles: HashMap<Vec<u8>, Handle>,
    /// Data written (requests) and read (replies), hashed.
    hash: [Sha256; 2],
    bytes: [u64; 2],
    /// The stream could not be read: only counted and hashed from here on.
    broken: bool,
    lines: Vec<String>,
}

impl Decoder {
    /// Bytes the client sent.
    pub fn client(&mut self, bytes: &[u8]) {
        self.feed(Side::Client, bytes);
    }

    /// Bytes the server sent.
    pub fn server(&mut self, bytes: &[u8]) {
        self.feed(Side::Server, bytes);
    }

    pub fn has_lines(&self) -> bool {
        !self.lines.is_empty()
    }

    /// The operations read since the last call, one line each.
    pub fn take_lines(&mut self) -> Vec<String> {
        std::mem::take(&mut self.lines)
    }

    /// The channel ended: what was left open, or cut short.
    pub fn finish(&mut self) {
        if self.broken {
            return;
        }
        if self.partial.iter().any(|p| !p.is_empty()) {
            self.lines
                .push("[pgmoat: the stream ended inside an sftp packet]".into());
        }
        let mut open: Vec<_> = self.handles.drain().map(|(_, h)| h).collect();
        open.sort_by(|a, b| a.path.cmp(&b.path));
        for h in open {
            self.lines.push(format!("{}: left open", summary(&h)));
        }
    }

    /// The data written and read: (bytes, SHA-256) each.
    pub fn into_digests(self) -> [StreamDigest; 2] {
        let [w, r] = self.hash;
        [digest(w, self.bytes[0]), digest(r, self.bytes[1])]
    }

    fn feed(&mut self, side: Side, bytes: &[u8]) {
        if self.broken {
            self.hash_data(side, bytes);
            return;
        }
        let s = side as usize;
        // The common case needs no copy: a chunk that starts at a packet boundary is
        // read in place, and only a packet cut at its end is kept for the next chunk.
        let mut buf = std::mem::take(&mut self.partial[s]);
        let used = if buf.is_empty() {
            let used = self.packets(side, bytes);
            buf.extend_from_slice(&bytes[used.min(bytes.len())..]);
            0
        } else {
            buf.extend_from_slice(bytes);
            self.packets(side, &buf)
        };
        if self.broken {
            // `broke` hashed what was not read.
            return;
        }
        buf.drain(..used.min(buf.len()));
        if buf.capacity() > 2 * MAX_PACKET {
            buf.shrink_to(MAX_PACKET);
        }
        self.partial[s] = buf;
    }

    /// Read the complete packets at the start of `bytes`: how many bytes they took.
    fn packets(&mut self, side: Side, bytes: &[u8]) -> usize {
        let mut at = 0;
        while let Some(head) = bytes.get(at..at + 4) {
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
            if len == 0 || len > MAX_PACKET {
                self.broke(side, &bytes[at..], &format!("a packet of {len} bytes"));
                return bytes.len();
            }
            let Some(packet) = bytes.get(at + 4..at + 4 + len) else {
                break;
            };
            let read = match side {
                Side::Client => self.request(packet),
                Side::Server => self.reply(packet),
            };
            if let Err(why) = read {
                self.broke(side, &bytes[at..], why);
                return bytes.len();
            }
            at += 4 + len;
        }
        at
    }

    /// Stop reading: note it once, hash `rest` (the unread bytes of this side).
    fn broke(&mut self, side: Side, rest: &[u8], why: &str) {
        self.lines.push(format!(
            "[pgmoat: sftp stream not understood from here on ({why}); its bytes are counted and hashed, not recorded]"
        ));
        self.broken = true;
        self.hash_data(side, rest);
        let other = match side {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        };
        let theirs = std::mem::take(&mut self.partial[other as usize]);
        self.hash_data(other, &theirs);
        self.partial = Default::default();
        self.pending.clear();
        self.handles.clear();
    }

    fn hash_data(&mut self, side: Side, data: &[u8]) {
        self.hash[side as usize].update(data);
        self.bytes[side as usize] += data.len() as u64;
    }

    fn track(&mut self, id: u32, p: Pending) -> Result<(), &'static str> {
        if self.pending.len() >= MAX_TRACKED && !self.pending.contains_key(&id) {
            return Err("too many outstanding requests");
        }
        self.pending.insert(id, p);
        Ok(())
    }

    fn path_of(&self, handle: &[u8]) -> String {
        match self.handles.get(handle) {
            Some(h) => h.path.clone(),
            None => "(unknown handle)".into(),
        }
    }

    /// One request from the client.
    fn request(&mut self, packet: &[u8]) -> Result<(), &'static str> {
        let mut r = Reader(packet);
        let kind = r.u8()?;
        if kind == INIT {
            return Ok(());
        }
        let id = r.u32()?;
        let p = match kind {
            OPEN => {
                let path = r.text()?;
                let flags = open_flags(r.u32()?);
                Pending::Open { path, flags }
            }
            OPENDIR => Pending::OpenDir { path: r.text()? },
            CLOSE => Pending::Close {
                handle: r.string()?.to_vec(),
            },
            READ => Pending::Read {
                handle: r.string()?.to_vec(),
                offset: r.u64()?,
            },
            READDIR => Pending::ReadDir {
                handle: r.string()?.to_vec(),
            },
            WRITE => {
                let handle = r.string()?.to_vec();
                let offset = r.u64()?;
                let data = r.string()?;
                self.hash_data(Side::Client, data);
                if let Some(h) = self.handles.get_mut(&handle) {
                    follow(&mut h.write_hash, offset == h.written, data);
                    h.written += data.len() as u64;
                }
                Pending::Write { handle }
            }
            REMOVE => Pending::Op(format!("remove {}", r.text()?)),
            RMDIR => Pending::Op(format!("rmdir {}", r.text()?)),
            MKDIR => {
                let path = r.text()?;
                Pending::Op(format!("mkdir {path}{}", attrs(&mut r)?))
            }
            SETSTAT => {
                let path = r.text()?;
                Pending::Op(format!("setstat {path}{}", attrs(&mut r)?))
            }
            FSETSTAT => {
                let path = self.path_of(r.string()?);
                Pending::Op(format!("setstat {path}{}", attrs(&mut r)?))
            }
            RENAME => {
                let (from, to) = (r.text()?, r.text()?);
                Pending::Op(format!("rename {from} -> {to}"))
            }
            SYMLINK => {
                // OpenSSH sends the target first, then the link's path (its
                // PROTOCOL file: the draft's order was reversed by mistake, and kept).
                let (target, link) = (r.text()?, r.text()?);
                Pending::Op(format!("symlink {link} -> {target}"))
            }
            EXTENDED => match extended(&mut r)? {
                Some(op) => Pending::Op(op),
                None => return Ok(()),
            },
            // stat, lstat, fstat, realpath, readlink: reading metadata, not recorded.
            _ => return Ok(()),
        };
        self.track(id, p)
    }

    /// One reply from the server.
    fn reply(&mut self, packet: &[u8]) -> Result<(), &'static str> {
        let mut r = Reader(packet);
        let kind = r.u8()?;
        if kind == VERSION {
            return Ok(());
        }
        let id = r.u32()?;
        let Some(p) = self.pending.remove(&id) else {
            // A reply to a request not followed (stat, realpath, ...); DATA to an
            // unknown request is still data that passed.
            if kind == DATA {
                let data = r.string()?;
                self.hash_data(Side::Server, data);
            }
            return Ok(());
        };
        match (kind, p) {
            (HANDLE, Pending::Open { path, flags }) => {
                let handle = r.string()?.to_vec();
                self.lines.push(format!("open {path} ({flags}): ok"));
                self.open(handle, path, false)?;
            }
            (HANDLE, Pending::OpenDir { path }) => {
                let handle = r.string()?.to_vec();
                self.open(handle, path, true)?;
            }
            (DATA, Pending::Read { handle, offset }) => {
                let data = r.string()?;
                self.hash_data(Side::Server, data);
                if let Some(h) = self.handles.get_mut(&handle) {
                    follow(&mut h.read_hash, offset == h.read, data);
                    h.read += data.len() as u64;
                }
            }
            (NAME, Pending::ReadDir { handle }) => {
                let count = r.u32()?;
                if let Some(h) = self.handles.get_mut(&handle) {
                    h.entries += u64::from(count);
                }
            }
            (STATUS, p) => {
                let code = r.u32()?;
                let status = status_text(code, &r.text().unwrap_or_default());
                match p {
                    Pending::Open { path, flags } => {
                        self.lines.push(format!("open {path} ({flags}): {status}"))
                    }
                    Pending::OpenDir { path } => self.lines.push(format!("list {path}: {status}")),
                    Pending::Close { handle } => {
                        let line = match self.handles.remove(&handle) {
                            Some(h) => format!("{}: {status}", summary(&h)),
                            None => format!("close (unknown handle): {status}"),
                        };
                        self.lines.push(line);
                    }
                    // End of file or of a listing is how reads end; a failure is news.
                    Pending::Read { handle, .. } | Pending::ReadDir { handle } if code != 1 => {
                        let path = self.path_of(&handle);
                        self.lines.push(format!("read {path}: {status}"));
                    }
                    Pending::Write { handle } if code != 0 => {
                        let path = self.path_of(&handle);
                        self.lines.push(format!("write {path}: {status}"));
                    }
                    Pending::Op(op) => self.lines.push(format!("{op}: {status}")),
                    _ => {}
                }
            }
            // Any other pairing: a reply of a type its request does not get.
            _ => return Err("a reply that does not fit its request"),
        }
        Ok(())
    }

    fn open(&mut self, handle: Vec<u8>, path: String, dir: bool) -> Result<(), &'static str> {
        if self.handles.len() >= MAX_TRACKED {
            return Err("too many open handles");
        }
        self.handles.insert(
            handle,
            Handle {
                path,
                dir,
                read_hash: Some(Sha256::new()),
                write_hash: Some(Sha256::new()),
                ..Handle::default()
            },
        );
        Ok(())
    }
}

/// Hash `data` into a handle's running hash when it continues the file in order;
/// otherwise the hash is dropped for good.
fn follow(hash: &mut Option<Sha256>, in_order: bool, data: &[u8]) {
    match hash {
        Some(h) if in_order => h.update(data),
        _ => *hash = None,
    }
}

/// What a handle saw, as its close reports it: bytes read and written, each with the
/// SHA-256 of the file's content that passed when it passed in order from the start.
fn summary(h: &Handle) -> String {
    if h.dir {
        return format!("list {}: {} entries", h.path, h.entries);
    }
    let mut s = format!("close {}", h.path);
    let with_hash = |n: u64, verb: &str, hash: &Option<Sha256>| match hash {
        Some(d) if n > 0 => format!(", {n} bytes {verb} (sha256 {})", hex(&d.clone().finalize())),
        None => format!(", {n} bytes {verb} (not in order: no sha256)"),
        Some(_) => format!(", {n} bytes {verb}"),
    };
    if h.read > 0 || h.written == 0 {
        s.push_str(&with_hash(h.read, "read", &h.read_hash));
    }
    if h.written > 0 {
        s.push_str(&with_hash(h.written, "written", &h.write_hash));
    }
    s
}

/// The `@openssh.com` requests that change files; None for the rest (statvfs,
/// fsync, limits, expand-path, home-directory, ...).
fn extended(r: &mut Reader) -> Result<Option<String>, &'static str> {
    let name = r.text()?;
    Ok(Some(match name.trim_matches('"') {
        "posix-rename@openssh.com" => {
            let (from, to) = (r.text()?, r.text()?);
            format!("rename {from} -> {to}")
        }
        "hardlink@openssh.com" => {
            let (from, to) = (r.text()?, r.text()?);
            format!("hardlink {to} -> {from}")
        }
        "lsetstat@openssh.com" => {
            let path = r.text()?;
            format!("setstat {path}{}", attrs(r)?)
        }
        "copy-data" => "copy-data".to_string(),
        _ => return Ok(None),
    }))
}

/// SSH_FXF_* open flags, by name.
fn open_flags(f: u32) -> String {
    let names = [
        (1, "read"),
        (2, "write"),
        (4, "append"),
        (8, "create"),
        (0x10, "truncate"),
        (0x20, "exclusive"),
    ];
    let set: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| f & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    if set.is_empty() {
        "no flags".into()
    } else {
        set.join(",")
    }
}

/// An ATTRS structure, as the attributes a request sets (`, mode 0600`, ...).
fn attrs(r: &mut Reader) -> Result<String, &'static str> {
    let flags = r.u32()?;
    let mut s = String::new();
    if flags & 1 != 0 {
        s.push_str(&format!(", size {}", r.u64()?));
    }
    if flags & 2 != 0 {
        let (uid, gid) = (r.u32()?, r.u32()?);
        s.push_str(&format!(", owner {uid}:{gid}"));
    }
    if flags & 4 != 0 {
        s.push_str(&format!(", mode {:04o}", r.u32()? & 0o7777));
    }
    if flags & 8 != 0 {
        let (_atime, mtime) = (r.u32()?, r.u32()?);
        s.push_str(&format!(", mtime {mtime}"));
    }
    Ok(s)
}

/// SSH_FX_* status codes, by name, with the server's message for failures.
fn status_text(code: u32, message: &str) -> String {
    let name = match code {
        0 => return "ok".into(),
        1 => "end of file",
        2 => "no such file",
        3 => "permission denied",
        4 => "failure",
        5 => "bad message",
        6 => "no connection",
        7 => "connection lost",
        8 => "operation unsupported",
        _ => "error",
    };
    let message = message.trim_matches('"');
    if message.is_empty() || message.eq_ignore_ascii_case(name) {
        format!("{name} (status {code})")
    } else {
        format!("{name} (status {code}: {message})")
    }
}

/// Length-checked reads from a packet; an error says the packet is cut short.
struct Reader<'a>(&'a [u8]);

const SHORT: &str = "a packet shorter than its fields";

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err(SHORT);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, &'static str> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, &'static str> {
        Ok((u64::from(self.u32()?) << 32) | u64::from(self.u32()?))
    }
    fn string(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A path or message, quoted with control characters escaped (`"\u{1b}..."`), so a
    /// name cannot pass for something else in the recording.
    fn text(&mut self) -> Result<String, &'static str> {
        let s = self.string()?;
        let kept = &s[..s.len().min(MAX_PATH)];
        let mut t = format!("{:?}", String::from_utf8_lossy(kept));
        if kept.len() < s.len() {
            t.push_str(&format!(" (cut, {} bytes in all)", s.len()));
        }
        Ok(t)
    }
}
