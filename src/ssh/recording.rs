//! A channel's recording as asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/):
//! a header line, then one `[seconds, "o"|"i"|"r", data]` line per event. Written as it
//! happens through a small buffer (flushed at least every [`FLUSH_EVERY`]), hashed as
//! written, so memory stays bounded however long the channel runs and the SHA-256 is
//! ready the moment the file is closed.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::audit::record::hex;
use crate::audit::ssh::RECORDINGS;

/// The longest a recorded event waits in memory before it is on its way to disk.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
const BUFFER: usize = 64 * 1024;

pub struct Recorder {
    out: BufWriter<HashingFile>,
    /// Relative to the audit folder, as the audit record names it.
    name: String,
    started: Instant,
    last_flush: Instant,
    /// A UTF-8 sequence cut by a packet boundary, per stream (output, input).
    carry: [Vec<u8>; 2],
    line: Vec<u8>,
}

/// A file that hashes what is written to it.
struct HashingFile {
    file: File,
    hash: Sha256,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[derive(Clone, Copy)]
enum Stream {
    Output = 0,
    Input = 1,
}

impl Recorder {
    /// Create `recordings/<session>-<channel>.cast` in the audit folder and write the
    /// header.
    pub fn create(
        audit_dir: &Path,
        session: &str,
        channel: u32,
        size: (u32, u32),
        term: Option<&str>,
        title: &str,
    ) -> std::io::Result<Recorder> {
        let dir = audit_dir.join(RECORDINGS);
        std::fs::create_dir_all(&dir)?;
        let file_name = format!("{session}-{channel}.cast");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(&file_name))?;
        let mut r = Recorder {
            out: BufWriter::with_capacity(
                BUFFER,
                HashingFile {
                    file,
                    hash: Sha256::new(),
                },
            ),
            name: format!("{RECORDINGS}/{file_name}"),
            started: Instant::now(),
            last_flush: Instant::now(),
            carry: [Vec::new(), Vec::new()],
            line: Vec::with_capacity(256),
        };
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut header = serde_json::json!({
            "version": 2,
            "width": size.0.max(1),
            "height": size.1.max(1),
            "timestamp": timestamp,
            "title": title,
        });
        if let Some(t) = term {
            header["env"] = serde_json::json!({ "TERM": t });
        }
        serde_json::to_writer(&mut r.out, &header)?;
        r.out.write_all(b"\n")?;
        r.out.flush()?;
        Ok(r)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes the upstream sent (stdout and stderr).
    pub fn output(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.data(Stream::Output, bytes)
    }

    /// Bytes the client typed (recorded for shells).
    pub fn input(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.data(Stream::Input, bytes)
    }

    pub fn resize(&mut self, cols: u32, rows: u32) -> std::io::Result<()> {
        self.event("r", &format!("{cols}x{rows}"))
    }

    /// Flush and close; the file's name and SHA-256.
    pub fn finish(mut self) -> std::io::Result<(String, String)> {
        for s in [Stream::Output, Stream::Input] {
            let rest = std::mem::take(&mut self.carry[s as usize]);
            if !rest.is_empty() {
                self.event(kind(s), &String::from_utf8_lossy(&rest))?;
            }
        }
        self.out.flush()?;
        let inner = self.out.into_inner().map_err(|e| e.into_error())?;
        inner.file.sync_data()?;
        Ok((self.name, hex(&inner.hash.finalize())))
    }

    /// Text for one event: the complete UTF-8 of what arrived; an incomplete sequence
    /// at the end waits for the next packet, invalid bytes become U+FFFD (asciicast
    /// holds text; binary transfers are recorded as what a terminal would show).
    fn data(&mut self, s: Stream, bytes: &[u8]) -> std::io::Result<()> {
        let carry = &mut self.carry[s as usize];
        let joined;
        let all: &[u8] = if carry.is_empty() {
            bytes
        } else {
            carry.extend_from_slice(bytes);
            joined = std::mem::take(carry);
            &joined
        };
        let (text, rest) = utf8_prefix(all);
        let rest = rest.to_vec();
        if !text.is_empty() {
            self.event(kind(s), &text)?;
        }
        self.carry[s as usize] = rest;
        Ok(())
    }

    fn event(&mut self, kind: &str, data: &str) -> std::io::Result<()> {
        let t = self.started.elapsed().as_secs_f64();
        self.line.clear();
        // Microsecond resolution, as asciinema writes.
        serde_json::to_writer(&mut self.line, &((t * 1e6).round() / 1e6, kind, data))?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.out.flush()?;
            self.last_flush = Instant::now();
        }
        Ok(())
    }
}

fn kind(s: Stream) -> &'static str {
    match s {
        Stream::Output => "o",
        Stream::Input => "i",
    }
}

/// The longest prefix that is whole UTF-8 (invalid bytes replaced), and the cut-off
/// tail of an incomplete final sequence (at most 3 bytes).
fn utf8_prefix(bytes: &[u8]) -> (std::borrow::Cow<'_, str>, &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.into(), &[]),
        Err(e) if e.error_len().is_none() => {
            let cut = e.valid_up_to();
            (String::from_utf8_lossy(&bytes[..cut]), &bytes[cut..])
        }
        Err(_) => {
            // Invalid bytes inside: lossy over everything but an incomplete tail.
            let tail = incomplete_tail(bytes);
            let cut = bytes.len() - tail;
            (String::from_utf8_lossy(&bytes[..cut]), &bytes[cut..])
        }
    }
}

/// How many bytes at the end start a UTF-8 sequence that is not finished yet.
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=3.min(bytes.len()) {
        let b = bytes[bytes.len() - back];
        if b & 0b1100_0000 != 0b1000_0000 {
            let need = match b {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => 1,
            };
            return if need > back { back } else { 0 };
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_asciicast_and_hashes_what_it_wrote() {
        let dir = std::env::temp_dir().join(format!("pgmoat-cast-{}", rand::random::<u64>()));
        let mut r = Recorder::create(&dir, "s1", 0, (80, 24), Some("xterm"), "t").unwrap();
        let euro = "€".as_bytes();
        r.output(b"hello ").unwrap();
        // A character split across two packets is recorded whole.
        r.output(&euro[..1]).unwrap();
        r.output(&euro[1..]).unwrap();
        r.input(b"ls\r").unwrap();
        r.resize(100, 30).unwrap();
        r.output(&[0xff, b'x']).unwrap();
        let (name, sha) = r.finish().unwrap();
        assert_eq!(name, "recordings/s1-0.cast");
        let text = std::fs::read_to_string(dir.join(&name)).unwrap();
        assert_eq!(
            sha,
            crate::audit::ssh::sha256_file(&dir.join(&name)).unwrap()
        );
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["version"], 2);
        assert_eq!(lines[0]["env"]["TERM"], "xterm");
        let events: Vec<(String, String)> = lines[1..]
            .iter()
            .map(|e| (e[1].as_str().unwrap().into(), e[2].as_str().unwrap().into()))
            .collect();
        let want = [
            ("o", "hello "),
            ("o", "€"),
            ("i", "ls\r"),
            ("r", "100x30"),
            ("o", "\u{fffd}x"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(events, want);
        let _ = std::fs::remove_dir_all(dir);
    }
}
