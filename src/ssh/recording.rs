//! A channel's recording as asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/):
//! a header line, then one `[seconds, "o"|"i"|"r", data]` line per event. Written as it
//! happens through a small buffer (flushed at least every [`FLUSH_EVERY`]), hashed as
//! written, so memory stays bounded however long the channel runs and the SHA-256 is
//! ready the moment the file is closed.
//!
//! The encoding of the bytes a channel carries (asciicast holds text): the stream is
//! decoded as UTF-8 the way a terminal shows it, i.e. exactly
//! `String::from_utf8_lossy` of the whole stream: each maximal invalid sequence becomes
//! one U+FFFD, and a character cut by a packet boundary is recorded whole in the next
//! event (packet boundaries never change the text). The text is written as a JSON
//! string with only what JSON requires escaped (`"`, `\` and C0 controls, the latter
//! as `\n`, `\r`, `\t`, `\b`, `\f` or `\u00XX`, as serde_json writes them); everything
//! else, U+FFFD included, is copied as raw UTF-8. The encoder is branch-free per byte
//! (see [`encode_json_text`]): binary output costs a few cycles per byte, not a
//! mispredicted branch or a formatter call per character.

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
/// Event lines smaller than this gather in memory; bigger ones (a full SSH packet of
/// binary output encodes to ~80 KiB) go to the file in one write.
const BUFFER: usize = 128 * 1024;
/// Room for the start of an event line, `[seconds,"o","`.
const LINE_OVERHEAD: usize = 64;

pub struct Recorder {
    out: BufWriter<HashingFile>,
    /// Relative to the audit folder, as the audit record names it.
    name: String,
    started: Instant,
    last_flush: Instant,
    /// A UTF-8 sequence cut by a packet boundary, per stream (output, input): at most
    /// 3 bytes.
    carry: [Vec<u8>; 2],
    /// The event line being built, reused for every event.
    line: Vec<u8>,
    /// The last event's time: events from the two directions of a channel reach the
    /// file in the order they were handed over, and their times never go back.
    last_at: Duration,
    /// The carried bytes joined to the next packet, reused.
    joined: Vec<u8>,
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
            line: Vec::new(),
            joined: Vec::new(),
            last_at: Duration::ZERO,
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

    /// Bytes the upstream sent (stdout and stderr), now.
    pub fn output(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.output_at(Instant::now(), bytes)
    }

    /// Bytes the client typed (recorded for shells), now.
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

    /// Bytes the client typed, at `at`.
    pub fn input_at(&mut self, at: Instant, bytes: &[u8]) -> std::io::Result<()> {
        self.data(at, Stream::Input, bytes)
    }

    pub fn resize_at(&mut self, at: Instant, cols: u32, rows: u32) -> std::io::Result<()> {
        self.event(at, "r", format!("{cols}x{rows}").as_bytes())
    }

    /// Flush and close; the file's name and SHA-256.
    pub fn finish(mut self) -> std::io::Result<(String, String)> {
        for s in [Stream::Output, Stream::Input] {
            // An unfinished sequence at the very end: U+FFFD, as a terminal shows it.
            let rest = std::mem::take(&mut self.carry[s as usize]);
            if !rest.is_empty() {
                self.event(Instant::now(), kind(s), &rest)?;
            }
        }
        self.out.flush()?;
        let inner = self.out.into_inner().map_err(|e| e.into_error())?;
        inner.file.sync_data()?;
        Ok((self.name, hex(&inner.hash.finalize())))
    }

    /// One event for what arrived: its complete UTF-8 (see the module's note on the
    /// encoding); an incomplete sequence at the end waits for the next packet.
    fn data(&mut self, at: Instant, s: Stream, bytes: &[u8]) -> std::io::Result<()> {
        let i = s as usize;
        if self.carry[i].is_empty() {
            let cut = bytes.len() - incomplete_tail(bytes);
            self.carry[i].extend_from_slice(&bytes[cut..]);
            return self.event(at, kind(s), &bytes[..cut]);
        }
        // Rare on text, common on binary: the previous packet ended inside a sequence.
        // The joining buffer is kept, so this costs a copy, not an allocation.
        let mut all = std::mem::take(&mut self.joined);
        all.clear();
        all.append(&mut self.carry[i]);
        all.extend_from_slice(bytes);
        let cut = all.len() - incomplete_tail(&all);
        self.carry[i].extend_from_slice(&all[cut..]);
        let written = self.event(at, kind(s), &all[..cut]);
        self.joined = all;
        written
    }

    /// Write `[t, kind, text]` where text is `bytes` decoded lossily; nothing for no
    /// bytes.
    fn event(&mut self, at: Instant, kind: &str, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.last_at = self.last_at.max(at.saturating_duration_since(self.started));
        let t = self.last_at.as_secs_f64();
        // `[t,"o","`: a few dozen bytes, formatted on the stack.
        let mut head = std::io::Cursor::new([0u8; LINE_OVERHEAD]);
        head.write_all(b"[")?;
        // Microsecond resolution, as asciinema writes.
        serde_json::to_writer(&mut head, &((t * 1e6).round() / 1e6))?;
        write!(head, ",\"{kind}\",\"")?;
        let h = head.position() as usize;
        // The line buffer keeps its length between events (only what an event fills is
        // written out), so it is not zeroed again for every packet.
        if self.line.len() < h {
            self.line.resize(h, 0);
        }
        self.line[..h].copy_from_slice(&head.get_ref()[..h]);
        let end = encode_json_text(&mut self.line, h, bytes);
        // encode_json_text left at least 8 bytes of room past `end`.
        self.line[end..end + 3].copy_from_slice(b"\"]\n");
        self.out.write_all(&self.line[..end + 3])?;
        if self.line.len() > 4 * BUFFER {
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
}

fn kind(s: Stream) -> &'static str {
    match s {
        Stream::Output => "o",
        Stream::Input => "i",
    }
}

/// Append `bytes`, decoded as `String::from_utf8_lossy` does (each maximal invalid
/// subpart one U+FFFD), as the inside of a JSON string.
pub fn push_json_text(out: &mut Vec<u8>, bytes: &[u8]) {
    let at = out.len();
    let end = encode_json_text(out, at, bytes);
    out.truncate(end);
}

/// Write the JSON text of `bytes` into `buf` from `at` (growing `buf` when it is too
/// short for the worst case, never shrinking it); where the text ends.
///
/// Branch-free per byte: binary output is random bytes, on which any branch on a
/// byte's class is mispredicted about half the time; that, not the work, made a
/// branching decoder (`str::Utf8Chunks`, or one of our own) run at ~50-80 MB/s. Here
/// each byte is one pass through a small state machine (the Unicode table of
/// well-formed UTF-8: no overlong forms, surrogates or code points past U+10FFFF) that
/// always writes 8 bytes and moves on by as many as count:
/// - between characters: ASCII as itself or its JSON escape; a lead byte as itself,
///   remembered as the start of a sequence; anything else one U+FFFD;
/// - inside a sequence: an acceptable continuation byte as itself; any other byte ends
///   the sequence, whose bytes so far are taken back and become one U+FFFD, and is
///   then read as between characters.
///
/// A sequence still open at the end becomes one U+FFFD, as in `from_utf8_lossy`.
fn encode_json_text(buf: &mut Vec<u8>, at: usize, bytes: &[u8]) -> usize {
    let need = at + bytes.len() * MAX_OUT_PER_BYTE + 8;
    if buf.len() < need {
        buf.resize(need, 0);
    }
    let out = &mut buf[..need];
    let replacement = u64::from_le_bytes([0xEF, 0xBF, 0xBD, 0, 0, 0, 0, 0]);
    let (mut state, mut pos, mut seq_start) = (BETWEEN, at, at);
    for &b in bytes {
        // One table lookup per byte on the chain from byte to byte: the decoder's
        // speed is this chain's latency.
        let step = STEP[usize::from(state)][usize::from(b)];
        state = step & STATE;
        let ok = step & OK != 0;
        // A sequence cut short: back to its start, one U+FFFD.
        let fail_mask = usize::from(step & FAIL != 0).wrapping_neg();
        pos = (seq_start & fail_mask) | (pos & !fail_mask);
        out[pos..pos + 8].copy_from_slice(&replacement.to_le_bytes());
        pos += 3 & fail_mask;
        // Then this byte: a continuation as itself, else as between characters.
        let ok_mask = usize::from(ok).wrapping_neg();
        let ok64 = u64::from(ok).wrapping_neg();
        let text = (u64::from(b) & ok64) | (GROUND_TEXT[usize::from(b)] & !ok64);
        let len = (1 & ok_mask) | (usize::from(GROUND_LEN[usize::from(b)]) & !ok_mask);
        out[pos..pos + 8].copy_from_slice(&text.to_le_bytes());
        let starts_mask = usize::from(step & STARTS != 0).wrapping_neg();
        seq_start = (pos & starts_mask) | (seq_start & !starts_mask);
        pos += len;
    }
    if state != BETWEEN {
        pos = seq_start;
        out[pos..pos + 8].copy_from_slice(&replacement.to_le_bytes());
        pos += 3;
    }
    pos
}

/// The most bytes one input byte becomes: a control character as `\u00XX`.
const MAX_OUT_PER_BYTE: usize = 6;

// The decoder's states: between characters, or inside a sequence with this many
// continuation bytes to go and this range for the next one.
const BETWEEN: u8 = 0;
const ONE: u8 = 1; // 80..BF
const TWO: u8 = 2; // 80..BF
const TWO_E0: u8 = 3; // A0..BF (E0: no overlong forms)
const TWO_ED: u8 = 4; // 80..9F (ED: no surrogates)
const THREE: u8 = 5; // 80..BF
const THREE_F0: u8 = 6; // 90..BF (F0: no overlong forms)
const THREE_F4: u8 = 7; // 80..8F (F4: nothing past U+10FFFF)

/// Per state, the bytes that continue its sequence (none between characters).
const ACCEPT: [(u8, u8); 8] = [
    (1, 0),
    (0x80, 0xBF),
    (0x80, 0xBF),
    (0xA0, 0xBF),
    (0x80, 0x9F),
    (0x80, 0xBF),
    (0x90, 0xBF),
    (0x80, 0x8F),
];

/// Per state, the state after one accepted continuation byte.
const AFTER: [u8; 8] = [BETWEEN, BETWEEN, ONE, ONE, ONE, TWO, TWO, TWO];

/// Per state and byte: the next state and what the byte does, packed.
const STEP: [[u8; 256]; 8] = {
    let mut t = [[0u8; 256]; 8];
    let mut state = 0;
    while state < 8 {
        let mut b = 0;
        while b < 256 {
            let (lo, hi) = ACCEPT[state];
            let ok = state != BETWEEN as usize && b as u8 >= lo && b as u8 <= hi;
            let next = if ok { AFTER[state] } else { GROUND_NEXT[b] };
            let mut step = next;
            if ok {
                step |= OK;
            } else {
                if state != BETWEEN as usize {
                    step |= FAIL;
                }
                if GROUND_NEXT[b] != BETWEEN {
                    step |= STARTS;
                }
            }
            t[state][b] = step;
            b += 1;
        }
        state += 1;
    }
    t
};
/// The next state, in a [`STEP`].
const STATE: u8 = 0b111;
/// The byte continues the open sequence.
const OK: u8 = 1 << 3;
/// The byte does not continue the open sequence: the sequence so far is invalid.
const FAIL: u8 = 1 << 4;
/// The byte opens a sequence.
const STARTS: u8 = 1 << 5;

/// Per byte read between characters: the state it leads to.
const GROUND_NEXT: [u8; 256] = {
    let mut t = [BETWEEN; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = match b {
            0xC2..=0xDF => ONE,
            0xE0 => TWO_E0,
            0xE1..=0xEC | 0xEE..=0xEF => TWO,
            0xED => TWO_ED,
            0xF0 => THREE_F0,
            0xF1..=0xF3 => THREE,
            0xF4 => THREE_F4,
            _ => BETWEEN,
        };
        b += 1;
    }
    t
};

/// Per byte read between characters: what it writes (little-endian, up to 6 bytes)
/// and how many bytes that is. ASCII as itself or escaped as serde_json escapes (`"`,
/// `\` and C0 controls; `\n`, `\r`, `\t`, `\b`, `\f` short); a lead byte as itself;
/// anything else (a stray continuation byte, C0, C1, F5..FF) U+FFFD.
const GROUND_TEXT: [u64; 256] = ground_table().0;
const GROUND_LEN: [u8; 256] = ground_table().1;

const fn ground_table() -> ([u64; 256], [u8; 256]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u64; 256];
    let mut len = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let bytes: [u8; 6];
        let n: u8;
        match b as u8 {
            b'"' => (bytes, n) = ([b'\\', b'"', 0, 0, 0, 0], 2),
            b'\\' => (bytes, n) = ([b'\\', b'\\', 0, 0, 0, 0], 2),
            b'\n' => (bytes, n) = ([b'\\', b'n', 0, 0, 0, 0], 2),
            b'\r' => (bytes, n) = ([b'\\', b'r', 0, 0, 0, 0], 2),
            b'\t' => (bytes, n) = ([b'\\', b't', 0, 0, 0, 0], 2),
            0x08 => (bytes, n) = ([b'\\', b'b', 0, 0, 0, 0], 2),
            0x0c => (bytes, n) = ([b'\\', b'f', 0, 0, 0, 0], 2),
            0x00..=0x1f => (bytes, n) = ([b'\\', b'u', b'0', b'0', HEX[b >> 4], HEX[b & 0xf]], 6),
            0x20..=0x7f => (bytes, n) = ([b as u8, 0, 0, 0, 0, 0], 1),
            0xC2..=0xF4 => (bytes, n) = ([b as u8, 0, 0, 0, 0, 0], 1),
            _ => (bytes, n) = ([0xEF, 0xBF, 0xBD, 0, 0, 0], 3),
        }
        text[b] = u64::from_le_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], 0, 0,
        ]);
        len[b] = n;
        b += 1;
    }
    (text, len)
}

/// How many bytes at the end start a UTF-8 sequence that is not finished yet. Cutting
/// there never changes the lossy decoding: the cut is before a byte that cannot
/// continue a sequence (a lead byte or ASCII), or at the very end.
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

    #[test]
    fn json_text_is_what_serde_json_writes_for_the_lossy_text() {
        let mut cases: Vec<Vec<u8>> = vec![
            b"plain".to_vec(),
            b"quote \" back \\ nl \n cr \r tab \t bs \x08 ff \x0c nul \x00 esc \x1b del \x7f"
                .to_vec(),
            "caf\u{e9} \u{20ac} \u{1f600}".as_bytes().to_vec(),
            vec![
                0xff, 0xfe, b'a', 0xc3, 0x28, 0xe2, 0x82, b'x', 0xf0, 0x9f, 0x98,
            ],
            vec![0xed, 0xa0, 0x80, 0xc0, 0xaf, 0xf4, 0x90, 0x80, 0x80],
        ];
        for n in 0..200 {
            cases.push((0..n * 7).map(|_| rand::random::<u8>()).collect());
        }
        for bytes in cases {
            let mut ours = vec![b'"'];
            push_json_text(&mut ours, &bytes);
            ours.push(b'"');
            let theirs = serde_json::to_vec(&String::from_utf8_lossy(&bytes)).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(theirs).unwrap(),
                "{bytes:?}"
            );
        }
    }

    /// However the packets cut a binary stream, the recorded text is the lossy text of
    /// the whole stream: nothing lost, nothing invented at the boundaries.
    #[test]
    fn packet_boundaries_do_not_change_the_recorded_text() {
        let dir = std::env::temp_dir().join(format!("pgmoat-cast-{}", rand::random::<u64>()));
        for round in 0..20u32 {
            let stream: Vec<u8> = (0..20_000)
                .map(|i| match i % 5 {
                    // Mostly multi-byte lead and continuation bytes: many sequences
                    // cut at packet boundaries, valid and not.
                    0 => 0xe2,
                    1 => 0x82,
                    _ => rand::random::<u8>(),
                })
                .collect();
            let mut r = Recorder::create(&dir, "s", round, (80, 24), None, "t").unwrap();
            let mut at = 0;
            while at < stream.len() {
                let n = (1 + rand::random::<usize>() % 40).min(stream.len() - at);
                r.output(&stream[at..at + n]).unwrap();
                at += n;
            }
            let (name, _) = r.finish().unwrap();
            let text = std::fs::read_to_string(dir.join(&name)).unwrap();
            let recorded: String = text
                .lines()
                .skip(1)
                .map(|l| {
                    let e: serde_json::Value = serde_json::from_str(l).unwrap();
                    assert_eq!(e[1], "o");
                    e[2].as_str().unwrap().to_owned()
                })
                .collect();
            assert_eq!(recorded, String::from_utf8_lossy(&stream), "round {round}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
