//! The token endpoint: refresh token, JWT bearer (well-formed, claims checked) and client credentials.

use axum::body::Bytes;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::schema::salesforce_id;
use crate::sandbox::{SandboxConfig, Shared, form_pairs, json, lock};

pub(super) fn token(shared: &Shared, body: &Bytes) -> Response {
    let cfg = &shared.config;
    let now = shared.clock.now_ms();
    let form = form_pairs(&String::from_utf8_lossy(body));
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let refused = |d: &str| json(400, &json!({"error": "invalid_grant", "error_description": d}));
    let ok = match get("grant_type") {
        "refresh_token" => {
            get("client_id") == cfg.salesforce_client_id
                && get("refresh_token") == cfg.salesforce_refresh_token
                && (get("client_secret").is_empty() || get("client_secret") == cfg.salesforce_client_secret)
        }
        "client_credentials" => {
            get("client_id") == cfg.salesforce_client_id && get("client_secret") == cfg.salesforce_client_secret
        }
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => match check_jwt(get("assertion"), cfg) {
            Ok(()) => true,
            Err(e) => return refused(&e),
        },
        other => {
            return json(
                400,
                &json!({"error": "unsupported_grant_type", "error_description": format!("grant type not supported: {other}")}),
            );
        }
    };
    if !ok {
        return refused("authentication failure");
    }
    let mut state = lock(&shared.salesforce);
    let n = state.sessions.len() as u64 + 1;
    let access = format!("00D5g000000SBX!{:016x}", crate::sandbox::portal::mix(cfg.seed, 0x5F, n));
    state
        .sessions
        .insert(access.clone(), now + cfg.salesforce_session_lifetime.as_millis() as i64);
    json(
        200,
        &json!({"access_token": access, "instance_url": shared.salesforce_url,
            "id": format!("{}/id/00D5g000000SBXEAA4/{}", shared.salesforce_url, salesforce_id("User", 1)),
            "token_type": "Bearer", "issued_at": now.to_string(), "signature": "c2FuZGJveA==",
            "scope": "api refresh_token"}),
    )
}

/// A well-formed JWT whose claims name the connected app (`iss`), a user (`sub`), a login
/// audience (`aud`) and an expiry in the future. The signature is not verified.
pub(super) fn check_jwt(assertion: &str, cfg: &SandboxConfig) -> Result<(), String> {
    let parts: Vec<&str> = assertion.split('.').collect();
    if parts.len() != 3 || parts[2].is_empty() {
        return Err("invalid assertion: not a signed JWT".into());
    }
    let decode = |p: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(p.trim_end_matches('='))
            .map_err(|_| "invalid assertion: bad base64url".to_string())?;
        serde_json::from_slice(&bytes).map_err(|_| "invalid assertion: bad JSON".to_string())
    };
    let header = decode(parts[0])?;
    let claims = decode(parts[1])?;
    if header["alg"].as_str().is_none() {
        return Err("invalid assertion: no alg".into());
    }
    if claims["iss"].as_str() != Some(cfg.salesforce_client_id.as_str()) {
        return Err("client identifier invalid".into());
    }
    if claims["sub"].as_str().is_none_or(str::is_empty) {
        return Err("user hasn't approved this consumer".into());
    }
    if claims["aud"].as_str().is_none_or(str::is_empty) {
        return Err("audience is invalid".into());
    }
    let exp = claims["exp"].as_i64().ok_or("expiration is invalid")?;
    if exp < chrono::Utc::now().timestamp() {
        return Err("expired authorization code".into());
    }
    Ok(())
}
