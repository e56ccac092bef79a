//! Elasticsearch's action names for the security REST endpoints, and the cluster privileges that
//! grant each, so a refusal reads exactly as a node's would.
//!
//! Action names are the transport actions' `NAME` constants behind each `Rest*Action` route of the
//! 8.9 line. Privilege lists are in the order `ClusterPrivilegeResolver.findPrivilegesThatGrant`
//! prints them: by how many other named privileges each one implies, then by name. Privileges that
//! depend on the request body (`manage_own_api_key` on another user's keys) are listed as they
//! apply to the caller's own request.

use http::Method;

/// A security action as Elasticsearch authorizes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecurityAction {
    /// The transport action name a 403 quotes.
    pub name: &'static str,
    /// The named cluster privileges that grant it, least powerful first.
    pub privileges: &'static [&'static str],
}

const MANAGE: &[&str] = &["manage_security", "all"];
const READ: &[&str] = &["read_security", "manage_security", "all"];
const SERVICE_ACCOUNT: &[&str] = &["manage_service_account", "manage_security", "all"];
const SERVICE_ACCOUNT_READ: &[&str] = &[
    "manage_service_account",
    "read_security",
    "manage_security",
    "all",
];
const HAS_PRIVILEGES: &[&str] = &[
    "read_ccr",
    "read_security",
    "manage_ccr",
    "manage_security",
    "all",
];
const API_KEY_OWN: &[&str] = &[
    "manage_own_api_key",
    "manage_api_key",
    "manage_security",
    "all",
];
const API_KEY_READ: &[&str] = &["read_security", "manage_api_key", "manage_security", "all"];
const API_KEY_MANAGE: &[&str] = &["manage_api_key", "manage_security", "all"];
const API_KEY_GRANT: &[&str] = &["grant_api_key", "manage_api_key", "manage_security", "all"];
const TOKEN_CREATE: &[&str] = &["manage_token", "manage_security", "all"];
const TOKEN_INVALIDATE: &[&str] = &[
    "delegate_pki",
    "manage_saml",
    "manage_token",
    "manage_security",
    "all",
];
const SAML: &[&str] = &["manage_saml", "manage_security", "all"];
const SAML_METADATA: &[&str] = &["manage_saml", "monitor", "manage", "all"];
const OIDC: &[&str] = &["manage_oidc", "manage_security", "all"];
const PROFILE: &[&str] = &["manage_user_profile", "manage_security", "all"];
const PROFILE_READ: &[&str] = &[
    "manage_user_profile",
    "read_security",
    "manage_security",
    "all",
];
const DELEGATE_PKI: &[&str] = &["delegate_pki", "manage_security", "all"];

const fn action(name: &'static str, privileges: &'static [&'static str]) -> SecurityAction {
    SecurityAction { name, privileges }
}

/// `GET /_security/service[/{ns}[/{svc}]]`.
pub const GET_SERVICE_ACCOUNTS: SecurityAction = action(
    "cluster:admin/xpack/security/service_account/get",
    SERVICE_ACCOUNT_READ,
);
/// `GET /_security/service/{ns}/{svc}/credential`.
pub const GET_SERVICE_CREDENTIALS: SecurityAction = action(
    "cluster:admin/xpack/security/service_account/credential/get",
    SERVICE_ACCOUNT_READ,
);
/// `POST|PUT …/credential/token[/{name}]`.
pub const CREATE_SERVICE_TOKEN: SecurityAction = action(
    "cluster:admin/xpack/security/service_account/token/create",
    SERVICE_ACCOUNT,
);
/// `DELETE …/credential/token/{name}`.
pub const DELETE_SERVICE_TOKEN: SecurityAction = action(
    "cluster:admin/xpack/security/service_account/token/delete",
    SERVICE_ACCOUNT,
);
/// Every security cache clear that goes through `ClearSecurityCacheAction` (service tokens and
/// API keys): its name lies outside `service_account/*`, so `manage_service_account` does not
/// grant it.
pub const CLEAR_SECURITY_CACHE: SecurityAction =
    action("cluster:admin/xpack/security/cache/clear", MANAGE);
/// What a security path no entry below describes is refused as.
pub const UNKNOWN: SecurityAction = action("cluster:admin/xpack/security/*", MANAGE);

/// A route: methods, path segments after `_security` (`*` matches any one segment), action.
type Route = (&'static [Method], &'static [&'static str], SecurityAction);

const GET: &[Method] = &[Method::GET];
const POST: &[Method] = &[Method::POST];
const PUT: &[Method] = &[Method::PUT];
const PUT_POST: &[Method] = &[Method::PUT, Method::POST];
const GET_POST: &[Method] = &[Method::GET, Method::POST];
const DELETE: &[Method] = &[Method::DELETE];

/// Literal segments come before wildcards where both could match, as Elasticsearch's path trie
/// prefers an explicit node (`/user/_privileges` is not a user called `_privileges`).
#[rustfmt::skip]
const ROUTES: &[Route] = &[
    // Users.
    (GET, &["user"], action("cluster:admin/xpack/security/user/get", READ)),
    (GET, &["user", "_privileges"], action("cluster:admin/xpack/security/user/list_privileges", READ)),
    (GET_POST, &["user", "_has_privileges"], action("cluster:admin/xpack/security/user/has_privileges", HAS_PRIVILEGES)),
    (PUT_POST, &["user", "_password"], action("cluster:admin/xpack/security/user/change_password", MANAGE)),
    (GET, &["user", "*"], action("cluster:admin/xpack/security/user/get", READ)),
    (PUT_POST, &["user", "*"], action("cluster:admin/xpack/security/user/put", MANAGE)),
    (DELETE, &["user", "*"], action("cluster:admin/xpack/security/user/delete", MANAGE)),
    (PUT_POST, &["user", "*", "_password"], action("cluster:admin/xpack/security/user/change_password", MANAGE)),
    (PUT_POST, &["user", "*", "_enable"], action("cluster:admin/xpack/security/user/set_enabled", MANAGE)),
    (PUT_POST, &["user", "*", "_disable"], action("cluster:admin/xpack/security/user/set_enabled", MANAGE)),
    (GET_POST, &["user", "*", "_has_privileges"], action("cluster:admin/xpack/security/user/has_privileges", HAS_PRIVILEGES)),
    // Roles and role mappings.
    (GET, &["role"], action("cluster:admin/xpack/security/role/get", READ)),
    (GET, &["role", "*"], action("cluster:admin/xpack/security/role/get", READ)),
    (PUT_POST, &["role", "*"], action("cluster:admin/xpack/security/role/put", MANAGE)),
    (DELETE, &["role", "*"], action("cluster:admin/xpack/security/role/delete", MANAGE)),
    (POST, &["role", "*", "_clear_cache"], action("cluster:admin/xpack/security/roles/cache/clear", MANAGE)),
    (GET, &["role_mapping"], action("cluster:admin/xpack/security/role_mapping/get", READ)),
    (GET, &["role_mapping", "*"], action("cluster:admin/xpack/security/role_mapping/get", READ)),
    (PUT_POST, &["role_mapping", "*"], action("cluster:admin/xpack/security/role_mapping/put", MANAGE)),
    (DELETE, &["role_mapping", "*"], action("cluster:admin/xpack/security/role_mapping/delete", MANAGE)),
    // Application privileges.
    (GET, &["privilege"], action("cluster:admin/xpack/security/privilege/get", READ)),
    (PUT_POST, &["privilege"], action("cluster:admin/xpack/security/privilege/put", MANAGE)),
    (GET, &["privilege", "_builtin"], action("cluster:admin/xpack/security/privilege/builtin/get", READ)),
    (GET, &["privilege", "*"], action("cluster:admin/xpack/security/privilege/get", READ)),
    (POST, &["privilege", "*", "_clear_cache"], action("cluster:admin/xpack/security/privilege/cache/clear", MANAGE)),
    (GET, &["privilege", "*", "*"], action("cluster:admin/xpack/security/privilege/get", READ)),
    (DELETE, &["privilege", "*", "*"], action("cluster:admin/xpack/security/privilege/delete", MANAGE)),
    // API keys.
    (PUT_POST, &["api_key"], action("cluster:admin/xpack/security/api_key/create", API_KEY_OWN)),
    (GET, &["api_key"], action("cluster:admin/xpack/security/api_key/get", API_KEY_READ)),
    (DELETE, &["api_key"], action("cluster:admin/xpack/security/api_key/invalidate", API_KEY_MANAGE)),
    (POST, &["api_key", "grant"], action("cluster:admin/xpack/security/api_key/grant", API_KEY_GRANT)),
    (POST, &["api_key", "_bulk_update"], action("cluster:admin/xpack/security/api_key/bulk_update", API_KEY_OWN)),
    (PUT, &["api_key", "*"], action("cluster:admin/xpack/security/api_key/update", API_KEY_OWN)),
    (POST, &["api_key", "*", "_clear_cache"], CLEAR_SECURITY_CACHE),
    (GET_POST, &["_query", "api_key"], action("cluster:admin/xpack/security/api_key/query", API_KEY_READ)),
    // OAuth2 tokens and PKI delegation.
    (POST, &["oauth2", "token"], action("cluster:admin/xpack/security/token/create", TOKEN_CREATE)),
    (DELETE, &["oauth2", "token"], action("cluster:admin/xpack/security/token/invalidate", TOKEN_INVALIDATE)),
    (POST, &["delegate_pki"], action("cluster:admin/xpack/security/delegate_pki", DELEGATE_PKI)),
    // SAML and OpenID Connect.
    (POST, &["saml", "prepare"], action("cluster:admin/xpack/security/saml/prepare", SAML)),
    (POST, &["saml", "authenticate"], action("cluster:admin/xpack/security/saml/authenticate", SAML)),
    (POST, &["saml", "logout"], action("cluster:admin/xpack/security/saml/logout", SAML)),
    (POST, &["saml", "invalidate"], action("cluster:admin/xpack/security/saml/invalidate", SAML)),
    (POST, &["saml", "complete_logout"], action("cluster:admin/xpack/security/saml/complete_logout", SAML)),
    (GET, &["saml", "metadata", "*"], action("cluster:monitor/xpack/security/saml/metadata", SAML_METADATA)),
    (POST, &["oidc", "prepare"], action("cluster:admin/xpack/security/oidc/prepare", OIDC)),
    (POST, &["oidc", "authenticate"], action("cluster:admin/xpack/security/oidc/authenticate", OIDC)),
    (POST, &["oidc", "logout"], action("cluster:admin/xpack/security/oidc/logout", OIDC)),
    // Enrollment.
    (GET, &["enroll", "node"], action("cluster:admin/xpack/security/enroll/node", MANAGE)),
    (GET, &["enroll", "kibana"], action("cluster:admin/xpack/security/enroll/kibana", MANAGE)),
    // User profiles.
    (POST, &["profile", "_activate"], action("cluster:admin/xpack/security/profile/activate", PROFILE)),
    (GET_POST, &["profile", "_suggest"], action("cluster:admin/xpack/security/profile/suggest", PROFILE_READ)),
    (GET_POST, &["profile", "_has_privileges"], action("cluster:admin/xpack/security/profile/has_privileges", PROFILE_READ)),
    (GET, &["profile", "*"], action("cluster:admin/xpack/security/profile/get", PROFILE_READ)),
    (PUT_POST, &["profile", "*", "_data"], action("cluster:admin/xpack/security/profile/put/data", PROFILE)),
    (PUT_POST, &["profile", "*", "_enable"], action("cluster:admin/xpack/security/profile/set_enabled", PROFILE)),
    (PUT_POST, &["profile", "*", "_disable"], action("cluster:admin/xpack/security/profile/set_enabled", PROFILE)),
    // Caches and the service-account family (reached here only in forms the gateway does not
    // answer itself).
    (POST, &["realm", "*", "_clear_cache"], action("cluster:admin/xpack/security/realm/cache/clear", MANAGE)),
    (GET, &["service"], GET_SERVICE_ACCOUNTS),
    (GET, &["service", "*"], GET_SERVICE_ACCOUNTS),
    (GET, &["service", "*", "*"], GET_SERVICE_ACCOUNTS),
    (GET, &["service", "*", "*", "credential"], GET_SERVICE_CREDENTIALS),
    (PUT_POST, &["service", "*", "*", "credential", "token"], CREATE_SERVICE_TOKEN),
    (PUT_POST, &["service", "*", "*", "credential", "token", "*"], CREATE_SERVICE_TOKEN),
    (DELETE, &["service", "*", "*", "credential", "token", "*"], DELETE_SERVICE_TOKEN),
    (POST, &["service", "*", "*", "credential", "token", "*", "_clear_cache"], CLEAR_SECURITY_CACHE),
];

/// Most segments any route has after `_security`.
const MAX_SEGMENTS: usize = 7;

/// The action Elasticsearch would authorize for `method` on the security API path `path`
/// (already percent-decoded, without the query). Paths under `/_xpack/security` (the 7.x
/// spelling that REST compatibility still routes) read as `/_security`.
pub fn security_action(method: &Method, path: &str) -> SecurityAction {
    let path = path.trim_start_matches('/');
    let rest = path
        .strip_prefix("_security")
        .or_else(|| path.strip_prefix("_xpack/security"));
    let Some(rest) = rest else {
        return UNKNOWN;
    };
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    // On the stack: a security path longer than any route cannot match one.
    let mut segments = [""; MAX_SEGMENTS];
    let mut len = 0;
    // As Java's `String.split`, trailing empty segments do not count.
    for segment in rest.trim_end_matches('/').split('/') {
        let Some(slot) = segments.get_mut(len) else {
            return UNKNOWN;
        };
        *slot = segment;
        len += 1;
    }
    let segments = segments.get(..len).unwrap_or_default();
    let path_matches = |pattern: &[&str]| {
        pattern.len() == segments.len()
            && pattern
                .iter()
                .zip(segments)
                .all(|(p, s)| *p == "*" || p == s)
    };
    ROUTES
        .iter()
        .find(|(methods, pattern, _)| methods.contains(method) && path_matches(pattern))
        .map_or(UNKNOWN, |(_, _, action)| *action)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(method: &Method, path: &str) -> &'static str {
        security_action(method, path).name
    }

    #[test]
    fn users_roles_and_mappings() {
        let delete = security_action(&Method::DELETE, "/_security/user/foo");
        assert_eq!(delete.name, "cluster:admin/xpack/security/user/delete");
        assert_eq!(delete.privileges, ["manage_security", "all"]);
        let get = security_action(&Method::GET, "/_security/user");
        assert_eq!(get.name, "cluster:admin/xpack/security/user/get");
        assert_eq!(get.privileges, ["read_security", "manage_security", "all"]);
        assert_eq!(
            name(&Method::GET, "/_security/user/_privileges"),
            "cluster:admin/xpack/security/user/list_privileges"
        );
        assert_eq!(
            name(&Method::POST, "/_security/user/bob/_password"),
            "cluster:admin/xpack/security/user/change_password"
        );
        assert_eq!(
            name(&Method::PUT, "/_security/user/bob/_disable"),
            "cluster:admin/xpack/security/user/set_enabled"
        );
        assert_eq!(
            name(&Method::PUT, "/_security/role/r1"),
            "cluster:admin/xpack/security/role/put"
        );
        assert_eq!(
            name(&Method::DELETE, "/_security/role_mapping/m"),
            "cluster:admin/xpack/security/role_mapping/delete"
        );
    }

    #[test]
    fn api_keys_tokens_and_profiles() {
        let create = security_action(&Method::POST, "/_security/api_key");
        assert_eq!(create.name, "cluster:admin/xpack/security/api_key/create");
        assert_eq!(
            create.privileges,
            [
                "manage_own_api_key",
                "manage_api_key",
                "manage_security",
                "all"
            ]
        );
        assert_eq!(
            name(&Method::POST, "/_security/api_key/grant"),
            "cluster:admin/xpack/security/api_key/grant"
        );
        assert_eq!(
            name(&Method::DELETE, "/_security/api_key"),
            "cluster:admin/xpack/security/api_key/invalidate"
        );
        assert_eq!(
            name(&Method::GET, "/_security/_query/api_key"),
            "cluster:admin/xpack/security/api_key/query"
        );
        assert_eq!(
            name(&Method::PUT, "/_security/api_key/abc"),
            "cluster:admin/xpack/security/api_key/update"
        );
        let invalidate = security_action(&Method::DELETE, "/_security/oauth2/token");
        assert_eq!(
            invalidate.name,
            "cluster:admin/xpack/security/token/invalidate"
        );
        assert_eq!(invalidate.privileges[0], "delegate_pki");
        assert_eq!(
            name(&Method::POST, "/_security/profile/_activate"),
            "cluster:admin/xpack/security/profile/activate"
        );
        assert_eq!(
            name(&Method::POST, "/_security/saml/prepare"),
            "cluster:admin/xpack/security/saml/prepare"
        );
    }

    #[test]
    fn caches_privileges_and_has_privileges() {
        let cache = security_action(&Method::POST, "/_security/api_key/a,b/_clear_cache");
        assert_eq!(cache, CLEAR_SECURITY_CACHE);
        assert_eq!(
            name(&Method::POST, "/_security/realm/file1/_clear_cache"),
            "cluster:admin/xpack/security/realm/cache/clear"
        );
        assert_eq!(
            name(&Method::GET, "/_security/privilege/_builtin"),
            "cluster:admin/xpack/security/privilege/builtin/get"
        );
        assert_eq!(
            name(&Method::DELETE, "/_security/privilege/app/read"),
            "cluster:admin/xpack/security/privilege/delete"
        );
        let has = security_action(&Method::GET, "/_security/user/_has_privileges");
        assert_eq!(has.name, "cluster:admin/xpack/security/user/has_privileges");
        assert_eq!(has.privileges[0], "read_ccr");
        assert_eq!(
            name(&Method::GET, "/_security/enroll/kibana"),
            "cluster:admin/xpack/security/enroll/kibana"
        );
    }

    #[test]
    fn spellings_and_unknown_paths() {
        assert_eq!(
            name(&Method::GET, "/_xpack/security/user/"),
            "cluster:admin/xpack/security/user/get"
        );
        assert_eq!(
            name(&Method::GET, "//_security/user"),
            "cluster:admin/xpack/security/user/get"
        );
        assert_eq!(security_action(&Method::GET, "/_security/nope"), UNKNOWN);
        assert_eq!(
            security_action(&Method::PATCH, "/_security/user/x"),
            UNKNOWN
        );
        assert_eq!(
            security_action(&Method::GET, "/_security/a/b/c/d/e/f/g/h/i"),
            UNKNOWN
        );
        assert_eq!(security_action(&Method::GET, "/_securityx/user"), UNKNOWN);
    }
}
