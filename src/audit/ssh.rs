//! The SSH front door's records (SPEC sections 6 and 8): `ssh_session_start`,
//! `ssh_channel` and `ssh_session_end`, in the same hash chain as every other record;
//! and what `verify` and `replay` do with the recordings they name.
//!
//! A channel writes two `ssh_channel` records: `decided` (what was asked and what
//! pgmoat decided, durable before anything reaches the upstream) and `closed` (exit
//! status, bytes, and the recording's file name and SHA-256 once the file is complete).
//! The recording lives beside the segments, under `recordings/`; the chain holds its
//! hash, so an edited or deleted recording fails `pgmoat audit verify`.

use std::io::Read;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::event::Event;

/// The folder of the audit store that holds recordings.
pub const RECORDINGS: &str = "recordings";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SshSessionStart {
    pub user: String,
    pub groups: Vec<String>,
    pub target: String,
    pub client: String,
    /// `publickey`, `password` or `token`.
    pub auth: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SshChannel {
    /// The channel's number within the session.
    pub channel: u32,
    /// `decided` or `closed`.
    pub phase: String,
    /// `exec`, `shell` or `subsystem`.
    pub request: String,
    /// The exec command line, or the subsystem's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// `allow`, `block` or `approve`.
    pub action: String,
    pub rules: Vec<String>,
    /// The rule behind the action (`default` or `unanalysable` when none matched).
    pub rule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The asciicast file, relative to the audit folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<String>,
    /// Hex SHA-256 of the whole recording file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_sha256: Option<String>,
    /// The channel's output as it passed (stdout and stderr; for sftp, the data of
    /// the files read): how many bytes, and their hex SHA-256. Whoever holds a copy
    /// can prove it is what passed; the recording holds text and markers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_sha256: Option<String>,
    /// The same for the client's input (for sftp, the data of the files written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SshSessionEnd {
    pub channels: u64,
    pub end: String,
}

/// For `verify`: the recording an `ssh_channel` record names must exist and hash to
/// what the record says. `line` is the record as stored.
pub fn check_recording(dir: &Path, line: &[u8]) -> Result<(), String> {
    #[derive(Deserialize)]
    struct Named {
        recording: Option<String>,
        recording_sha256: Option<String>,
    }
    let Ok(n) = serde_json::from_slice::<Named>(line) else {
        return Ok(()); // the chain check already judged the line itself
    };
    let (Some(name), Some(want)) = (n.recording, n.recording_sha256) else {
        return Ok(());
    };
    let path = recording_path(dir, &name)?;
    let got = sha256_file(&path).map_err(|e| format!("recording {name}: {e}"))?;
    if got != want {
        return Err(format!(
            "recording {name} was changed: its SHA-256 is {got}, the record says {want}"
        ));
    }
    Ok(())
}

/// A recording's path, refusing names that leave the store (a forged record must not
/// make verify or replay read elsewhere).
pub fn recording_path(dir: &Path, name: &str) -> Result<std::path::PathBuf, String> {
    let rel = Path::new(name);
    let inside =
        rel.components().all(|c| matches!(c, Component::Normal(_))) && rel.starts_with(RECORDINGS);
    if !inside {
        return Err(format!("recording name {name:?} is outside the store"));
    }
    Ok(dir.join(rel))
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(super::record::hex(&h.finalize()))
}

/// Most recorded output `replay` prints per channel.
const REPLAY_OUTPUT: usize = 64 * 1024;

/// `pgmoat audit replay` lines for an SSH record; None for other records.
pub fn replay_text(dir: &Path, ts: &str, session: &str, event: &Event) -> Option<String> {
    let clock = ts.get(11..19).unwrap_or(ts);
    Some(match event {
        Event::SshSessionStart(s) => format!(
            "-- ssh session {session}: {} ({}) -> {} from {}, by {}\n-- started {ts}\n",
            s.user,
            if s.groups.is_empty() {
                "no groups".into()
            } else {
                s.groups.join(", ")
            },
            s.target,
            s.client,
            s.auth
        ),
        Event::SshChannel(c) if c.phase == "decided" => format!(
            "[{clock}] channel {} {}{}: {} (rule {})\n",
            c.channel,
            c.request,
            c.command
                .as_deref()
                .map(|x| format!(" {x:?}"))
                .unwrap_or_default(),
            c.action,
            c.rule
        ),
        Event::SshChannel(c) => {
            let mut s = format!(
                "[{clock}] channel {} closed: exit {}, {} bytes in, {} bytes out{}\n",
                c.channel,
                c.exit_status
                    .map(|x| x.to_string())
                    .unwrap_or_else(|| "-".into()),
                c.bytes_in.unwrap_or(0),
                c.bytes_out.unwrap_or(0),
                c.error
                    .as_deref()
                    .map(|e| format!(", {e}"))
                    .unwrap_or_default()
            );
            if let Some(name) = &c.recording {
                s.push_str(&format!("  recording {name}\n"));
                s.push_str(&recorded_output(dir, name, c.request != "shell"));
            }
            s
        }
        Event::SshSessionEnd(e) => format!(
            "-- ended {ts}: {}, {} channel{}\n",
            e.end,
            e.channels,
            if e.channels == 1 { "" } else { "s" }
        ),
        _ => return None,
    })
}

/// The output events of a recording, as text (at most [`REPLAY_OUTPUT`] bytes),
/// indented; a note instead when the file cannot be read. With `input`, the input
/// events too, in order, marked `>` (an exec's stdin; a shell's input is not shown,
/// its terminal echoes it in the output).
fn recorded_output(dir: &Path, name: &str, input: bool) -> String {
    let path = match recording_path(dir, name) {
        Ok(p) => p,
        Err(e) => return format!("  ({e})\n"),
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => return format!("  (recording unreadable: {e})\n"),
    };
    // Runs of events of one direction: (input?, text).
    let mut runs: Vec<(bool, String)> = Vec::new();
    let mut total = 0;
    let reader = std::io::BufReader::new(file);
    for line in std::io::BufRead::lines(reader).skip(1) {
        let Ok(line) = line else { break };
        let Ok((_, kind, data)) = serde_json::from_str::<(f64, String, String)>(&line) else {
            continue;
        };
        let is_input = match kind.as_str() {
            "o" => false,
            "i" if input => true,
            _ => continue,
        };
        let take = data.len().min(REPLAY_OUTPUT.saturating_sub(total));
        let mut cut = take;
        while !data.is_char_boundary(cut) {
            cut -= 1;
        }
        match runs.last_mut() {
            Some((i, text)) if *i == is_input => text.push_str(&data[..cut]),
            _ => runs.push((is_input, data[..cut].to_string())),
        }
        total += take;
        if take < data.len() {
            if let Some((_, text)) = runs.last_mut() {
                text.push_str("\n(output cut)");
            }
            break;
        }
    }
    let mut out = String::new();
    for (is_input, text) in runs {
        let mark = if is_input { '>' } else { '|' };
        for l in text.replace("\r\n", "\n").lines() {
            out.push_str(&format!("  {mark} {}\n", shown(l)));
        }
    }
    out
}

/// Recorded output as an auditor's terminal may show it: control characters (an
/// escape sequence could move the cursor over the lines above, or set the clipboard)
/// in caret notation (`^[`), C1 controls as `\u{..}`; tabs stay.
fn shown(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        match c {
            '\t' => out.push('\t'),
            '\u{7f}' => out.push_str("^?"),
            c if (c as u32) < 0x20 => {
                out.push('^');
                out.push(char::from(b'@' + c as u8));
            }
            c if ('\u{80}'..='\u{9f}').contains(&c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// How `pgmoat audit sessions` lists an SSH session.
pub fn as_session_start(s: SshSessionStart) -> super::event::SessionStart {
    super::event::SessionStart {
        user: s.user,
        groups: s.groups,
        target: s.target,
        client: s.client,
        // The SSH transport is always encrypted.
        tls: true,
        application_name: None,
        protocol: Some("ssh".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn replay_shows_control_characters_instead_of_obeying_them() {
        assert_eq!(
            shown("ok\u{1b}[3A\u{1b}[2Kfake\u{7}\u{9b}x\tend\u{7f}\r"),
            "ok^[[3A^[[2Kfake^G\\u{9b}x\tend^?^M"
        );
        assert_eq!(shown("plain café"), "plain café");
    }
}
