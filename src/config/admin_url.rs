//! `admin.public_url`: the address browsers reach the admin listener (and its
//! console) at, when that is not the listener itself (a TLS proxy, a DNS name). The
//! console's OIDC redirect URI is built from it, never from a request's `Host`.

use super::validate::Validator;
use super::ConfigError;

impl Validator<'_> {
    /// An absolute http(s) URL with a host and no query, fragment or credentials;
    /// returned without a trailing `/` so paths can be appended.
    pub(super) fn admin_public_url(&self, raw: &str) -> Result<String, ConfigError> {
        let bad = |why: &str| self.err("admin.public_url", why);
        let url = reqwest::Url::parse(raw.trim()).map_err(|e| bad(&format!("not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("must be an http:// or https:// URL"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("must name a host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("must not have a query or fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not carry credentials"));
        }
        Ok(url.as_str().trim_end_matches('/').to_owned())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn parse(url: &str) -> Result<Option<String>, String> {
        let yaml = format!(
            "listen: 127.0.0.1:6432\nadmin: {{ listen: 127.0.0.1:9187, public_url: {url:?} }}\n\
             targets: {{ demo: {{ host: 127.0.0.1, user: app }} }}\n"
        );
        crate::Config::from_yaml(&yaml, "t.yaml", Path::new("/"), &|_: &str| None)
            .map(|c| c.admin.and_then(|a| a.public_url))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn public_url_is_an_http_url_without_query() {
        assert_eq!(
            parse("https://pgmoat.example.com/").unwrap().as_deref(),
            Some("https://pgmoat.example.com")
        );
        assert_eq!(
            parse("http://127.0.0.1:9187/admin").unwrap().as_deref(),
            Some("http://127.0.0.1:9187/admin")
        );
        for bad in [
            "ftp://x.example",
            "https://x.example/?next=evil",
            "https://x.example/#f",
            "https://u:p@x.example",
            "not a url",
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains("admin.public_url"), "{bad}: {e}");
        }
    }
}
