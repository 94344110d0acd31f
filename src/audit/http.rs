//! The audit webhook sink's HTTP client: one JSON POST per batch, a 2xx status is
//! success. reqwest (already in the tree for OIDC, Slack and `pgmoat login`) with
//! rustls and the platform's roots; no redirects. Errors never echo the URL, which may
//! carry a token.

use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

pub struct WebhookClient {
    http: reqwest::Client,
    url: reqwest::Url,
}

impl WebhookClient {
    /// Accepts `http://...` and `https://...` URLs.
    pub fn new(url: &str) -> Result<WebhookClient, String> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| format!("audit webhook URL is not a URL ({e})"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("audit webhook URL must start with http:// or https://".into());
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err("audit webhook URL has no host".into());
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("audit webhook URL: user:password@ is not supported".into());
        }
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("pgmoat")
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {}", e.without_url()))?;
        Ok(WebhookClient { http, url: parsed })
    }

    pub async fn post_json(&self, body: &[u8]) -> Result<(), String> {
        let resp = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    "the webhook did not answer in time".to_string()
                } else {
                    e.without_url().to_string()
                }
            })?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the webhook answered HTTP {}", status.as_u16()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(WebhookClient::new("http://127.0.0.1:8080/hook?x=1").is_ok());
        assert!(WebhookClient::new("https://example.com").is_ok());
        assert!(WebhookClient::new("ftp://x").is_err());
        assert!(WebhookClient::new("http://:9/").is_err());
        for bad in [
            "http://h:notaport/secret-token",
            "http://user:secret-token@h/",
            "nonsense secret-token",
        ] {
            let e = WebhookClient::new(bad).err().unwrap();
            assert!(!e.contains("secret-token"), "{e}");
        }
    }

    /// A refused connection names no URL (it may carry a token).
    #[tokio::test]
    async fn errors_never_echo_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = WebhookClient::new(&format!("http://127.0.0.1:{port}/hook/secret-token")).unwrap();
        let e = c.post_json(b"[]").await.unwrap_err();
        assert!(!e.contains("secret-token"), "{e}");
    }
}
