//! Listing service accounts and the credentials of one.

use http::{Response, StatusCode};
use serde_json::{json, Map, Value};

use super::{actions, Call};
use crate::identity::AccountId;
use crate::message::error::ApiError;
use crate::message::response::Body;

/// `{"elastic/fleet-server":{"role_descriptor":{…}}, …}`; `{}` when nothing matches.
pub fn get_accounts(
    call: &Call<'_>,
    namespace: Option<&str>,
    service: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    call.params.check(call.path, &[])?;
    call.require(actions::GET_SERVICE_ACCOUNTS)?;
    let mut body = Map::new();
    for (id, descriptor) in call.state.accounts.matching(namespace, service) {
        body.insert(id.to_string(), json!({ "role_descriptor": descriptor }));
    }
    Ok(call.reply(StatusCode::OK, &Value::Object(body)))
}

/// Tokens of one account: the journal's under `tokens`, the `service_tokens` file's under
/// `nodes_credentials.file_tokens` (the gateway is the only node that reads it), both counted.
pub fn get_credentials(call: &Call<'_>, account: &AccountId) -> Result<Response<Body>, ApiError> {
    call.params.check(call.path, &[])?;
    Call::validate(account, None)?;
    call.require(actions::GET_SERVICE_CREDENTIALS)?;
    call.require_account(account)?;
    let names = call.state.store.names_of(account);
    let tokens: Map<String, Value> = names.iter().map(|n| (n.clone(), json!({}))).collect();
    let file_names = call.state.file_tokens.names_of(account);
    let node = &call.state.config.server.node_name;
    let file_tokens: Map<String, Value> = file_names
        .iter()
        .map(|n| (n.clone(), json!({ "nodes": [node] })))
        .collect();
    let body = json!({
        "service_account": account.as_str(),
        "count": names.len() + file_names.len(),
        "tokens": tokens,
        "nodes_credentials": {
            "_nodes": {"total": 1, "successful": 1, "failed": 0},
            "file_tokens": file_tokens
        }
    });
    Ok(call.reply(StatusCode::OK, &body))
}
