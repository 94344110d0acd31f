//! Copies of the trail outside the store: stdout, a webhook, syslog.
//!
//! Each sink is a task with its own bounded queue. The writer offers it each record
//! once the record is durable locally; a full queue drops the copy (counted) instead of
//! waiting, so a slow or dead sink never holds up a statement, and the local store,
//! which is the evidence, is complete regardless. The head export that follows lets
//! the receiver see how far the chain really goes.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::error::StoreError;
use super::http::WebhookClient;
use super::syslog::Syslog;
use crate::config::AuditSink;
use crate::metrics::Metrics;

/// Records a sink may have queued before copies are dropped.
const SINK_QUEUE: usize = 16 * 1024;
const WEBHOOK_BATCH: usize = 256;

pub(crate) struct SinkHandle {
    tx: mpsc::Sender<Arc<str>>,
}

impl SinkHandle {
    pub fn offer(&self, line: Arc<str>, metrics: &Metrics) {
        match self.tx.try_send(line) {
            Ok(()) => {
                metrics.audit_sink_lag.fetch_add(1, Relaxed);
            }
            Err(_) => {
                metrics.audit_sink_dropped.fetch_add(1, Relaxed);
            }
        }
    }
}

/// Start the sink tasks (on the caller's runtime).
pub(crate) fn start(
    specs: &[AuditSink],
    metrics: &Arc<Metrics>,
) -> Result<(Vec<SinkHandle>, Vec<JoinHandle<()>>), StoreError> {
    let mut handles = Vec::new();
    let mut tasks = Vec::new();
    for spec in specs {
        let (tx, rx) = mpsc::channel::<Arc<str>>(SINK_QUEUE);
        let m = Arc::clone(metrics);
        let task = match spec {
            AuditSink::Stdout => tokio::spawn(stdout(rx, m)),
            AuditSink::Webhook { url } => {
                let client = WebhookClient::new(url.expose()).map_err(StoreError::Invalid)?;
                tokio::spawn(webhook(rx, client, m))
            }
            AuditSink::Syslog { address } => {
                let s = Syslog::new(address).map_err(StoreError::Invalid)?;
                tokio::spawn(syslog(rx, s, m))
            }
        };
        handles.push(SinkHandle { tx });
        tasks.push(task);
    }
    Ok((handles, tasks))
}

/// Take what is queued now, up to `max`, after waiting for the first.
async fn next_batch(rx: &mut mpsc::Receiver<Arc<str>>, max: usize) -> Option<Vec<Arc<str>>> {
    let first = rx.recv().await?;
    let mut v = vec![first];
    while v.len() < max {
        match rx.try_recv() {
            Ok(l) => v.push(l),
            Err(_) => break,
        }
    }
    Some(v)
}

fn delivered(metrics: &Metrics, n: usize) {
    metrics.audit_sink_lag.fetch_sub(n as i64, Relaxed);
}

async fn stdout(mut rx: mpsc::Receiver<Arc<str>>, metrics: Arc<Metrics>) {
    let mut out = tokio::io::stdout();
    let mut buf = Vec::new();
    while let Some(batch) = next_batch(&mut rx, 1024).await {
        buf.clear();
        for l in &batch {
            buf.extend_from_slice(l.as_bytes());
            buf.push(b'\n');
        }
        let ok = out.write_all(&buf).await.is_ok() && out.flush().await.is_ok();
        delivered(&metrics, batch.len());
        if !ok {
            metrics
                .audit_sink_dropped
                .fetch_add(batch.len() as u64, Relaxed);
        }
    }
}

/// Batched JSON POSTs (`[record, record, ...]`), retried with exponential backoff;
/// a batch that still fails after the last try is dropped and counted.
async fn webhook(mut rx: mpsc::Receiver<Arc<str>>, client: WebhookClient, metrics: Arc<Metrics>) {
    const TRIES: u32 = 6;
    while let Some(batch) = next_batch(&mut rx, WEBHOOK_BATCH).await {
        let mut body = String::with_capacity(batch.iter().map(|l| l.len() + 1).sum::<usize>() + 2);
        body.push('[');
        for (i, l) in batch.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(l);
        }
        body.push(']');
        let mut delay = Duration::from_millis(100);
        let mut sent = false;
        for attempt in 1..=TRIES {
            match client.post_json(body.as_bytes()).await {
                Ok(()) => {
                    sent = true;
                    break;
                }
                Err(e) => {
                    tracing::warn!(attempt, "audit webhook sink: {e}");
                    if attempt < TRIES {
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(10));
                    }
                }
            }
        }
        delivered(&metrics, batch.len());
        if !sent {
            metrics
                .audit_sink_dropped
                .fetch_add(batch.len() as u64, Relaxed);
        }
    }
}

async fn syslog(mut rx: mpsc::Receiver<Arc<str>>, mut s: Syslog, metrics: Arc<Metrics>) {
    while let Some(batch) = next_batch(&mut rx, 1024).await {
        let mut failed = 0;
        for l in &batch {
            if let Err(e) = s.send(l).await {
                failed += 1;
                tracing::warn!("audit syslog sink: {e}");
            }
        }
        delivered(&metrics, batch.len());
        metrics.audit_sink_dropped.fetch_add(failed, Relaxed);
    }
}
