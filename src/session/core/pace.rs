//! How the server counts ReadyForQuerys, followed from the tags going each way: a
//! pure state machine of the session core, fed by the relay, with no I/O.

use crate::protocol::sqlstate;
use crate::session::error::SessionError;

/// What the relay must know to count ReadyForQuerys as the server sends them. Two
/// server rules break "one per Query or Sync": after an error in an extended-protocol
/// batch the server discards everything up to Sync (a Query among it included), and
/// in COPY FROM STDIN it ignores Sync. Miscounting would pair later results with the
/// wrong statements (their masks, approvals and audit records). So a Query or
/// FunctionCall inside an unsynced batch gets a Sync of pgmoat's in front (its answer
/// is kept from the client), and sequences that would need the server's outcome to
/// count are refused: messages pipelined behind a COPY, and anything but copy data,
/// Flush, CopyDone or CopyFail during one. No driver sends those (they wait for
/// CopyInResponse).
#[derive(Default)]
pub(crate) struct Pace {
    /// Extended-protocol messages sent since the last Sync.
    pub(crate) in_batch: bool,
    /// Executes in the open batch, and whether one is its last message so far.
    pub(crate) batch_executes: u32,
    pub(crate) batch_ends_with_execute: bool,
    /// The same of the batch the last Sync closed.
    pub(crate) synced_executes: u32,
    pub(crate) synced_ends_with_execute: bool,
    /// The last Query, Sync or FunctionCall sent.
    pub(crate) last_terminator: u8,
    /// Executes (and simple statements) the server finished in the current cycle.
    pub(crate) executes_done: u32,
    /// The server is in COPY FROM STDIN and the client has not ended it.
    pub(crate) client_copy: bool,
}

fn pipelining(what: &str) -> SessionError {
    SessionError::refused(
        sqlstate::PROTOCOL_VIOLATION,
        format!("pgmoat: {what} is not supported (the server's replies could not be matched)"),
    )
}

impl Pace {
    /// A client message, before it goes on. True: a Sync of pgmoat's must go first.
    pub(crate) fn client(&mut self, tag: u8) -> Result<bool, SessionError> {
        if self.client_copy {
            return match tag {
                b'd' | b'H' => Ok(false),
                b'c' | b'f' => {
                    self.client_copy = false;
                    Ok(false)
                }
                _ => Err(pipelining(
                    "a message other than copy data during COPY FROM STDIN",
                )),
            };
        }
        match tag {
            b'P' | b'B' | b'D' | b'C' => {
                self.in_batch = true;
                self.batch_ends_with_execute = false;
            }
            b'E' => {
                self.in_batch = true;
                self.batch_executes += 1;
                self.batch_ends_with_execute = true;
            }
            b'S' => self.synced(),
            b'Q' | b'F' if self.in_batch => {
                self.synced();
                self.last_terminator = tag;
                return Ok(true);
            }
            b'Q' | b'F' => self.last_terminator = tag,
            _ => {}
        }
        Ok(false)
    }

    fn synced(&mut self) {
        self.synced_executes = std::mem::take(&mut self.batch_executes);
        self.synced_ends_with_execute = std::mem::take(&mut self.batch_ends_with_execute);
        self.in_batch = false;
        self.last_terminator = b'S';
    }

    /// CopyInResponse. Whether the Sync that closed the COPY's batch was already sent
    /// (the server ignores it); an error when other messages are queued behind the COPY.
    pub(crate) fn copy_in_started(&mut self, outstanding: u64) -> Result<bool, SessionError> {
        let behind = || Err(pipelining("pipelining messages behind COPY FROM STDIN"));
        let ignored = match outstanding {
            // `P B E H`: the COPY's batch is still open.
            0 if self.batch_ends_with_execute && self.executes_done + 1 == self.batch_executes => {
                false
            }
            1 if self.in_batch => return behind(),
            // A Query's COPY: its ReadyForQuery comes after the copy.
            1 if self.last_terminator == b'Q' => false,
            // `P B E S`, as tokio-postgres and libpq send it.
            1 if self.last_terminator == b'S'
                && self.synced_ends_with_execute
                && self.executes_done + 1 == self.synced_executes =>
            {
                true
            }
            _ => return behind(),
        };
        self.client_copy = true;
        Ok(ignored)
    }

    /// A server message, seen for the first time. True: the server ignored the Sync
    /// behind a COPY's Execute (one ReadyForQuery fewer is due). The scanners and the
    /// synchronous pass both count through here, so they cannot count differently.
    pub(crate) fn server(&mut self, tag: u8, outstanding: u64) -> Result<bool, SessionError> {
        match tag {
            b'C' | b's' | b'I' => self.executes_done += 1,
            // The Sync sent behind the COPY's Execute is ignored by the server in
            // copy mode: the one after CopyDone is answered.
            b'G' => return self.copy_in_started(outstanding),
            // The server left copy mode (the data failed): Syncs count again.
            b'E' => self.client_copy = false,
            b'Z' => self.executes_done = 0,
            _ => {}
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed client tags; the ones that asked for a Sync of pgmoat's first.
    fn send(p: &mut Pace, tags: &[u8]) -> Vec<u8> {
        tags.iter()
            .copied()
            .filter(|&t| p.client(t).expect("accepted"))
            .collect()
    }

    #[test]
    fn a_query_inside_an_unsynced_batch_gets_a_sync_first() {
        for (script, synced) in [
            (&b"Q"[..], &b""[..]),
            (b"PBES", b""),
            (b"PBEQ", b"Q"),
            (b"PBEF", b"F"),
            (b"PBESQ", b""),
            (b"PBEHQPBESQ", b"Q"),
        ] {
            let mut p = Pace::default();
            assert_eq!(send(&mut p, script), synced, "{:?}", script);
        }
    }

    #[test]
    fn copy_from_stdin_after_a_synced_execute_ignores_that_sync() {
        // libpq and tokio-postgres: P B E S, and the Sync is ignored in copy mode.
        let mut p = Pace::default();
        send(&mut p, b"PBES");
        assert_eq!(p.server(b'1', 1).ok(), Some(false));
        assert_eq!(p.server(b'2', 1).ok(), Some(false));
        assert_eq!(p.server(b'G', 1).ok(), Some(true));
        assert!(p.client(b'd').is_ok() && p.client(b'H').is_ok());
        assert!(
            p.client(b'S').is_err(),
            "a Sync during COPY cannot be counted"
        );
        let mut p = Pace::default();
        send(&mut p, b"PBES");
        p.server(b'G', 1).unwrap();
        assert_eq!(p.client(b'c').ok(), Some(false));
        assert_eq!(send(&mut p, b"S"), b"");
    }

    #[test]
    fn a_querys_copy_and_an_open_batchs_copy_ignore_nothing() {
        let mut p = Pace::default();
        send(&mut p, b"Q");
        assert_eq!(p.server(b'G', 1).ok(), Some(false));
        let mut p = Pace::default();
        send(&mut p, b"PBEH");
        assert_eq!(p.server(b'G', 0).ok(), Some(false));
    }

    #[test]
    fn messages_pipelined_behind_a_copy_are_refused() {
        let mut p = Pace::default();
        send(&mut p, b"PBESQ");
        assert!(p.server(b'G', 2).is_err());
        let mut p = Pace::default();
        send(&mut p, b"PBESPB");
        assert!(p.server(b'G', 1).is_err());
    }

    #[test]
    fn an_error_ends_copy_mode_and_ready_for_query_resets_the_count() {
        let mut p = Pace::default();
        send(&mut p, b"PBES");
        p.server(b'G', 1).unwrap();
        assert_eq!(p.server(b'E', 1).ok(), Some(false));
        assert!(!p.client_copy);
        assert_eq!(p.client(b'S').ok(), Some(false));
        p.server(b'C', 1).unwrap();
        assert_eq!(p.executes_done, 1);
        p.server(b'Z', 1).unwrap();
        assert_eq!(p.executes_done, 0);
    }
}
