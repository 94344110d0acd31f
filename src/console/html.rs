//! The console's HTML: one layout (skip link, header, navigation, main landmark) and
//! the escaping every value goes through before it is put into a page.

use std::fmt::Write as _;

use super::signin::SignIn;

/// Text made safe for HTML element content and double-quoted attributes alike.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Nothing on a page can hide or reorder what follows it (console review
            // L7): control, invisible and direction-changing characters are shown.
            c if crate::approval::shown::escaped(c) => {
                let _ = std::fmt::Write::write_fmt(&mut out, format_args!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode a value for a URL's query or path segment.
pub fn url_part(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The hidden CSRF field every form carries.
pub fn csrf_field(s: &SignIn) -> String {
    format!(
        r#"<input type="hidden" name="csrf" value="{}">"#,
        esc(&s.csrf)
    )
}

/// A status line: `ok` or `err` text from a redirect, shown once.
pub fn flash(ok: Option<&str>, err: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(m) = ok.filter(|m| !m.is_empty()) {
        let _ = write!(out, r#"<p class="flash ok" role="status">{}</p>"#, esc(m));
    }
    if let Some(m) = err.filter(|m| !m.is_empty()) {
        let _ = write!(out, r#"<p class="flash err" role="alert">{}</p>"#, esc(m));
    }
    out
}

const PAGES: &[(&str, &str)] = &[
    ("approvals", "Approvals"),
    ("sessions", "Sessions"),
    ("audit", "Audit"),
    ("rules", "Rules"),
];

/// A whole page. `current` is the navigation entry shown as the current page;
/// `body` is already-escaped HTML.
pub fn layout(title: &str, current: &str, who: Option<&SignIn>, body: &str) -> String {
    let mut nav = String::new();
    if let Some(s) = who {
        nav.push_str(r#"<nav aria-label="Console"><ul>"#);
        for (path, name) in PAGES {
            let here = if *path == current {
                r#" aria-current="page""#
            } else {
                ""
            };
            let _ = write!(nav, r#"<li><a href="/ui/{path}"{here}>{name}</a></li>"#);
        }
        nav.push_str("</ul></nav>");
        let _ = write!(
            nav,
            r#"<form class="signout" method="post" action="/ui/signout">{}<span>{} <small>({})</small></span> <button type="submit">Sign out</button></form>"#,
            csrf_field(s),
            esc(&s.who),
            esc(s.method)
        );
    }
    format!(
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · pgmoat console</title>
<link rel="stylesheet" href="/ui/assets/console.css">
<script src="/ui/assets/console.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header><span class="brand">pgmoat</span>{nav}</header>
<main id="main" tabindex="-1">
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"##,
        title = esc(title),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_in_text_and_attributes() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(url_part("a b/é"), "a%20b%2F%C3%A9");
        assert_eq!(
            esc("ann\u{202E}nimda\u{1b}[2K\nnext\tline"),
            "ann\\u{202e}nimda\\u{1b}[2K\nnext\tline"
        );
    }
}
