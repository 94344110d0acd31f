//! The recorder beside the relay: the relay hands each chunk over (a reference-counted
//! `Bytes`, no copy) with the time it passed, and a task of its own hashes, decodes and
//! writes it, so on a multi-core runtime recording runs beside the SSH crypto instead
//! of after it on the relay's task.
//!
//! Memory stays bounded: the hand-over queue holds at most [`QUEUE`] chunks (each at
//! most one SSH packet, 32 KiB from OpenSSH), and a relay whose recorder falls behind
//! waits for it, which stops it reading from its peer in turn. A recorder that fails
//! stops taking chunks, so the relay's next hand-over fails and the channel ends:
//! nothing runs unrecorded for more than the queue's few chunks.

use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Finished, Recorder};

/// Chunks waiting to be recorded, per channel: at most ~2 MiB, about one SSH window.
const QUEUE: usize = 64;

enum Event {
    Output(Instant, Bytes),
    Input(Instant, Bytes),
    Resize(Instant, u32, u32),
}

/// A running recording: the place to hand chunks over, and the task writing them.
pub struct Recording {
    tap: Tap,
    task: JoinHandle<std::io::Result<Finished>>,
}

/// Where the relay hands chunks over; cheap to clone, one per direction.
#[derive(Clone)]
pub struct Tap(mpsc::Sender<Event>);

impl Recording {
    /// Run `recorder` on a task of its own (the caller must be inside a tokio runtime).
    pub fn start(mut recorder: Recorder) -> Recording {
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let written = match event {
                    Event::Output(at, data) => recorder.output_at(at, &data),
                    Event::Input(at, data) => recorder.input_at(at, &data),
                    Event::Resize(at, cols, rows) => recorder.resize_at(at, cols, rows),
                };
                if let Err(e) = written {
                    // Dropping the queue makes the relay's next hand-over fail.
                    tracing::error!("ssh recording failed, ending the channel: {e}");
                    return Err(e);
                }
            }
            recorder.finish()
        });
        Recording { tap: Tap(tx), task }
    }

    pub fn tap(&self) -> Tap {
        self.tap.clone()
    }

    /// Wait until every chunk handed over is written, close the file: its name, its
    /// SHA-256 and the streams' digests. Every [`Tap`] must be dropped first, or this
    /// waits for them.
    pub async fn finish(self) -> std::io::Result<Finished> {
        drop(self.tap);
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(format!(
                "the recorder task failed: {e}"
            ))),
        }
    }
}

impl Tap {
    /// Hand over output bytes; false when the recording has failed.
    pub async fn output(&self, data: Bytes) -> bool {
        self.0
            .send(Event::Output(Instant::now(), data))
            .await
            .is_ok()
    }

    /// Hand over input bytes; false when the recording has failed.
    pub async fn input(&self, data: Bytes) -> bool {
        self.0
            .send(Event::Input(Instant::now(), data))
            .await
            .is_ok()
    }

    /// Hand over a window resize; false when the recording has failed.
    pub async fn resize(&self, cols: u32, rows: u32) -> bool {
        self.0
            .send(Event::Resize(Instant::now(), cols, rows))
            .await
            .is_ok()
    }
}
