//! Authentication, budgets (ten-secondly, secondly, daily), the token endpoint and routing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use super::behaviour::{email_events, forms, missing_scopes, page_views};
use super::endpoints::{
    association_page, associations, batch_read, batch_update, changes, list_objects, read_object, submissions,
    validation,
};
use super::engagements::create;
use super::search::search;
use super::{DAY_MS, HubSpotState, error, normalize_type};
use crate::sandbox::portal::{CONTACT_ID_BASE, iso};
use crate::sandbox::{Shared, correlation_id, form_pairs, json, lock};

/// Which budget a request spends.
#[derive(PartialEq)]
enum Budget {
    General,
    Search,
}

fn endpoint(method: &Method, segs: &[&str]) -> (String, Budget) {
    let name = match (method.as_str(), segs) {
        ("GET", ["crm", "v3", "objects", t]) => format!("{t}.list"),
        ("GET", ["crm", "v3", "objects", t, _]) => format!("{t}.read"),
        ("PATCH", ["crm", "v3", "objects", t, _]) => format!("{t}.update"),
        ("GET", ["crm", "v4", "objects", f, _, "associations", t]) => format!("associations.{f}.{t}.page"),
        ("GET", ["events", "v3", "events"]) => "events.list".into(),
        ("GET", ["email", "public", "v1", "events"]) => "email_events.list".into(),
        ("POST", ["crm", "v3", "objects", t]) => format!("{t}.create"),
        ("POST", ["crm", "v3", "objects", t, "batch", "read"]) => format!("{t}.batch_read"),
        ("POST", ["crm", "v3", "objects", t, "batch", "update"]) => format!("{t}.batch_update"),
        ("POST", ["crm", "v3", "objects", t, "search"]) => return (format!("{t}.search"), Budget::Search),
        ("POST", ["crm", "v4", "associations", f, t, "batch", "read"]) => format!("associations.{f}.{t}"),
        ("GET", ["crm", "v3", "owners", ..]) => "owners.list".into(),
        ("GET", ["crm", "v3", "properties", _, "groups"]) => "properties.groups".into(),
        ("POST", ["crm", "v3", "properties", _, "groups"]) => "properties.create_group".into(),
        ("POST", ["crm", "v3", "properties", _, "batch", "create"]) => "properties.batch_create".into(),
        ("GET", ["crm", "v3", "properties", _]) => "properties.list".into(),
        ("GET", ["marketing", "v3", "forms"]) => "forms.list".into(),
        ("GET", ["form-integrations", "v1", "submissions", "forms", _]) => "forms.submissions".into(),
        _ => "unknown".into(),
    };
    (name, Budget::General)
}

/// Serves one HubSpot request.
pub(crate) async fn serve(shared: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Response {
    let path = uri.path().trim_end_matches('/');
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let query = form_pairs(uri.query().unwrap_or(""));
    if method == Method::POST && path == "/oauth/v1/token" {
        shared.count("hubspot", "oauth.token");
        return token(shared, body);
    }
    let (name, budget) = endpoint(method, &segs);
    shared.count("hubspot", &name);
    if let Some(r) = shared.delay_or_fault("hubspot").await {
        return r;
    }
    let cfg = &shared.config;
    let now = shared.clock.now_ms();
    let mut state = lock(&shared.hubspot);
    // Authentication.
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or(v.strip_prefix("bearer ")))
        .unwrap_or("");
    let private_app = bearer == cfg.hubspot_private_app_token;
    if !private_app {
        match state.tokens.get(bearer) {
            Some(&exp) if exp > now => {}
            Some(&exp) => {
                shared.count_fault(crate::sandbox::fault_kind::EXPIRED);
                return json(
                    401,
                    &json!({"status": "error",
                        "message": format!("The OAuth token used to make this call expired {} second(s) ago.", (now - exp) / 1000),
                        "correlationId": correlation_id(now), "category": "EXPIRED_AUTHENTICATION",
                        "context": {"expire time": [iso(exp)]}}),
                );
            }
            None => {
                return error(
                    401,
                    "INVALID_AUTHENTICATION",
                    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                    now,
                );
            }
        }
    }
    // Budgets.
    let real = Instant::now();
    let day = now.div_euclid(DAY_MS);
    if state.day != day {
        state.day = day;
        state.daily_used = 0;
    }
    let burst = state.burst_max;
    let window = state.burst_window;
    while state.burst.front().is_some_and(|t| real.duration_since(*t) >= window) {
        state.burst.pop_front();
    }
    while state
        .search
        .front()
        .is_some_and(|t| real.duration_since(*t) >= Duration::from_secs(1))
    {
        state.search.pop_front();
    }
    let limited = |msg: &str, policy: &str| {
        json!({"status": "error", "message": msg, "errorType": "RATE_LIMIT",
            "correlationId": correlation_id(now), "policyName": policy, "requestId": correlation_id(now)})
    };
    let mut rate_headers = Vec::new();
    if shared.in_rate_limit_burst() {
        let mut r = json(
            429,
            &limited("You have reached your ten secondly limit.", "TEN_SECONDLY_ROLLING"),
        );
        let left = cfg.hubspot_daily_limit.saturating_sub(state.daily_used);
        add_rate_headers(&mut r, (burst, window), 0, private_app, cfg.hubspot_daily_limit, left);
        return r;
    }
    if state.daily_used >= cfg.hubspot_daily_limit {
        let mut r = json(429, &limited("You have reached your daily limit.", "DAILY"));
        add_rate_headers(
            &mut r,
            (burst, window),
            burst.saturating_sub(state.burst.len() as u32),
            private_app,
            cfg.hubspot_daily_limit,
            0,
        );
        return r;
    }
    if budget == Budget::Search {
        if state.search.len() as u32 >= cfg.hubspot_search_per_second {
            return json(429, &limited("You have reached your secondly limit.", "SECONDLY"));
        }
        state.search.push_back(real);
    } else {
        if state.burst.len() as u32 >= burst {
            let mut r = json(
                429,
                &limited("You have reached your ten secondly limit.", "TEN_SECONDLY_ROLLING"),
            );
            add_rate_headers(
                &mut r,
                (burst, window),
                0,
                private_app,
                cfg.hubspot_daily_limit,
                cfg.hubspot_daily_limit - state.daily_used,
            );
            return r;
        }
        state.burst.push_back(real);
        rate_headers.push(burst.saturating_sub(state.burst.len() as u32));
    }
    state.daily_used += 1;
    let daily_left = cfg.hubspot_daily_limit - state.daily_used;
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return error(400, "VALIDATION_ERROR", &format!("Invalid input JSON: {e}"), now),
        }
    };
    let raw_query = uri.query().unwrap_or("");
    let mut response = route(&mut state, method, &segs, &query, raw_query, &body, now);
    let events = state.take_events();
    drop(state);
    shared.deliver(events);
    let write = name == "contacts.batch_update" || name == "contacts.update" || name.ends_with(".create");
    if write && response.status().is_success() && shared.lose_answer() {
        // Applied; the answer never arrives (a load balancer's 502 in its place).
        return json(
            502,
            &json!({"status": "error", "message": "Bad Gateway (sandbox fault: applied, answer lost)",
                "correlationId": correlation_id(now), "category": "BAD_GATEWAY"}),
        );
    }
    if let Some(remaining) = rate_headers.pop() {
        add_rate_headers(
            &mut response,
            (burst, window),
            remaining,
            private_app,
            cfg.hubspot_daily_limit,
            daily_left,
        );
    }
    response
}

fn add_rate_headers(
    r: &mut Response,
    (max, window): (u32, Duration),
    remaining: u32,
    private_app: bool,
    daily: u64,
    daily_left: u64,
) {
    let h = r.headers_mut();
    let mut put = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    put("x-hubspot-ratelimit-max", max.to_string());
    put("x-hubspot-ratelimit-remaining", remaining.to_string());
    put(
        "x-hubspot-ratelimit-interval-milliseconds",
        window.as_millis().to_string(),
    );
    // HubSpot leaves the daily headers out on OAuth-authorized requests.
    if private_app {
        put("x-hubspot-ratelimit-daily", daily.to_string());
        put("x-hubspot-ratelimit-daily-remaining", daily_left.to_string());
    }
}

fn token(shared: &Shared, body: &Bytes) -> Response {
    let cfg = &shared.config;
    let now = shared.clock.now_ms();
    let form = form_pairs(&String::from_utf8_lossy(body));
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if get("client_id") != cfg.hubspot_client_id || get("client_secret") != cfg.hubspot_client_secret {
        return json(
            400,
            &json!({"status": "BAD_CLIENT_ID", "message": "missing or unknown client id",
                "correlationId": correlation_id(now), "error": "invalid_client", "error_description": "missing or unknown client id"}),
        );
    }
    if get("grant_type") != "refresh_token" || get("refresh_token") != cfg.hubspot_refresh_token {
        return json(
            400,
            &json!({"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token",
                "correlationId": correlation_id(now), "error": "invalid_grant", "error_description": "missing or unknown refresh token"}),
        );
    }
    let mut state = lock(&shared.hubspot);
    state.issued += 1;
    let access = format!(
        "sandbox-{}-{:016x}",
        state.issued,
        super::super::portal::mix(cfg.seed, 0xACC, state.issued)
    );
    let lifetime = cfg.hubspot_token_lifetime;
    state.tokens.insert(access.clone(), now + lifetime.as_millis() as i64);
    json(
        200,
        &json!({"token_type": "bearer", "access_token": access, "refresh_token": cfg.hubspot_refresh_token,
            "expires_in": lifetime.as_secs(), "hub_id": cfg.hubspot_portal_id}),
    )
}

fn route(
    s: &mut HubSpotState,
    method: &Method,
    segs: &[&str],
    query: &BTreeMap<String, String>,
    raw_query: &str,
    body: &Value,
    now: i64,
) -> Response {
    let unknown_type = |t: &str| {
        error(
            400,
            "VALIDATION_ERROR",
            &format!("Unable to infer object type from: {t}"),
            now,
        )
    };
    match (method.as_str(), segs) {
        ("GET", ["crm", "v3", "objects", t]) => match normalize_type(t) {
            Some(ty) => list_objects(s, ty, query, raw_query, now),
            None => unknown_type(t),
        },
        ("GET", ["crm", "v3", "objects", t, id]) => match normalize_type(t) {
            Some(ty) => read_object(s, ty, id, query, raw_query, now),
            None => unknown_type(t),
        },
        ("PATCH", ["crm", "v3", "objects", "contacts", id]) => {
            let Some(i) = s.contact_index(id) else {
                return error(
                    404,
                    "OBJECT_NOT_FOUND",
                    &format!("resource not found: no contact has id {id}"),
                    now,
                );
            };
            let changes = changes(&body["properties"]);
            match s.update(i, &changes, now) {
                Ok(()) => {
                    let wanted: Vec<String> = changes.keys().cloned().collect();
                    json(
                        200,
                        &s.object_json("contacts", u64::from(i) + CONTACT_ID_BASE, &s.contact_props(i), &wanted),
                    )
                }
                Err((code, message, property)) => validation(&code, &message, Some(&property), now),
            }
        }
        ("GET", ["crm", "v4", "objects", from, id, "associations", to]) => {
            match (normalize_type(from), normalize_type(to)) {
                (Some(f), Some(t)) => association_page(s, f, id, t, query, now),
                (None, _) => unknown_type(from),
                (_, None) => unknown_type(to),
            }
        }
        ("GET", ["events", "v3", "events"]) => match s.tier {
            t if t.has_event_apis() => page_views(s, query, now),
            t => missing_scopes(
                "analytics.behavioral_events.read",
                "event analytics API",
                t.as_str(),
                now,
            ),
        },
        ("GET", ["email", "public", "v1", "events"]) => match s.tier {
            t if t.has_event_apis() => email_events(s, query, now),
            t => missing_scopes("content", "email events API", t.as_str(), now),
        },
        ("POST", ["crm", "v3", "objects", t]) => match normalize_type(t) {
            Some(ty) if !matches!(ty, "contacts" | "companies") => create(s, ty, body, now),
            Some(ty) => error(
                405,
                "METHOD_NOT_ALLOWED",
                &format!("The sandbox does not create {ty} through the API"),
                now,
            ),
            None => unknown_type(t),
        },
        ("POST", ["crm", "v3", "objects", t, "batch", "read"]) => match normalize_type(t) {
            Some(ty) => batch_read(s, ty, body, now),
            None => error(
                400,
                "VALIDATION_ERROR",
                &format!("Unable to infer object type from: {t}"),
                now,
            ),
        },
        ("POST", ["crm", "v3", "objects", "contacts", "batch", "update"]) => batch_update(s, body, now),
        ("POST", ["crm", "v3", "objects", t, "search"]) => match normalize_type(t) {
            Some(ty) => search(s, ty, body, now),
            None => error(
                400,
                "VALIDATION_ERROR",
                &format!("Unable to infer object type from: {t}"),
                now,
            ),
        },
        ("POST", ["crm", "v4", "associations", from, to, "batch", "read"]) => {
            match (normalize_type(from), normalize_type(to)) {
                (Some(f), Some(t)) => associations(s, f, t, body, now),
                _ => error(400, "VALIDATION_ERROR", "Unknown object type", now),
            }
        }
        ("GET", ["crm", "v3", "owners", ..]) => {
            let results: Vec<Value> = if query.get("archived").map(String::as_str) == Some("true") {
                vec![]
            } else {
                s.portal
                    .owners
                    .iter()
                    .enumerate()
                    .map(|(i, (id, first, last, email))| {
                        json!({"id": id, "email": email, "firstName": first, "lastName": last,
                            "userId": 9_000_001 + i, "createdAt": iso(s.portal.now_ms - 400 * DAY_MS),
                            "updatedAt": iso(s.portal.now_ms - 400 * DAY_MS), "archived": false, "teams": []})
                    })
                    .collect()
            };
            json(200, &json!({"results": results}))
        }
        ("GET", ["crm", "v3", "properties", object, "groups"]) if *object == "contacts" => {
            json(200, &json!({"results": s.groups}))
        }
        ("POST", ["crm", "v3", "properties", object, "groups"]) if *object == "contacts" => {
            let name = body["name"].as_str().unwrap_or("");
            if name.is_empty() {
                return error(400, "VALIDATION_ERROR", "name is required", now);
            }
            if s.groups.iter().any(|g| g["name"] == name) {
                return error(
                    409,
                    "CONFLICT",
                    &format!("A property group named '{name}' already exists."),
                    now,
                );
            }
            let g =
                json!({"name": name, "label": body["label"], "displayOrder": body["displayOrder"], "archived": false});
            s.groups.push(g.clone());
            json(201, &g)
        }
        ("POST", ["crm", "v3", "properties", "contacts", "batch", "create"]) => {
            let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
            let mut results = Vec::new();
            let mut errors = Vec::new();
            if let Some(refusal) = option_without_hidden(&inputs, now) {
                return refusal;
            }
            for p in inputs {
                let name = p["name"].as_str().unwrap_or("").to_string();
                if name.is_empty() || s.names.contains(&name) {
                    errors.push(json!({"status": "error", "category": "OBJECT_ALREADY_EXISTS",
                        "message": format!("Property named '{name}' already exists."), "context": {"name": [name]}}));
                    continue;
                }
                s.names.insert(name);
                s.properties.push(p.clone());
                results.push(p);
            }
            let status = if errors.is_empty() { 201 } else { 207 };
            json(
                status,
                &json!({"status": "COMPLETE", "results": results, "errors": errors}),
            )
        }
        ("GET", ["crm", "v3", "properties", object]) => match *object {
            "contacts" => json(200, &json!({"results": s.properties})),
            _ => json(200, &json!({"results": []})),
        },
        ("GET", ["marketing", "v3", "forms"]) => forms(s, query, now),
        ("GET", ["form-integrations", "v1", "submissions", "forms", guid]) => submissions(s, guid, query, now),
        _ => error(
            404,
            "OBJECT_NOT_FOUND",
            "The requested resource was not found in the sandbox",
            now,
        ),
    }
}

/// HubSpot's properties spec requires `hidden` (a boolean) on every option of a property created
/// through the API; a batch with an option lacking it is refused whole, naming the option.
fn option_without_hidden(inputs: &[Value], now: i64) -> Option<Response> {
    for (i, p) in inputs.iter().enumerate() {
        let options = p["options"].as_array().map(Vec::as_slice).unwrap_or_default();
        for (j, o) in options.iter().enumerate() {
            if !o["hidden"].is_boolean() {
                let field = format!("inputs[{i}].options[{j}].hidden");
                let name = p["name"].as_str().unwrap_or("");
                return Some(json(
                    400,
                    &json!({"status": "error",
                        "message": format!("Invalid input JSON on line 1: {field} is required (property {name:?}, option {:?})", o["value"].as_str().unwrap_or("")),
                        "correlationId": correlation_id(now), "category": "VALIDATION_ERROR",
                        "errors": [{"message": "is required", "code": "REQUIRED_FIELD", "context": {"fieldName": [field]}}]}),
                ));
            }
        }
    }
    None
}
