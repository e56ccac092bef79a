//! Header rewriting at the trust boundary: hop-by-hop removal both ways, the client's credentials
//! replaced by the gateway's, forwarding headers added.
//!
//! Every name is a static `HeaderName`, so rewriting allocates nothing for the common request.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::message::ClientInfo;

/// RFC 9110 §7.6.1 connection-specific fields, plus the legacy ones proxies still meet and
/// `HTTP2-Settings`, which only means something on the connection that carried it.
static HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("http2-settings"),
];

/// WebSocket handshake fields travel with `Upgrade`, which is never forwarded: without it they
/// would only confuse a server that speaks WebSocket.
const WEBSOCKET_PREFIX: &str = "sec-websocket-";

/// What the rewrite does with a field, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// The [`HOP_BY_HOP`] name at this index.
    Hop(usize),
    /// Where a client may claim to be someone or somewhere else (`Forwarded`, `X-Real-IP`,
    /// `X-Forwarded-Port`). Believed only from a trusted proxy; from anyone else they are
    /// dropped (`X-Forwarded-For`, `-Host` and `-Proto` are then set by the gateway itself).
    Claim,
    RunAs,
    ForwardedFor,
    ForwardedHost,
    ForwardedProto,
    /// `X-Tokengate`, which only the gateway's own answers carry.
    Gateway,
    Other,
}

/// What `name` is to the rewrite. Matched as text, once per field: the names' lengths tell
/// nearly every other field apart at once, where comparing `HeaderName`s one by one against
/// each known name cost more than the rest of the rewrite.
fn field(name: &HeaderName) -> Field {
    match name.as_str() {
        "connection" => Field::Hop(0),
        "keep-alive" => Field::Hop(1),
        "proxy-connection" => Field::Hop(2),
        "proxy-authenticate" => Field::Hop(3),
        "proxy-authorization" => Field::Hop(4),
        "te" => Field::Hop(5),
        "trailer" => Field::Hop(6),
        "transfer-encoding" => Field::Hop(7),
        "upgrade" => Field::Hop(8),
        "http2-settings" => Field::Hop(9),
        "forwarded" | "x-real-ip" | "x-forwarded-port" => Field::Claim,
        "es-security-runas-user" => Field::RunAs,
        "x-forwarded-for" => Field::ForwardedFor,
        "x-forwarded-host" => Field::ForwardedHost,
        "x-forwarded-proto" => Field::ForwardedProto,
        "x-tokengate" => Field::Gateway,
        _ => Field::Other,
    }
}

/// Asks Elasticsearch to run the request as another user; with the gateway's credential upstream
/// that would be a privilege escalation, so clients never get to send it.
static RUN_AS: HeaderName = HeaderName::from_static("es-security-runas-user");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes hop-by-hop fields, every field the `Connection` header names, and those `also`
/// picks; returns which of the fields the request rewrite asks about were present.
///
/// One pass over the fields finds them all: a message rarely carries any, and removing or
/// looking up each known name would hash every custom one on every request, both ways.
fn strip(headers: &mut HeaderMap, also: impl Fn(Field) -> bool) -> Present {
    // The fixed hop-by-hop names as bits (nearly every message has one: `Connection:
    // keep-alive`), any other doomed name in a list that is then rarely allocated.
    let mut hops = 0u16;
    let mut doomed: Vec<HeaderName> = Vec::new();
    let mut present = Present::default();
    for (name, value) in headers.iter() {
        let field = field(name);
        match field {
            Field::Hop(index) => {
                hops |= 1 << index;
                if index == 0 {
                    // Nearly every message lists nothing here but `keep-alive` or `close`,
                    // which need no extra work.
                    connection_listed(value, &mut doomed);
                }
                continue;
            }
            _ if also(field) || name.as_str().starts_with(WEBSOCKET_PREFIX) => {
                doomed.push(name.clone());
                continue;
            }
            Field::RunAs => present.run_as = true,
            Field::ForwardedFor => present.forwarded_for = true,
            Field::ForwardedHost => present.forwarded_host = true,
            Field::ForwardedProto => present.forwarded_proto = true,
            Field::Claim | Field::Gateway | Field::Other => {}
        }
    }
    for (index, name) in HOP_BY_HOP.iter().enumerate() {
        if hops & (1 << index) != 0 {
            headers.remove(name);
        }
    }
    for name in doomed {
        headers.remove(name);
    }
    present
}

/// The field names a `Connection` value lists, besides `keep-alive` and `close`.
fn connection_listed(value: &HeaderValue, names: &mut Vec<HeaderName>) {
    let bytes = value.as_bytes();
    if bytes.eq_ignore_ascii_case(b"keep-alive") || bytes.eq_ignore_ascii_case(b"close") {
        return;
    }
    let Ok(text) = value.to_str() else { return };
    for token in text.split(',').map(str::trim) {
        if token.eq_ignore_ascii_case("keep-alive")
            || token.eq_ignore_ascii_case("close")
            || token.is_empty()
        {
            continue;
        }
        if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
            names.push(name);
        }
    }
}

/// Which fields the request rewrite acts on were in the request (after stripping).
#[derive(Default)]
struct Present {
    run_as: bool,
    forwarded_for: bool,
    forwarded_host: bool,
    forwarded_proto: bool,
}

/// A response's hop-by-hop fields removed, and `X-Tokengate` with them: only the gateway's own
/// answers may say they are its own.
pub fn rewrite_response(headers: &mut HeaderMap) {
    strip(headers, |field| field == Field::Gateway);
}

/// What a forwarded request carries upstream in `Authorization`.
#[derive(Debug, Clone)]
pub enum Authorization {
    /// This credential, in place of the client's.
    Set(HeaderValue),
    /// None: the client's is removed and nothing replaces it.
    Remove,
    /// The client's own, untouched (a pass-through scheme the cluster checks itself).
    Keep,
}

/// Rewrites a client request's headers for the upstream, `host` (the node's) in `Host`.
/// `authority` is the request target's (HTTP/2's `:authority`), which names the host the client
/// asked for before any `Host` field does.
pub fn rewrite_request(
    headers: &mut HeaderMap,
    client: &ClientInfo,
    upstream_auth: Authorization,
    authority: Option<&HeaderValue>,
    host: HeaderValue,
) {
    let present = strip(headers, |field| !client.trusted && field == Field::Claim);
    match upstream_auth {
        Authorization::Set(value) => {
            headers.insert(header::AUTHORIZATION, value);
        }
        Authorization::Remove => {
            headers.remove(header::AUTHORIZATION);
        }
        Authorization::Keep => {}
    }
    if present.run_as {
        headers.remove(&RUN_AS);
    }
    // The client's Host names the gateway; the upstream gets its own. Replaced in place: a
    // field removed and added again costs the map two displacements of its neighbours.
    let client_host = headers.insert(header::HOST, host);
    let host = authority.cloned().or(client_host);
    let keep_claims = client.trusted && present.forwarded_host;
    match host {
        _ if keep_claims => {}
        Some(host) => {
            headers.insert(X_FORWARDED_HOST.clone(), host);
        }
        None if present.forwarded_host => {
            headers.remove(&X_FORWARDED_HOST);
        }
        None => {}
    }
    let prior = (client.trusted && present.forwarded_for)
        .then(|| headers.get(&X_FORWARDED_FOR))
        .flatten();
    let forwarded_for = match prior {
        None => client.peer_ip.clone(),
        // As nginx's `$proxy_add_x_forwarded_for`: the chain so far, then this peer.
        Some(prior) => {
            let mut joined = Vec::with_capacity(prior.len() + 2 + client.peer_ip.len());
            joined.extend_from_slice(prior.as_bytes());
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(client.peer_ip.as_bytes());
            HeaderValue::from_bytes(&joined).unwrap_or_else(|_| client.peer_ip.clone())
        }
    };
    headers.insert(X_FORWARDED_FOR.clone(), forwarded_for);
    if !(client.trusted && present.forwarded_proto) {
        headers.insert(X_FORWARDED_PROTO.clone(), client.proto.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_name_is_found_as_what_it_is_and_no_other_name() {
        for (index, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(field(name), Field::Hop(index), "{name}");
        }
        for name in ["forwarded", "x-real-ip", "x-forwarded-port"] {
            assert_eq!(
                field(&HeaderName::from_static(name)),
                Field::Claim,
                "{name}"
            );
        }
        assert_eq!(field(&RUN_AS), Field::RunAs);
        assert_eq!(field(&X_FORWARDED_FOR), Field::ForwardedFor);
        assert_eq!(field(&X_FORWARDED_HOST), Field::ForwardedHost);
        assert_eq!(field(&X_FORWARDED_PROTO), Field::ForwardedProto);
        assert_eq!(
            field(&crate::message::response::X_TOKENGATE),
            Field::Gateway
        );
        for name in [
            "content-length",
            "authorization",
            "x-connection",
            "tee",
            "x-forwarded",
        ] {
            assert_eq!(
                field(&HeaderName::from_static(name)),
                Field::Other,
                "{name}"
            );
        }
    }

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        headers
    }

    fn client() -> ClientInfo {
        ClientInfo::new(
            "10.1.2.3:5555".parse().unwrap(),
            false,
            false,
            Default::default(),
        )
    }

    /// The Host a node gets.
    fn node() -> HeaderValue {
        HeaderValue::from_static("node-1:9200")
    }

    fn trusted_proxy() -> ClientInfo {
        ClientInfo::new(
            "10.1.2.3:5555".parse().unwrap(),
            false,
            true,
            Default::default(),
        )
    }

    #[test]
    fn removes_every_rfc9110_hop_by_hop_field() {
        let mut headers = map(&[
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authorization", "Basic eA=="),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
            ("http2-settings", "AAMAAABkAAQAAP__"),
            ("x-opaque-id", "abc"),
        ]);
        strip(&mut headers, |_| false);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers["x-opaque-id"], "abc");
    }

    #[test]
    fn removes_fields_named_by_connection() {
        let mut headers = map(&[
            ("connection", "close, X-Secret ,x-other"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("x-kept", "3"),
        ]);
        strip(&mut headers, |_| false);
        assert!(headers.get("x-secret").is_none());
        assert!(headers.get("x-other").is_none());
        assert_eq!(headers["x-kept"], "3");
    }

    #[test]
    fn connection_listing_in_several_fields_is_honoured() {
        let mut headers = map(&[
            ("connection", "x-a"),
            ("connection", "x-b"),
            ("x-a", "1"),
            ("x-b", "2"),
        ]);
        strip(&mut headers, |_| false);
        assert!(headers.is_empty());
    }

    #[test]
    fn client_credentials_never_pass_and_upstream_credential_is_set() {
        let mut headers = map(&[
            ("authorization", "Bearer abc"),
            ("es-security-runas-user", "elastic"),
        ]);
        rewrite_request(
            &mut headers,
            &client(),
            Authorization::Set(HeaderValue::from_static("ApiKey up")),
            None,
            node(),
        );
        assert_eq!(headers["authorization"], "ApiKey up");
        assert!(headers.get("es-security-runas-user").is_none());
        let mut headers = map(&[("authorization", "Bearer abc")]);
        rewrite_request(&mut headers, &client(), Authorization::Remove, None, node());
        assert!(headers.get("authorization").is_none());
        // Pass-through keeps the client's own, but never a run-as.
        let mut headers = map(&[
            ("authorization", "ApiKey client"),
            ("es-security-runas-user", "elastic"),
        ]);
        rewrite_request(&mut headers, &client(), Authorization::Keep, None, node());
        assert_eq!(headers["authorization"], "ApiKey client");
        assert!(headers.get("es-security-runas-user").is_none());
    }

    /// What a client might send to pass for someone else.
    fn claims() -> HeaderMap {
        map(&[
            ("host", "gw.example:8080"),
            ("x-forwarded-for", "192.0.2.1"),
            ("x-forwarded-host", "admin.internal"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-port", "443"),
            ("x-real-ip", "192.0.2.1"),
            ("forwarded", "for=192.0.2.1;proto=https"),
        ])
    }

    #[test]
    fn an_untrusted_clients_claims_are_replaced_by_what_the_gateway_saw() {
        let mut headers = claims();
        rewrite_request(&mut headers, &client(), Authorization::Remove, None, node());
        assert_eq!(headers["x-forwarded-for"], "10.1.2.3");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "gw.example:8080");
        assert_eq!(headers["host"], "node-1:9200");
        for gone in ["x-forwarded-port", "x-real-ip", "forwarded"] {
            assert!(headers.get(gone).is_none(), "{gone}");
        }
        // Without any host to name, a client's X-Forwarded-Host does not survive either.
        let mut headers = map(&[("x-forwarded-host", "admin.internal")]);
        rewrite_request(&mut headers, &client(), Authorization::Remove, None, node());
        assert!(headers.get("x-forwarded-host").is_none());
    }

    #[test]
    fn a_trusted_proxys_chain_is_kept_and_extended() {
        let mut headers = claims();
        rewrite_request(
            &mut headers,
            &trusted_proxy(),
            Authorization::Remove,
            None,
            node(),
        );
        assert_eq!(headers["x-forwarded-for"], "192.0.2.1, 10.1.2.3");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "admin.internal");
        assert_eq!(headers["x-real-ip"], "192.0.2.1");
        assert_eq!(headers["forwarded"], "for=192.0.2.1;proto=https");
        assert_eq!(headers.get_all("host").iter().count(), 1);
        assert_eq!(headers["host"], "node-1:9200");
    }

    #[test]
    fn the_request_targets_authority_names_the_host() {
        // HTTP/2 carries the host as `:authority`; it wins over a Host field.
        let mut headers = map(&[("host", "other.example")]);
        let authority = HeaderValue::from_static("gw.example:8443");
        rewrite_request(
            &mut headers,
            &client(),
            Authorization::Remove,
            Some(&authority),
            node(),
        );
        assert_eq!(headers["x-forwarded-host"], "gw.example:8443");
    }
}
