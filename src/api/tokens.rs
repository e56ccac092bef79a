//! Creating, deleting and cache-clearing service account tokens.

use http::{Response, StatusCode};
use serde_json::json;

use super::{actions, Call};
use crate::identity::token;
use crate::identity::{AccountId, TokenName};
use crate::message::error::ApiError;
use crate::message::response::Body;
use crate::store::StoreError;

/// Checks in Elasticsearch's order: parameters, name, privilege, account, then the durable write.
/// The 200 goes out only after the store has fsynced the token.
pub async fn create(
    call: &Call<'_>,
    account: &AccountId,
    name: Option<String>,
) -> Result<Response<Body>, ApiError> {
    call.params.check(call.path, &["refresh"])?;
    call.params.check_refresh()?;
    let name = name.unwrap_or_else(token::generate_name);
    Call::validate(account, Some(&name))?;
    let name = Call::token_name(&name)?;
    call.require(actions::CREATE_SERVICE_TOKEN)?;
    call.require_account(account)?;
    let value = token::encode(account, &name, &token::generate_secret());
    let qualified = account.qualify(&name);
    match call.state.store.create(&qualified, &value).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::VersionConflict(format!(
                "[service_account_token-{qualified}]: version conflict, document already exists (current version [1])"
            )))
        }
        Err(error) => {
            tracing::error!(%error, token = %qualified, "token not persisted");
            return Err(ApiError::StoreUnavailable);
        }
    }
    tracing::info!(token = %qualified, "service token created");
    let audit = &call.state.audit;
    audit.token_created(&call.request, call.principal.subject(), account, &name);
    Ok(call.reply(
        StatusCode::OK,
        &json!({"created": true, "token": {"name": name.as_str(), "value": value}}),
    ))
}

/// Removes a token durably; `{"found":false}` with 404 when it was not there.
pub async fn delete(
    call: &Call<'_>,
    account: &AccountId,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    call.params.check(call.path, &["refresh"])?;
    call.params.check_refresh()?;
    Call::validate(account, Some(name))?;
    let name = Call::token_name(name)?;
    call.require(actions::DELETE_SERVICE_TOKEN)?;
    let qualified = account.qualify(&name);
    let found = call.state.store.delete(&qualified).await.map_err(|error| {
        tracing::error!(%error, token = %qualified, "token deletion not persisted");
        ApiError::StoreUnavailable
    })?;
    if found {
        tracing::info!(token = %qualified, "service token deleted");
    }
    let audit = &call.state.audit;
    audit.token_deleted(&call.request, call.principal.subject(), account, &name);
    let status = if found {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    Ok(call.reply(status, &json!({ "found": found })))
}

/// The store is the only copy of every index token, so only the outcomes remembered for file
/// tokens are forgotten (all of them: one more KDF per value is the whole cost); the answer has
/// the shape of a one-node cluster's so clients that call it carry on.
///
/// Names are read as Elasticsearch's REST handler reads them (`paramAsStringArrayOrEmptyIfAll`):
/// `""`, `*` and `_all` mean every token of the account, anything else is a comma-separated list
/// whose every name must be valid (an `illegal_argument_exception` otherwise, raised before any
/// privilege is checked).
pub fn clear_cache(call: &Call<'_>, names: &str) -> Result<Response<Body>, ApiError> {
    call.params.check(call.path, &[])?;
    if !matches!(names, "" | "*" | "_all") {
        // Java's `split(",")`: trailing empty names vanish, inner ones are names (and invalid).
        for name in names.trim_end_matches(',').split(',') {
            if let Err(invalid) = TokenName::new(name) {
                return Err(ApiError::IllegalArgument(invalid.reason()));
            }
        }
    }
    // Elasticsearch clears cache keys by name and never looks the account up.
    call.require(actions::CLEAR_SECURITY_CACHE)?;
    call.state.file_tokens.clear_cache();
    call.state
        .audit
        .cache_cleared(&call.request, call.principal.subject());
    let config = &call.state.config.server;
    let body = json!({
        "_nodes": {"total": 1, "successful": 1, "failed": 0},
        "cluster_name": config.cluster_name,
        "nodes": { config.node_name.clone(): {"name": config.node_name} }
    });
    Ok(call.reply(StatusCode::OK, &body))
}
