//! The rules page: the loaded rules with the file:line each is written at, a draft
//! validated as `POST /api/v1/rules/validate` and `pgmoat check` do (the same
//! compiler), and an explain playground (the same `explain` as `pgmoat explain`).

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::html::{csrf_field, esc, layout};
use super::signin::SignIn;
use super::{field, html_response, ConsoleState, Fields};
use crate::admin::AdminTenant;
use crate::policy::{RuleSet, Subject};

/// The tenant `tenant` names among the visible ones (the first when not named).
fn pick<'a>(st: &'a ConsoleState, who: &SignIn, name: &str) -> Option<&'a AdminTenant> {
    let mut all = st.admin.visible(who.scope);
    if name.is_empty() {
        all.next()
    } else {
        all.find(|t| t.name == name)
    }
}

/// What the forms were given, kept so a result shows beside its input.
#[derive(Default)]
struct Given {
    draft: String,
    sql: String,
    user: String,
    groups: String,
    target: String,
}

fn render(
    st: &ConsoleState,
    who: &SignIn,
    tenant: &AdminTenant,
    given: &Given,
    validated: &str,
    explained: &str,
) -> String {
    let set = tenant.rules.current();
    let mut rows = String::new();
    for r in &set.rules {
        let _ = writeln!(
            rows,
            "<tr><td>{}</td><td><span class=\"action {a}\">{a}</span></td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&r.id),
            esc(&r.approvers.join(", ")),
            esc(&r.description),
            esc(&r.source),
            a = esc(r.action.as_str()),
        );
    }
    let _ = writeln!(
        rows,
        "<tr><td>default</td><td><span class=\"action {a}\">{a}</span></td><td></td><td>What applies when no rule matches.</td><td></td></tr>",
        a = esc(set.default.as_str())
    );
    let tenants: Vec<&AdminTenant> = st.admin.visible(who.scope).collect();
    let mut picker = String::new();
    let tenant_field = format!(
        r#"<input type="hidden" name="tenant" value="{}">"#,
        esc(&tenant.name)
    );
    if tenants.len() > 1 {
        picker.push_str(r#"<form method="get" action="/ui/rules" class="filters"><label for="tenant">Tenant</label><select id="tenant" name="tenant">"#);
        for t in &tenants {
            let sel = if t.name == tenant.name {
                " selected"
            } else {
                ""
            };
            let _ = write!(picker, "<option{sel}>{}</option>", esc(&t.name));
        }
        picker.push_str(r#"</select><button type="submit">Show</button></form>"#);
    }
    let files = set
        .files
        .iter()
        .map(|f| esc(&f.display().to_string()))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"{picker}
<section aria-labelledby="loaded-h">
<h2 id="loaded-h">Loaded rules</h2>
<p class="hint">From {files}.</p>
<table>
<caption class="visually-hidden">Loaded rules</caption>
<thead><tr><th scope="col">Id</th><th scope="col">Action</th><th scope="col">Approvers</th><th scope="col">Description</th><th scope="col">Where</th></tr></thead>
<tbody>
{rows}</tbody>
</table>
</section>
<div class="two">
<section class="card" aria-labelledby="validate-h">
<h2 id="validate-h">Validate a draft</h2>
<form method="post" action="/ui/rules/validate">{csrf}{tenant_field}
<label for="draft">Rules YAML</label>
<textarea id="draft" name="draft" rows="12" spellcheck="false">{draft}</textarea>
<button type="submit">Validate</button>
</form>
{validated}
</section>
<section class="card" aria-labelledby="explain-h">
<h2 id="explain-h">Explain</h2>
<form method="post" action="/ui/rules/explain">{csrf}{tenant_field}
<label for="sql">SQL</label>
<textarea id="sql" name="sql" rows="4" spellcheck="false">{sql}</textarea>
<label for="user">As identity</label><input id="user" name="user" value="{user}">
<label for="groups">Groups <small>(comma-separated)</small></label><input id="groups" name="groups" value="{groups}">
<label for="target">Target</label><input id="target" name="target" value="{target}">
<button type="submit">Explain</button>
</form>
{explained}
</section>
</div>"#,
        csrf = csrf_field(who),
        draft = esc(&given.draft),
        sql = esc(&given.sql),
        user = esc(&given.user),
        groups = esc(&given.groups),
        target = esc(&given.target),
    )
}

fn respond(
    st: &ConsoleState,
    who: &SignIn,
    tenant_name: &str,
    given: &Given,
    validated: &str,
    explained: &str,
) -> Response {
    let Some(tenant) = pick(st, who, tenant_name) else {
        return html_response(
            StatusCode::NOT_FOUND,
            layout("Rules", "rules", Some(who), "<p>No such tenant.</p>"),
        );
    };
    let body = render(st, who, tenant, given, validated, explained);
    html_response(StatusCode::OK, layout("Rules", "rules", Some(who), &body))
}

pub async fn page(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let who = match st.viewer(&headers) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let tenant = q.get("tenant").map(String::as_str).unwrap_or("");
    respond(&st, &who, tenant, &Given::default(), "", "")
}

pub async fn validate(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
    fields: Fields,
) -> Response {
    let who = match st.changer(&headers, &fields) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let draft = field(&fields, "draft").to_owned();
    let text = draft.clone();
    let outcome =
        tokio::task::spawn_blocking(move || RuleSet::from_sources(&[("draft".to_string(), text)]))
            .await;
    let result = match outcome {
        Ok(Ok(set)) => format!(
            r#"<p class="flash ok" role="status">ok: {} rule{}, {} mask{}, default {}.</p>"#,
            set.rules.len(),
            if set.rules.len() == 1 { "" } else { "s" },
            set.masks.len(),
            if set.masks.len() == 1 { "" } else { "s" },
            esc(set.default.as_str())
        ),
        Ok(Err(errors)) => format!(
            r#"<div class="flash err" role="alert"><p>The draft has {} error{}:</p><pre>{}</pre></div>"#,
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            esc(&errors.join("\n"))
        ),
        Err(_) => r#"<p class="flash err" role="alert">The check failed.</p>"#.to_owned(),
    };
    let given = Given {
        draft,
        ..Given::default()
    };
    respond(&st, &who, field(&fields, "tenant"), &given, &result, "")
}

pub async fn explain(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
    fields: Fields,
) -> Response {
    let who = match st.changer(&headers, &fields) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let given = Given {
        sql: field(&fields, "sql").to_owned(),
        user: field(&fields, "user").trim().to_owned(),
        groups: field(&fields, "groups").to_owned(),
        target: field(&fields, "target").trim().to_owned(),
        ..Given::default()
    };
    let tenant_name = field(&fields, "tenant");
    let Some(tenant) = pick(&st, &who, tenant_name) else {
        return respond(&st, &who, tenant_name, &given, "", "");
    };
    let rules = tenant.rules.current();
    let (sql, user, target) = (given.sql.clone(), given.user.clone(), given.target.clone());
    let groups: Vec<String> = given
        .groups
        .split(',')
        .map(|g| g.trim().to_owned())
        .filter(|g| !g.is_empty())
        .collect();
    let report = tokio::task::spawn_blocking(move || {
        let who = Subject {
            user: &user,
            groups: &groups,
            target: &target,
            search_path_changed: false,
        };
        crate::explain::explain(&rules, &sql, &who).render()
    })
    .await;
    let explained = match report {
        Ok(text) => format!(
            r#"<pre class="report" role="status" aria-label="Explain result">{}</pre>"#,
            esc(&text)
        ),
        Err(_) => r#"<p class="flash err" role="alert">Explain failed.</p>"#.to_owned(),
    };
    respond(&st, &who, tenant_name, &given, "", &explained)
}
