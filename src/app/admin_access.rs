//! Who may read the admin listener's pages once it leaves loopback.
//!
//! On loopback only the host's own users reach the admin port, and nothing is asked (unless
//! `admin.require_auth = true`). Elsewhere (`require_auth = "auto"` off loopback, or `true`)
//! the status page and `/status` show node addresses, account names, throttled client
//! addresses: they need a client certificate the TLS handshake verified against
//! `admin.client_ca`, or Basic credentials of a file-realm user holding `monitor` or
//! `superuser`. The Basic check is the gateway's own (the same realm, failure throttle and
//! audit log as the client listeners), so guessing here costs what guessing there costs.
//! `/livez` and `/readyz` never ask: orchestrators probe them from the node, without
//! credentials. `/metrics` asks when `admin.metrics_require_auth` says so.

use http::header::WWW_AUTHENTICATE;
use http::{HeaderValue, Request, Response, StatusCode};
use serde_json::Value;

use crate::auth::Principal;
use crate::config::AdminConfig;
use crate::message::error::ApiError;
use crate::message::response::{self, Body};
use crate::message::ClientInfo;
use crate::observe::audit;
use crate::state::State;

/// The challenge of the admin listener's 401: Basic, in the gateway's own realm.
const CHALLENGE: &str = "Basic realm=\"tokengate\", charset=\"UTF-8\"";
/// The action a refused caller is told about, named as Elasticsearch names its monitor actions.
const ACTION: &str = "cluster:monitor/tokengate/status";
/// The privileges that grant it: the `monitor` role's (and `superuser`, which holds all).
const PRIVILEGES: &[&str] = &["monitor"];

/// Whether `path` needs a caller who may monitor, under `admin`.
pub fn guarded(path: &str, admin: &AdminConfig) -> bool {
    match path {
        "/livez" | "/readyz" => false,
        "/metrics" => admin.requires_auth() && admin.metrics_require_auth,
        _ => admin.requires_auth(),
    }
}

/// Lets the request through (`Ok`) or answers it: 401 without usable credentials, 403 for a
/// caller without `monitor` or `superuser`, 429 for an address over its failure limit.
pub async fn admit<B>(
    state: &State,
    request: &Request<B>,
    client: &ClientInfo,
) -> Result<(), Response<Body>> {
    if client
        .client_certificate
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        return Ok(());
    }
    let seen = audit::Request::new(request, client.peer);
    let refusal = match state.auth.authenticate(&seen, None).await {
        Ok(Principal::User(user))
            if user
                .roles
                .iter()
                .any(|role| AdminConfig::ROLES.contains(&role.as_str())) =>
        {
            return Ok(());
        }
        Ok(other) => ApiError::Unauthorized {
            action: ACTION,
            caller: other.caller(),
            privileges: PRIVILEGES,
        },
        Err(refused) => ApiError::from(refused),
    };
    Err(answer(refusal))
}

/// The refusal as Elasticsearch shapes it; a 401 challenges for Basic in the gateway's realm,
/// in its header and in the document's copy of it.
fn answer(error: ApiError) -> Response<Body> {
    if error.status() != StatusCode::UNAUTHORIZED {
        return error.into_response(false);
    }
    let mut document = error.to_json();
    let challenge = Value::from(vec![CHALLENGE]);
    document["error"]["header"]["WWW-Authenticate"] = challenge.clone();
    if let Some(cause) = document["error"]["root_cause"].get_mut(0) {
        cause["header"]["WWW-Authenticate"] = challenge;
    }
    let mut response = response::json_value(StatusCode::UNAUTHORIZED, &document, false);
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Overrides};

    fn admin(text: &str) -> AdminConfig {
        Config::from_toml("t", text, &Overrides::default())
            .unwrap()
            .admin
    }

    #[test]
    fn probes_stay_open_and_metrics_follow_their_key() {
        let open = admin("");
        assert!(!guarded("/", &open) && !guarded("/metrics", &open));
        let off_loopback = admin("[admin]\nlisten = \"0.0.0.0:9901\"\n");
        for path in ["/", "/status", "/status.js", "/metrics"] {
            assert!(guarded(path, &off_loopback), "{path}");
        }
        for path in ["/livez", "/readyz"] {
            assert!(!guarded(path, &off_loopback), "{path}");
        }
        let metrics_open = admin("[admin]\nrequire_auth = true\nmetrics_require_auth = false\n");
        assert!(guarded("/status", &metrics_open));
        assert!(!guarded("/metrics", &metrics_open));
    }
}
