//! Telling people: every new request goes to the Slack incoming webhook (Block Kit
//! with Approve/Deny buttons) and to the generic JSON webhook, with retries and
//! backoff. A notification that cannot be delivered leaves the request pending and
//! resolvable through the API and CLI; it is logged.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{slack, Approvals, Event, Resolution};
use crate::config::Secret;

const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct Notifier {
    pub slack_webhook: Option<Secret>,
    pub webhook: Option<Secret>,
    http: reqwest::Client,
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

impl Notifier {
    pub fn new(slack_webhook: Option<Secret>, webhook: Option<Secret>) -> Notifier {
        Notifier {
            slack_webhook,
            webhook,
            http: http_client(),
        }
    }

    /// Follow the approvals' events until the gateway stops.
    pub fn spawn(self, approvals: &Arc<Approvals>) {
        let mut events = approvals.subscribe();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(e) => {
                        let n = self.clone();
                        tokio::spawn(async move { n.deliver(e).await });
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => {
                        tracing::warn!("approval notifier fell behind: {k} events not sent");
                    }
                    Err(_) => return,
                }
            }
        });
    }

    async fn deliver(&self, e: Event) {
        match &e {
            Event::Requested(r) => {
                if let Some(url) = &self.slack_webhook {
                    post(
                        &self.http,
                        url.expose(),
                        &slack::message(r),
                        "Slack webhook",
                    )
                    .await;
                }
                if let Some(url) = &self.webhook {
                    let body = json!({"event": "requested", "request": &**r});
                    post(&self.http, url.expose(), &body, "approval webhook").await;
                }
            }
            Event::Lapsed(r) => {
                let outcome = "withdrawn: the pgmoat node holding it stopped";
                if let Some(url) = &self.slack_webhook {
                    post(
                        &self.http,
                        url.expose(),
                        &slack::resolved_message(r, outcome),
                        "Slack webhook",
                    )
                    .await;
                }
                if let Some(url) = &self.webhook {
                    let body =
                        json!({"event": "withdrawn", "by": "", "reason": outcome, "request": &**r});
                    post(&self.http, url.expose(), &body, "approval webhook").await;
                }
            }
            Event::Resolved(r, how) => {
                if let Some(url) = &self.webhook {
                    let (event, by, reason) = describe(how);
                    let body = json!({"event": event, "by": by, "reason": reason, "request": &**r});
                    post(&self.http, url.expose(), &body, "approval webhook").await;
                }
            }
        }
    }

    /// Update the Slack message a button was pressed on.
    pub fn update_slack(&self, response_url: String, body: serde_json::Value) {
        let http = self.http.clone();
        tokio::spawn(async move { post(&http, &response_url, &body, "Slack response_url").await });
    }
}

pub fn describe(how: &Resolution) -> (&'static str, String, String) {
    match how {
        Resolution::Approved { by, reason, .. } => ("approved", by.clone(), reason.clone()),
        Resolution::Denied { by, reason } => ("denied", by.clone(), reason.clone()),
        Resolution::Expired => ("expired", String::new(), String::new()),
        Resolution::Withdrawn => ("withdrawn", String::new(), String::new()),
    }
}

/// POST JSON, retrying with exponential backoff on errors and 5xx/429.
pub async fn post(http: &reqwest::Client, url: &str, body: &serde_json::Value, what: &str) -> bool {
    let mut wait = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        match http.post(url).json(body).send().await {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                tracing::warn!(status = %r.status(), "{what} refused the notification");
                return false;
            }
            Ok(r) => tracing::warn!(attempt, status = %r.status(), "{what} failed"),
            // The error may contain the URL (a secret for webhooks): say only the kind.
            Err(e) => tracing::warn!(
                attempt,
                timeout = e.is_timeout(),
                connect = e.is_connect(),
                "{what} failed"
            ),
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
    tracing::warn!(
        "{what}: giving up after {ATTEMPTS} attempts; the request stays resolvable through the API"
    );
    false
}
