//! `GET /_security/_authenticate`: who the caller is, in Elasticsearch's words.

use http::{Response, StatusCode};
use serde_json::json;

use super::Call;
use crate::auth::Principal;
use crate::message::error::ApiError;
use crate::message::response::Body;

pub fn handle(call: &Call<'_>) -> Result<Response<Body>, ApiError> {
    call.params.check(call.path, &[])?;
    let body = match call.principal {
        Principal::User(user) => json!({
            "username": user.name,
            "roles": user.roles,
            "full_name": null,
            "email": null,
            "metadata": {},
            "enabled": true,
            "authentication_realm": {"name": "default_file", "type": "file"},
            "lookup_realm": {"name": "default_file", "type": "file"},
            "authentication_type": "realm"
        }),
        Principal::ServiceToken(token) => {
            let account = token.account.as_str();
            json!({
                "username": account,
                "roles": [],
                "full_name": format!("Service account - {account}"),
                "email": null,
                "metadata": {"_elastic_service_account": true},
                "enabled": true,
                "authentication_realm": {"name": "_service_account", "type": "_service_account"},
                "lookup_realm": {"name": "_service_account", "type": "_service_account"},
                "authentication_type": "token",
                "token": {"name": token.name.as_str(), "type": token.source.as_str()}
            })
        }
    };
    Ok(call.reply(StatusCode::OK, &body))
}
