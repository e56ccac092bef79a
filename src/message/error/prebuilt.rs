//! The answers a flood of refusals is made of, built once: the failed-authentication 401s
//! (documents in pieces around what varies, their fields with the three challenges) and the
//! throttled 429 (its fields, and `Retry-After` values for the usual waits). Each answer is then
//! a few copies instead of a JSON tree built, serialised and escaped, and a header map filled.

use std::sync::LazyLock;

use bytes::Bytes;
use http::header::{HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::HeaderMap;

use super::{ApiError, BAD_CREDENTIALS, CHALLENGES, REJECTED_ACCOUNT, REJECTED_END, REJECTED_NAME};
use crate::message::response;

pub(super) static BAD_CREDENTIALS_BODY: LazyLock<Bytes> = LazyLock::new(|| {
    Bytes::from(response::to_bytes(
        &ApiError::BadCredentials.to_json(),
        false,
    ))
});

pub(super) static THROTTLED_BODY: LazyLock<Bytes> = LazyLock::new(|| {
    let error = ApiError::AuthThrottled { retry_after: 0 };
    Bytes::from(response::to_bytes(&error.to_json(), false))
});

/// The failed-authentication document split around its reason (which it holds twice), so a
/// 401 with another reason is three copies and an escape instead of a JSON tree built and
/// serialised.
pub(super) static UNAUTHORIZED_PARTS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let body = String::from_utf8_lossy(&BAD_CREDENTIALS_BODY).into_owned();
    let reason = serde_json::to_string(BAD_CREDENTIALS).unwrap_or_default();
    body.split(reason.as_str()).map(str::to_owned).collect()
});

/// The rejected-token document in the stretches around its account and token name, each
/// named twice (`root_cause`, then `error`): before the first account, between the first token
/// name and the second account, after the second token name. `None` if the document is not
/// shaped as expected, and the general path writes every answer.
pub(super) static REJECTED_PIECES: LazyLock<Option<[Vec<u8>; 3]>> = LazyLock::new(|| {
    let [head, middle, tail] = &UNAUTHORIZED_PARTS[..] else {
        return None;
    };
    let opening = ["\"", REJECTED_ACCOUNT].concat();
    let closing = [REJECTED_END, "\""].concat();
    Some([
        [head.as_str(), &opening].concat().into_bytes(),
        [closing.as_str(), middle, &opening].concat().into_bytes(),
        [closing.as_str(), tail].concat().into_bytes(),
    ])
});

/// The 401 of a well-formed service token that did not authenticate. Account and token name are
/// what the client sent: copied between the prebuilt pieces when they need no JSON escaping (a
/// scan, no allocation but the body's), else escaped by the general path.
pub(super) fn rejected_token_body(account: &str, name: &str) -> Bytes {
    let pieces = match &*REJECTED_PIECES {
        Some(pieces) if response::json_plain(account) && response::json_plain(name) => pieces,
        _ => {
            return unauthorized_body(
                &[REJECTED_ACCOUNT, account, REJECTED_NAME, name, REJECTED_END].concat(),
            )
        }
    };
    let [head, middle, tail] = pieces;
    let named = account.len() + REJECTED_NAME.len() + name.len();
    let mut body = Vec::with_capacity(head.len() + middle.len() + tail.len() + 2 * named);
    for piece in [head, middle] {
        body.extend_from_slice(piece);
        body.extend_from_slice(account.as_bytes());
        body.extend_from_slice(REJECTED_NAME.as_bytes());
        body.extend_from_slice(name.as_bytes());
    }
    body.extend_from_slice(tail);
    Bytes::from(body)
}

/// A 401 `security_exception` document with `reason`, bytes as the general path writes them.
pub(super) fn unauthorized_body(reason: &str) -> Bytes {
    let Ok(reason) = serde_json::to_string(reason) else {
        return BAD_CREDENTIALS_BODY.clone();
    };
    let parts = &*UNAUTHORIZED_PARTS;
    let size = parts.iter().map(String::len).sum::<usize>() + 2 * reason.len();
    let mut body = String::with_capacity(size);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            body.push_str(&reason);
        }
        body.push_str(part);
    }
    Bytes::from(body)
}

/// Every 401's fields, challenges included, placed once and cloned per answer.
pub(super) static UNAUTHORIZED_HEADERS: LazyLock<HeaderMap> = LazyLock::new(|| {
    let mut headers = response::json_headers();
    for challenge in CHALLENGES {
        headers.append(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    headers
});

/// The fields of the answer to an address over its failure limit, the hot 429, with a
/// `Retry-After` whose value each answer replaces.
pub(super) static THROTTLED_HEADERS: LazyLock<HeaderMap> = LazyLock::new(|| {
    let mut headers = response::json_headers();
    headers.insert(RETRY_AFTER, seconds_value(1));
    headers
});

/// Waits up to this many seconds have their `Retry-After` value written once.
pub(super) const WRITTEN_SECONDS: usize = 120;

/// `0` to `WRITTEN_SECONDS` in decimal, right-aligned in three bytes.
static SECONDS_TEXT: [[u8; 3]; WRITTEN_SECONDS + 1] = {
    let mut text = [[b' '; 3]; WRITTEN_SECONDS + 1];
    let mut n = 0;
    while n <= WRITTEN_SECONDS {
        let mut rest = n;
        let mut at = 3;
        loop {
            at -= 1;
            // A decimal digit: below 10.
            text[n][at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        n += 1;
    }
    text
};

/// Static values for the usual waits: a clone is a pointer copy where `HeaderValue::from`
/// allocates and formats per answer.
pub(super) static SECONDS_VALUES: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    SECONDS_TEXT
        .iter()
        .filter_map(|text| {
            let digits = std::str::from_utf8(text).ok()?.trim_start();
            Some(HeaderValue::from_static(digits))
        })
        .collect()
});

/// A whole number of seconds as a header value.
pub(super) fn seconds_value(seconds: u64) -> HeaderValue {
    usize::try_from(seconds)
        .ok()
        .and_then(|n| SECONDS_VALUES.get(n))
        .cloned()
        .unwrap_or_else(|| HeaderValue::from(seconds))
}
