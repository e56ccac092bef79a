//! Reads the `Authorization` header into the credential kinds the gateway understands.
//!
//! Schemes are matched case-insensitively, as Elasticsearch does. Nothing here allocates: the
//! variants borrow the header's bytes.

use http::header::AUTHORIZATION;
use http::HeaderMap;

use crate::observe::audit::Presented;

/// What a request presented.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// No `Authorization` header, or a scheme no realm understands.
    None,
    /// `Bearer <value>`: a service token (or something posing as one).
    Bearer(&'a [u8]),
    /// `Basic <base64(user:password)>`, still encoded.
    Basic(&'a [u8]),
    /// `ApiKey <base64(id:key)>`: the cluster's own credential, which the gateway cannot check;
    /// forwarded untouched only when `security.pass_through` names the scheme.
    ApiKey,
    /// Several `Authorization` headers: ambiguous, so never used.
    Unusable,
}

impl std::fmt::Debug for Credentials<'_> {
    /// Names the scheme only; credential bytes never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "None",
            Self::Bearer(_) => "Bearer(..)",
            Self::Basic(_) => "Basic(..)",
            Self::ApiKey => "ApiKey(..)",
            Self::Unusable => "Unusable",
        })
    }
}

impl<'a> Credentials<'a> {
    /// The credentials of a request's headers. Several `Authorization` headers are ambiguous and
    /// count as bad credentials rather than picking one.
    pub fn from_headers(headers: &'a HeaderMap) -> Self {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Self::None;
        };
        if values.next().is_some() {
            return Self::Unusable;
        }
        Self::parse(value.as_bytes())
    }

    /// What an audit event may learn of these credentials: the encoded value, which the audit
    /// log reads only for the name it claims.
    pub fn presented(&self) -> Presented<'a> {
        match *self {
            Self::Bearer(value) => Presented::Bearer(value),
            Self::Basic(value) => Presented::Basic(value),
            Self::ApiKey | Self::Unusable | Self::None => Presented::Other,
        }
    }

    /// Splits `<scheme> <credentials>`.
    pub fn parse(value: &'a [u8]) -> Self {
        let scheme_end = value.iter().position(|&b| b == b' ').unwrap_or(value.len());
        let (scheme, rest) = value.split_at(scheme_end);
        let rest = rest.trim_ascii();
        if scheme.eq_ignore_ascii_case(b"bearer") {
            Self::Bearer(rest)
        } else if scheme.eq_ignore_ascii_case(b"basic") {
            Self::Basic(rest)
        } else if scheme.eq_ignore_ascii_case(b"apikey") {
            Self::ApiKey
        } else {
            Self::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn schemes_are_case_insensitive() {
        assert_eq!(
            Credentials::parse(b"Bearer abc"),
            Credentials::Bearer(b"abc")
        );
        assert_eq!(
            Credentials::parse(b"bEARER abc"),
            Credentials::Bearer(b"abc")
        );
        assert_eq!(
            Credentials::parse(b"Basic dTpw"),
            Credentials::Basic(b"dTpw")
        );
        assert_eq!(Credentials::parse(b"ApiKey x"), Credentials::ApiKey);
    }

    #[test]
    fn unknown_or_bare_values_are_no_credentials() {
        assert_eq!(Credentials::parse(b"abc"), Credentials::None);
        assert_eq!(Credentials::parse(b"Token abc"), Credentials::None);
        assert_eq!(Credentials::parse(b""), Credentials::None);
        assert_eq!(Credentials::parse(b"Bearer"), Credentials::Bearer(b""));
    }

    #[test]
    fn two_headers_are_refused() {
        let mut headers = HeaderMap::new();
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert_eq!(Credentials::from_headers(&headers), Credentials::Unusable);
    }
}
