//! A channel's recording as asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/):
//! a header line, then one `[seconds, "o"|"i"|"r", data]` line per event. Written as it
//! happens through a small buffer (flushed at least every [`FLUSH_EVERY`]), hashed as
//! written, so memory stays bounded however long the channel runs and the SHA-256 is
//! ready the moment the file is closed.
//!
//! What goes in the cast, and what only in the audit record:
//! - Each direction's RAW bytes (output: stdout and stderr; input: what the client
//!   sent) are counted and hashed (SHA-256) as they pass; the `ssh_channel` record
//!   carries both, so whoever holds a transferred file can prove it is what passed.
//! - Text (a chunk that is valid UTF-8, a character cut by a packet boundary carried
//!   to the next chunk) is recorded exactly, as `o` (output) or `i` (input) events.
//! - A chunk that is not UTF-8 is binary: not escaped byte by byte (a GiB of random
//!   bytes was 2.4 GB of unreadable text), but one marker event per run of binary
//!   chunks, `[pgmoat: 1048576 bytes of binary output]`.
//! - sftp channels (scp too, which is sftp since OpenSSH 9) record the decoded file
//!   operations instead (see [`sftp`]); the hashes then cover the file data read and
//!   written.
//! - Past the channel's cap of cast text, events stop (a marker says so) and the
//!   channel carries on, counted and hashed.

mod sftp;
mod tap;

pub use tap::{Recording, Tap};

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::audit::record::hex;
use crate::audit::ssh::RECORDINGS;

/// The longest a recorded event waits in memory before it is on its way to disk.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Event lines gather in memory up to this much before a write.
const BUFFER: usize = 128 * 1024;

/// How a recording starts: the terminal it shows, and what it keeps.
pub struct CastOptions<'a> {
    pub size: (u32, u32),
    pub term: Option<&'a str>,
    pub title: &'a str,
    /// The channel speaks sftp: record its operations, not its bytes.
    pub sftp: bool,
    /// Most bytes of event lines written to the cast (see the module's note).
    pub max_bytes: u64,
}

/// A stream's raw bytes: how many, and their SHA-256 (hex).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamDigest {
    pub bytes: u64,
    pub sha256: String,
}

/// A closed recording: the file, its SHA-256, and the two streams' digests.
#[derive(Debug, Clone)]
pub struct Finished {
    pub name: String,
    pub sha256: String,
    pub output: StreamDigest,
    pub input: StreamDigest,
}

pub struct Recorder {
    out: BufWriter<HashingFile>,
    /// Relative to the audit folder, as the audit record names it.
    name: String,
    started: Instant,
    last_flush: Instant,
    /// The last event's time: events from the two directions of a channel reach the
    /// file in the order they were handed over, and their times never go back.
    last_at: Duration,
    /// The event line being built, reused for every event.
    line: Vec<u8>,
    streams: [StreamState; 2],
    sftp: Option<sftp::Decoder>,
    max_bytes: u64,
    /// Bytes of event lines written so far.
    written: u64,
    /// The streams' byte counts when the cap was reached.
    capped_at: Option<[u64; 2]>,
}

/// One direction of the channel.
#[derive(Default)]
struct StreamState {
    hash: Sha256,
    bytes: u64,
    /// A UTF-8 sequence cut by a packet boundary: at most 3 bytes.
    carry: Vec<u8>,
    /// The carried bytes joined to the next chunk, reused.
    joined: Vec<u8>,
    /// A run of binary chunks not yet marked: when it started, how many bytes.
    binary: Option<(Duration, u64)>,
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

#[derive(Clone, Copy, PartialEq)]
enum Stream {
    Output = 0,
    Input = 1,
}

impl Stream {
    fn kind(self) -> &'static str {
        match self {
            Stream::Output => "o",
            Stream::Input => "i",
        }
    }
    fn noun(self) -> &'static str {
        match self {
            Stream::Output => "output",
            Stream::Input => "input",
        }
    }
}

impl Recorder {
    /// Create `recordings/<session>-<channel>.cast` in the audit folder and write the
    /// header.
    pub fn create(
        audit_dir: &Path,
        session: &str,
        channel: u32,
        opts: &CastOptions,
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
            last_at: Duration::ZERO,
            line: Vec::new(),
            streams: Default::default(),
            sftp: opts.sftp.then(sftp::Decoder::default),
            max_bytes: opts.max_bytes,
            written: 0,
            capped_at: None,
        };
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut header = serde_json::json!({
            "version": 2,
            "width": opts.size.0.max(1),
            "height": opts.size.1.max(1),
            "timestamp": timestamp,
            "title": opts.title,
        });
        if let Some(t) = opts.term {
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

    /// Bytes the upstream sent (stdout and stderr), now.
    pub fn output(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.output_at(Instant::now(), bytes)
    }

    /// Bytes the client sent, now.
    pub fn input(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.input_at(Instant::now(), bytes)
    }

    pub fn resize(&mut self, cols: u32, rows: u32) -> std::io::Result<()> {
        self.resize_at(Instant::now(), cols, rows)
    }

    /// Bytes the upstream sent, at `at`.
    pub fn output_at(&mut self, at: Instant, bytes: &[u8]) -> std::io::Result<()> {
        self.data(at, Stream::Output, bytes)
    }

    /// Bytes the client sent, at `at`.
    pub fn input_at(&mut self, at: Instant, bytes: &[u8]) -> std::io::Result<()> {
        self.data(at, Stream::Input, bytes)
    }

    pub fn resize_at(&mut self, at: Instant, cols: u32, rows: u32) -> std::io::Result<()> {
        let at = self.since(at);
        self.event(at, "r", &format!("{cols}x{rows}"))
    }

    /// Flush and close: the file's name and SHA-256, and the streams' digests.
    pub fn finish(mut self) -> std::io::Result<Finished> {
        let now = self.since(Instant::now());
        for s in [Stream::Output, Stream::Input] {
            // An unfinished character at the very end is not text.
            let st = &mut self.streams[s as usize];
            let rest = std::mem::take(&mut st.carry).len() as u64;
            if rest > 0 {
                st.binary.get_or_insert((now, 0)).1 += rest;
            }
            self.end_binary(s)?;
        }
        if let Some(d) = self.sftp.as_mut() {
            d.finish();
        }
        self.sftp_lines(now)?;
        if let Some([out, inp]) = self.capped_at {
            let note = format!(
                "[pgmoat: after the recording cap, {} more bytes of output and {} of input were counted and hashed, not recorded]\r\n",
                self.streams[0].bytes - out,
                self.streams[1].bytes - inp
            );
            self.write_line(now, "o", &note)?;
        }
        let (output, input) = match self.sftp.take() {
            Some(d) => {
                let [w, r] = d.into_digests();
                (r, w)
            }
            None => {
                let [o, i] = std::mem::take(&mut self.streams);
                (digest(o.hash, o.bytes), digest(i.hash, i.bytes))
            }
        };
        self.out.flush()?;
        let inner = self.out.into_inner().map_err(|e| e.into_error())?;
        inner.file.sync_data()?;
        Ok(Finished {
            name: self.name,
            sha256: hex(&inner.hash.finalize()),
            output,
            input,
        })
    }

    fn since(&mut self, at: Instant) -> Duration {
        self.last_at = self.last_at.max(at.saturating_duration_since(self.started));
        self.last_at
    }

    fn data(&mut self, at: Instant, s: Stream, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let t = self.since(at);
        let written = self.record(t, s, bytes);
        // Counted after the chunk is recorded, so that the cap's count of what was
        // not recorded includes the chunk that reached it.
        self.streams[s as usize].bytes += bytes.len() as u64;
        written
    }

    fn record(&mut self, t: Duration, s: Stream, bytes: &[u8]) -> std::io::Result<()> {
        let i = s as usize;
        if let Some(d) = self.sftp.as_mut() {
            // The decoder hashes the file data itself.
            match s {
                Stream::Input => d.client(bytes),
                Stream::Output => d.server(bytes),
            }
            return self.sftp_lines(t);
        }
        self.streams[i].hash.update(bytes);
        if self.capped_at.is_some() {
            return Ok(());
        }
        let st = &mut self.streams[i];
        let mut joined = std::mem::take(&mut st.joined);
        let mut chunk: &[u8] = if st.carry.is_empty() {
            bytes
        } else {
            joined.clear();
            joined.append(&mut st.carry);
            joined.extend_from_slice(bytes);
            &joined
        };
        let mut end = text_end(chunk);
        if end.is_none() && chunk.len() > bytes.len() {
            // The carried start of a character was not continued: it alone is binary,
            // this chunk may still be text.
            if let Some(e) = text_end(bytes) {
                let stray = chunk.len() - bytes.len();
                self.streams[i].binary.get_or_insert((t, 0)).1 += stray as u64;
                chunk = bytes;
                end = Some(e);
            }
        }
        let written = match end {
            Some(end) => {
                let st = &mut self.streams[i];
                st.carry.extend_from_slice(&chunk[end..]);
                let text = std::str::from_utf8(&chunk[..end]).unwrap_or_default();
                match self.end_binary(s) {
                    Ok(()) if text.is_empty() => Ok(()),
                    Ok(()) => self.event(t, s.kind(), text),
                    Err(e) => Err(e),
                }
            }
            None => {
                self.streams[i].binary.get_or_insert((t, 0)).1 += chunk.len() as u64;
                Ok(())
            }
        };
        self.streams[i].joined = joined;
        written
    }

    /// The marker for a run of binary chunks that has ended.
    fn end_binary(&mut self, s: Stream) -> std::io::Result<()> {
        let Some((at, n)) = self.streams[s as usize].binary.take() else {
            return Ok(());
        };
        let marker = format!("[pgmoat: {n} bytes of binary {}]\r\n", s.noun());
        self.event(at, s.kind(), &marker)
    }

    /// Write the operations the sftp decoder has read.
    fn sftp_lines(&mut self, at: Duration) -> std::io::Result<()> {
        let Some(d) = self.sftp.as_mut() else {
            return Ok(());
        };
        if !d.has_lines() {
            return Ok(());
        }
        for line in d.take_lines() {
            self.event(at, "o", &format!("sftp: {line}\r\n"))?;
        }
        Ok(())
    }

    /// Write `[t, kind, text]`, unless the recording is past its cap; the event that
    /// would pass it writes the cap's marker instead.
    fn event(&mut self, at: Duration, kind: &str, text: &str) -> std::io::Result<()> {
        if self.capped_at.is_some() {
            return Ok(());
        }
        self.line.clear();
        // Microsecond resolution, as asciinema writes.
        let t = (at.as_secs_f64() * 1e6).round() / 1e6;
        serde_json::to_writer(&mut self.line, &(t, kind, text))?;
        self.line.push(b'\n');
        if self.written + self.line.len() as u64 > self.max_bytes {
            self.capped_at = Some([self.streams[0].bytes, self.streams[1].bytes]);
            let note = format!(
                "\r\n[pgmoat: recording cap of {} bytes reached; the rest of this channel is counted and hashed, not recorded]\r\n",
                self.max_bytes
            );
            return self.write_line(at, "o", &note);
        }
        self.written += self.line.len() as u64;
        self.out.write_all(&self.line)?;
        if self.line.capacity() > 4 * BUFFER {
            // One huge event (input pasted while a hold waited) must not pin its
            // buffer for the rest of the channel.
            self.line = Vec::new();
        }
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.out.flush()?;
            self.last_flush = Instant::now();
        }
        Ok(())
    }

    /// Write one event whatever the cap (pgmoat's own notes about the cap).
    fn write_line(&mut self, at: Duration, kind: &str, text: &str) -> std::io::Result<()> {
        let t = (at.as_secs_f64() * 1e6).round() / 1e6;
        serde_json::to_writer(&mut self.out, &(t, kind, text))?;
        self.out.write_all(b"\n")
    }
}

/// Where the text of a chunk ends: all of it when it is UTF-8, before an unfinished
/// last character (carried to the next chunk) when only that is missing; None for
/// binary.
fn text_end(chunk: &[u8]) -> Option<usize> {
    match std::str::from_utf8(chunk) {
        Ok(_) => Some(chunk.len()),
        Err(e) if e.error_len().is_none() => Some(e.valid_up_to()),
        Err(_) => None,
    }
}

fn digest(hash: Sha256, bytes: u64) -> StreamDigest {
    StreamDigest {
        bytes,
        sha256: hex(&hash.finalize()),
    }
}

#[cfg(test)]
mod tests;
