//! The property each fuzz target checks, one function per target: it takes the raw input and
//! panics when the parser breaks a property. The targets in `fuzz_targets/` call these, and so
//! does `tests/fuzz_corpus.rs`, which replays the committed corpora on stable: one definition of
//! what a finding is, for libFuzzer and for `cargo test` alike.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use tokengate::accounts::Accounts;
use tokengate::auth::credentials::Credentials;
use tokengate::config::{Config, Env, Overrides};
use tokengate::file_tokens::{self, edit};
use tokengate::h1_client::codec;
use tokengate::identity::token;
use tokengate::listen::scan::LengthScan;
use tokengate::policy::path::{self, PathError, PathKind};
use tokengate::{store, users};

// ---------------------------------------------------------------------------------------------
// framing

/// Inputs up to this long are fed split at every point; longer ones at sampled points, so one
/// run stays linear enough for the fuzzer.
const ALL_SPLITS: usize = 512;
/// Headers a head may have for the reference parser; more is an error there, and not compared.
const MAX_HEADERS: usize = 128;

/// `LengthScan` against `httparse`: the scan flags a head exactly when httparse reads one with
/// both `Content-Length` and `Transfer-Encoding`, while it is sure where the heads are; after a
/// body it does not frame it may flag more (text inside a body), never less. And its verdict is
/// the same however the bytes are split into reads.
pub fn framing(data: &[u8]) {
    let first = first_flag(data);
    split_invariance(data, first);
    against_httparse(data, first);
    // Each field on its own: a head given the other field must be flagged exactly when it had
    // this one.
    if let Some(line_end) = request_line_end(data) {
        for field in [
            &b"Transfer-Encoding: chunked\r\n"[..],
            b"Content-Length: 0\r\n",
        ] {
            let mut with = data[..line_end].to_vec();
            with.extend_from_slice(field);
            with.extend_from_slice(&data[line_end..]);
            let first = first_flag(&with);
            against_httparse(&with, first);
        }
    }
}

/// Where the scan first says "flagged" when fed one byte at a time.
fn first_flag(data: &[u8]) -> Option<usize> {
    let mut scan = LengthScan::default();
    data.iter().position(|b| scan.feed(std::slice::from_ref(b)))
}

/// The scan's verdict on `data` fed in one read.
fn flagged(data: &[u8]) -> bool {
    LengthScan::default().feed(data)
}

/// Fed whole, a prefix is flagged exactly when it holds the byte that raised the flag fed one at
/// a time; fed in two reads, or in uneven small ones, the whole is flagged exactly as fed whole.
fn split_invariance(data: &[u8], first: Option<usize>) {
    let raised = |end: usize| first.is_some_and(|at| at < end);
    assert_eq!(
        flagged(data),
        raised(data.len()),
        "fed whole vs byte by byte (first flag {first:?})"
    );
    let points: Vec<usize> = if data.len() <= ALL_SPLITS {
        (0..=data.len()).collect()
    } else {
        // Around line ends, where the scan's state changes, and evenly in between.
        let mut points: BTreeSet<usize> = (0..=64).map(|i| i * data.len() / 64).collect();
        let ends = data.iter().enumerate().filter(|(_, &b)| b == b'\n');
        for (at, _) in ends.take(256) {
            points.extend(at.saturating_sub(2)..=(at + 2).min(data.len()));
        }
        points.into_iter().collect()
    };
    for split in points {
        assert_eq!(
            flagged(&data[..split]),
            raised(split),
            "prefix of {split} bytes (first flag {first:?})"
        );
        let mut scan = LengthScan::default();
        let two = scan.feed(&data[..split]) | scan.feed(&data[split..]);
        assert_eq!(two, raised(data.len()), "split at {split}");
    }
    // Reads of 1 to 41 bytes, sizes taken from the data itself.
    let mut scan = LengthScan::default();
    let (mut rest, mut any, mut at) = (data, false, 0);
    while !rest.is_empty() {
        let size = (usize::from(data[at % data.len()]) % 41 + 1).min(rest.len());
        any |= scan.feed(&rest[..size]);
        rest = &rest[size..];
        at += size;
    }
    assert_eq!(any, raised(data.len()), "uneven reads");
}

/// Reads `data` as hyper would, one request after another (httparse for each head, the body by
/// its `Content-Length`), and holds the scan to what it read.
fn against_httparse(data: &[u8], first: Option<usize>) {
    let raised_by = |end: usize| first.is_some_and(|at| at < end);
    let mut at = 0;
    // Every head so far is one the scan passes over the body of, or one without a body: the
    // scan knows where the heads are, so it must not flag a head without both fields.
    let mut synced = true;
    while at < data.len() {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(len)) = request.parse(&data[at..]) else {
            return;
        };
        let end = at + len;
        let named = |name: &'static str| {
            request
                .headers
                .iter()
                .filter(move |h| h.name.eq_ignore_ascii_case(name))
        };
        let lengths: Vec<&httparse::Header<'_>> = named("content-length").collect();
        let chunked = named("transfer-encoding").next().is_some();
        if !lengths.is_empty() && chunked {
            assert!(
                raised_by(end),
                "head at {at}..{end} has both fields and was not flagged (first flag {first:?})"
            );
            return;
        }
        if synced {
            assert!(
                !raised_by(end),
                "flagged at {first:?}, within {at}..{end}, though no head so far had both fields"
            );
        }
        if chunked {
            // Where a chunked body ends is hyper's business; the scan reads on conservatively.
            return;
        }
        let Some(body) = body_length(&lengths) else {
            // hyper refuses the request and closes the connection.
            return;
        };
        let passed_over = lengths.len() == 1
            && matches!(request.method, Some("POST" | "PUT"))
            && named("expect").next().is_none()
            && plain_line(data, lengths[0]);
        synced &= lengths.is_empty() || passed_over;
        let Some(next) = usize::try_from(body).ok().and_then(|b| end.checked_add(b)) else {
            return;
        };
        at = next;
    }
}

/// The body length hyper reads from the `Content-Length` fields: every value (comma lists
/// included) plain digits and all equal; `None` when hyper refuses them.
fn body_length(lengths: &[&httparse::Header<'_>]) -> Option<u64> {
    let mut found = None;
    for header in lengths {
        for part in header.value.split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let n: u64 = std::str::from_utf8(part).ok()?.parse().ok()?;
            if found.is_some_and(|f| f != n) {
                return None;
            }
            found = Some(n);
        }
    }
    Some(found.unwrap_or(0))
}

/// A `Content-Length` line the scan reads the value of for sure: short enough to fit its
/// window whole, one value of at most 18 digits.
fn plain_line(data: &[u8], header: &httparse::Header<'_>) -> bool {
    let start = (header.name.as_ptr() as usize).wrapping_sub(data.as_ptr() as usize);
    let Some(line) = data.get(start..) else {
        return false;
    };
    let len = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    let value = header.value.trim_ascii();
    len <= 39 && (1..=18).contains(&value.len()) && value.iter().all(u8::is_ascii_digit)
}

/// Just past the request line's `\n`, after the empty lines httparse skips before it.
fn request_line_end(data: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        match data.get(at..) {
            Some([b'\r', b'\n', ..]) => at += 2,
            Some([b'\n', ..]) => at += 1,
            _ => break,
        }
    }
    let line = data.get(at..)?.iter().position(|&b| b == b'\n')?;
    Some(at + line + 1)
}

// ---------------------------------------------------------------------------------------------
// credentials

/// `Credentials::parse` names the scheme the value starts with and hands back the rest, trimmed;
/// `token::decode` never panics, and what it decodes re-encodes to the same parts; parts that
/// make a valid token survive `encode_raw` then `decode`.
pub fn credentials(data: &[u8]) {
    let scheme_end = data.iter().position(|&b| b == b' ').unwrap_or(data.len());
    let scheme = &data[..scheme_end];
    match Credentials::parse(data) {
        Credentials::Bearer(rest) => {
            assert!(scheme.eq_ignore_ascii_case(b"bearer"), "scheme {scheme:?}");
            assert_eq!(rest, data[scheme_end..].trim_ascii(), "rest not trimmed");
        }
        Credentials::Basic(rest) => {
            assert!(scheme.eq_ignore_ascii_case(b"basic"), "scheme {scheme:?}");
            assert_eq!(rest, data[scheme_end..].trim_ascii(), "rest not trimmed");
        }
        Credentials::ApiKey => assert!(scheme.eq_ignore_ascii_case(b"apikey")),
        Credentials::None => {
            for known in [&b"bearer"[..], b"basic", b"apikey"] {
                assert!(!scheme.eq_ignore_ascii_case(known), "{known:?} not read");
            }
        }
        Credentials::Unusable => panic!("one value is never several headers"),
    }

    let mut buf = [0u8; token::MAX_DECODED_LEN];
    for value in [
        data,
        data.get(scheme_end..).unwrap_or_default().trim_ascii(),
    ] {
        if let Some(decoded) = token::decode(value, &mut buf) {
            decoded_token_is_whole(&decoded);
        }
    }

    // Parts from the input, one a line: they round-trip when they make a valid token.
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let (Some(account), Some(name), Some(secret)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let valid = account
        .split_once('/')
        .is_some_and(|(ns, svc)| !ns.is_empty() && !svc.is_empty() && !svc.contains('/'))
        && !name.is_empty()
        && !name.contains('/')
        && !account.contains(':')
        && !name.contains(':');
    if !valid {
        return;
    }
    let value = token::encode_raw(account, name, secret);
    let mut padded = value.clone();
    while !padded.len().is_multiple_of(4) {
        padded.push('=');
    }
    for value in [value, padded] {
        let decoded = token::decode(value.as_bytes(), &mut buf);
        if value.len() > token::MAX_VALUE_LEN {
            assert!(decoded.is_none(), "a value past the cap decoded");
            continue;
        }
        let Some(decoded) = decoded else {
            panic!("valid parts did not round-trip: {account:?} {name:?}");
        };
        assert_eq!(decoded.account, account);
        assert_eq!(decoded.name, name);
        assert_eq!(decoded.secret, secret.as_bytes());
        let mut header = b"bEaReR ".to_vec();
        header.extend_from_slice(value.as_bytes());
        assert!(Credentials::parse(&header) == Credentials::Bearer(value.as_bytes()));
    }
}

/// A decoded token's parts fit together and encode back to a value that decodes the same.
fn decoded_token_is_whole(decoded: &token::ServiceToken<'_>) {
    assert_eq!(
        decoded.qualified,
        format!("{}/{}", decoded.account, decoded.name)
    );
    assert_eq!(
        decoded.account,
        format!("{}/{}", decoded.namespace, decoded.service)
    );
    assert!(!decoded.namespace.is_empty() && !decoded.service.is_empty());
    assert!(!decoded.name.is_empty() && !decoded.service.contains('/'));
    assert!(!decoded.name.contains('/') && !decoded.qualified.contains(':'));
    let Ok(secret) = std::str::from_utf8(decoded.secret) else {
        return;
    };
    let again = token::encode_raw(decoded.account, decoded.name, secret);
    let mut buf = [0u8; token::MAX_DECODED_LEN];
    let Some(redecoded) = token::decode(again.as_bytes(), &mut buf) else {
        panic!("a decoded token did not re-encode to a token");
    };
    assert_eq!(redecoded.qualified, decoded.qualified);
    assert_eq!(redecoded.secret, decoded.secret);
}

// ---------------------------------------------------------------------------------------------
// path

/// `path::classify` against a plain reading of the path (percent-decoded until nothing changes,
/// split at `/`, empty segments dropped): a dot segment is refused, the security prefixes are recognised, and the
/// normalised path it judged is judged the same again: a hop that normalises the path before
/// the next one reads it changes nothing.
pub fn path(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    let verdict = path::classify(&raw);
    let segments = decoded_segments(&raw);
    let dotted = segments.iter().any(|s| s == "." || s == "..");
    match verdict {
        Err(PathError::DotSegment) => assert!(dotted, "{raw:?} refused without a dot segment"),
        Ok(kind) => {
            assert!(!dotted, "{raw:?} passed with a dot segment: {segments:?}");
            assert_eq!(kind, kind_of(&segments), "{raw:?}");
            let normalised = format!("/{}", segments.join("/"));
            assert_eq!(
                path::classify(&normalised),
                Ok(kind),
                "{raw:?} normalises to {normalised:?}, which is judged otherwise"
            );
        }
    }
}

/// The path's segments once percent-decoded until nothing changes (as a chain of hops that each
/// decode once would read it; invalid UTF-8 replaced at the end), empty ones dropped. Decoded
/// round after round, unlike the parser: an independent reading.
fn decoded_segments(raw: &str) -> Vec<String> {
    let mut bytes = raw.as_bytes().to_vec();
    loop {
        let decoded = decode_once(&bytes);
        if decoded == bytes {
            break;
        }
        bytes = decoded;
    }
    String::from_utf8_lossy(&bytes)
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// One round of percent-decoding, left to right, as one hop does it.
fn decode_once(bytes: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = |i: usize| bytes.get(i).and_then(|&b| char::from(b).to_digit(16));
        match (bytes[at], hex(at + 1), hex(at + 2)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push((high * 16 + low) as u8);
                at += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                at += 1;
            }
        }
    }
    decoded
}

fn kind_of(segments: &[String]) -> PathKind {
    let starts = |prefix: &[&str]| {
        segments.len() >= prefix.len() && segments.iter().zip(prefix).all(|(s, p)| s == p)
    };
    if starts(&["_security"]) || starts(&["_xpack", "security"]) {
        PathKind::Security
    } else {
        PathKind::Other
    }
}

// ---------------------------------------------------------------------------------------------
// journal

/// Bytes of a journal's header.
const JOURNAL_HEADER: usize = 24;
/// The pepper of the journals the checks write (any non-zero one will do).
const PEPPER: [u8; 16] = *b"fuzz-pepper-0123";

/// The token journal's replay. The first byte picks a mode:
/// - raw: the rest is a whole journal file;
/// - torn: a journal the store's encoder wrote (ops from the input), cut at a point from the
///   input and zero-filled, as a crash leaves it;
/// - replaced: the same journal, its tail from the cut replaced by the input's bytes;
/// - flipped: the same journal, its bytes from the cut XORed with the input's bytes.
///
/// Replay never panics. Whatever it keeps, replaying exactly that again gives the same. A torn
/// journal replays to the tokens of its complete records, exactly; a corrupt tail never costs a
/// record before the cut, and every token it adds or takes away is named in the tail's bytes.
pub fn journal(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        replays_consistently(data);
        return;
    };
    if mode % 4 == 0 {
        replays_consistently(rest);
        return;
    }
    let (ops, rest) = journal_ops(rest);
    let borrowed: Vec<(&str, Option<[u8; 32]>)> =
        ops.iter().map(|(n, fp)| (n.as_str(), *fp)).collect();
    let written = store::write_journal(&PEPPER, &borrowed);
    // Where each record ends, and the live tokens there.
    let mut boundaries = vec![(JOURNAL_HEADER, BTreeSet::new())];
    let mut live = BTreeSet::new();
    let mut end = JOURNAL_HEADER;
    for (name, fp) in &ops {
        end += 8 + 3 + name.len() + if fp.is_some() { 32 } else { 0 };
        if fp.is_some() {
            live.insert(name.clone());
        } else {
            live.remove(name);
        }
        boundaries.push((end, live.clone()));
    }
    assert_eq!(end, written.len(), "record lengths");
    let (cut, tail) = match rest {
        [a, b, tail @ ..] => {
            let span = written.len() - JOURNAL_HEADER + 1;
            (
                JOURNAL_HEADER + usize::from(u16::from_le_bytes([*a, *b])) % span,
                tail,
            )
        }
        _ => (written.len(), rest),
    };
    // The last record boundary at or before the cut: everything before it is intact.
    let Some((intact, before)) = boundaries.iter().rev().find(|(end, _)| *end <= cut) else {
        panic!("no boundary before {cut}");
    };
    let file = match mode % 4 {
        1 => {
            let mut file = written[..cut].to_vec();
            file.resize(cut + tail.len(), 0);
            file
        }
        2 => [&written[..cut], tail].concat(),
        _ => {
            let mut file = written;
            for (byte, flip) in file[cut..].iter_mut().zip(tail) {
                *byte ^= flip;
            }
            file
        }
    };
    let replayed = replays_consistently(&file);
    if mode % 4 == 1 {
        assert_eq!(
            replayed,
            Some(Ok((before.iter().cloned().collect(), *intact))),
            "torn at {cut}"
        );
        return;
    }
    match replayed {
        Some(Ok((names, end))) => {
            assert!(end >= *intact, "kept {end} bytes, intact up to {intact}");
            let after = &file[*intact..];
            let names: BTreeSet<String> = names.into_iter().collect();
            for name in names.symmetric_difference(before) {
                assert!(
                    contains(after, name.as_bytes()),
                    "token [{name}] changed by a tail that does not name it"
                );
            }
        }
        Some(Err((offset, reason))) => assert!(
            offset >= *intact as u64,
            "corruption reported at {offset} ({reason}), intact up to {intact}"
        ),
        None => panic!("a journal with records read as an unfinished creation"),
    }
}

type Replay = Option<Result<(Vec<String>, usize), (u64, String)>>;
/// A journal op: a put with its fingerprint, or a delete.
type Op = (String, Option<[u8; 32]>);

/// Replays `file`; when it keeps a prefix, that prefix alone replays to the same tokens (the
/// store cuts the file there, and the next start must find what this one did). A bare header
/// with an all-zero pepper reads as an unfinished creation, which starts afresh: no tokens
/// either, only a new pepper.
fn replays_consistently(file: &[u8]) -> Replay {
    let replayed = store::replay_journal(file);
    match &replayed {
        Ok(Some((names, end))) => {
            assert!(*end <= file.len() && *end >= JOURNAL_HEADER, "end {end}");
            let again = store::replay_journal(&file[..*end]);
            let fresh = names.is_empty() && *end == JOURNAL_HEADER && again == Ok(None);
            assert!(
                fresh || again == Ok(Some((names.clone(), *end))),
                "replay of the kept prefix: {again:?}, not {names:?} up to {end}"
            );
        }
        Ok(None) => assert!(file.len() <= JOURNAL_HEADER, "a long file read as new"),
        Err((offset, _)) => assert!(*offset <= file.len() as u64),
    }
    replayed.transpose()
}

/// Up to 16 ops from the input's bytes, as the writer makes them: a put of an absent name (each
/// with its own fingerprint, no zero byte in it) or a delete of a present one.
fn journal_ops(data: &[u8]) -> (Vec<Op>, &[u8]) {
    let Some((&count, rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let count = usize::from(count % 16).min(rest.len());
    let (script, rest) = rest.split_at(count);
    let mut live = BTreeSet::new();
    let mut ops = Vec::new();
    for (i, &byte) in script.iter().enumerate() {
        let name = format!(
            "ns{}/svc/t{}{}",
            byte % 8,
            byte % 8,
            "x".repeat(usize::from(byte >> 5))
        );
        if live.remove(&name) {
            ops.push((name, None));
        } else {
            live.insert(name.clone());
            let mut fp = [0xA5; 32];
            fp[0] = i as u8 + 1;
            fp[31] = byte | 1;
            ops.push((name, Some(fp)));
        }
    }
    (ops, rest)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// users

/// The realm's reading of `users` and `users_roles` (split at the input's first NUL) never
/// panics, and `tokengate users list` shows every user the realm would authenticate with the
/// roles the realm would give it.
pub fn users(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (users_text, roles_text) = text.split_once('\0').unwrap_or((&text, ""));
    let realm = match users::read_texts(users_text, roles_text) {
        Ok(realm) => realm,
        Err(error) => {
            let message = error.to_string();
            assert!(
                message.starts_with("users:") || message.starts_with("users_roles:"),
                "{message}"
            );
            return;
        }
    };
    let listed = users::list_texts(users_text, roles_text);
    for user in realm {
        let Some((_, roles)) = listed.iter().find(|(name, _)| *name == user.name) else {
            panic!("realm user [{}] is not listed", user.name);
        };
        let granted: BTreeSet<&String> = user.roles.iter().collect();
        let shown: BTreeSet<&String> = roles.iter().collect();
        assert_eq!(granted, shown, "roles of [{}]", user.name);
    }
}

// ---------------------------------------------------------------------------------------------
// service_tokens

/// A valid `{SSHA256}` hash, cheap to parse, for the token the check adds.
const SSHA256: &str = "{SSHA256}AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
const ADDED: &str = "elastic/fleet-server/fuzz-added";

/// The built-in service accounts, read once.
fn accounts() -> &'static Accounts {
    static ACCOUNTS: OnceLock<Accounts> = OnceLock::new();
    ACCOUNTS.get_or_init(|| match Accounts::new(&[]) {
        Ok(accounts) => accounts,
        Err(error) => panic!("built-in accounts: {error}"),
    })
}

/// `service_tokens` parsing never panics, accounts for every meaningful line once (a token or a
/// numbered problem), and agrees with the editor: what it lists, what it adds and removes.
pub fn service_tokens(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parsed = file_tokens::parse(&text, accounts());
    let entries: Vec<_> = file_tokens::entries(&text).collect();
    assert_eq!(
        entries.len(),
        parsed.tokens.len() + parsed.problems.len(),
        "every line is a token or a problem"
    );
    let lines = text.lines().count();
    let mut seen = BTreeSet::new();
    for problem in &parsed.problems {
        assert!((1..=lines).contains(&problem.line), "line {}", problem.line);
        assert!(seen.insert(problem.line), "line {} twice", problem.line);
    }
    let listed = edit::names(&text, None);
    for (key, token) in &parsed.tokens {
        assert_eq!(
            *key,
            format!("{}/{}", token.account.as_str(), token.name.as_str())
        );
        assert!(listed.contains(key), "[{key}] not listed");
    }
    let keys: BTreeSet<&String> = parsed.tokens.keys().collect();
    for key in keys.iter().take(4) {
        let Ok(removed) = edit::remove(&text, key) else {
            panic!("[{key}] parsed but not removable");
        };
        let after = file_tokens::parse(&removed, accounts());
        let mut expected = keys.clone();
        expected.remove(key);
        assert_eq!(
            after.tokens.keys().collect::<BTreeSet<_>>(),
            expected,
            "removing [{key}]"
        );
    }
    match edit::add(&text, ADDED, SSHA256) {
        Ok(added) => {
            let after = file_tokens::parse(&added, accounts());
            let mut expected = keys.clone();
            let key = ADDED.to_owned();
            expected.insert(&key);
            assert_eq!(
                after.tokens.keys().collect::<BTreeSet<_>>(),
                expected,
                "adding"
            );
        }
        Err(_) => assert!(
            entries.iter().flatten().any(|(_, key, _)| *key == ADDED),
            "add refused without a line for it"
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// config

/// Configuration reading: any text gives a configuration or a list of problems, never a panic.
/// The input is the TOML, then optionally a NUL and command-line overrides (`listen=`,
/// `admin=`, `upstream=`, `data_dir=` lines), then a NUL and `NAME=value` environment lines.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let toml_text = parts.next().unwrap_or_default();
    // A `_file` key names a file to read: fuzzed, it could name /dev/zero, which never ends.
    if names_a_file(toml_text) {
        return;
    }
    let mut overrides = Overrides::default();
    for line in parts.next().unwrap_or_default().lines() {
        match line.split_once('=') {
            Some(("listen", v)) => overrides.listen = Some(v.to_owned()),
            Some(("admin", v)) => overrides.admin_listen = Some(v.to_owned()),
            Some(("upstream", v)) => overrides.upstream.push(v.to_owned()),
            Some(("data_dir", v)) => overrides.data_dir = Some(v.into()),
            _ => {}
        }
    }
    let env: Env = parts
        .next()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let read = if env.is_empty() {
        Config::from_toml("fuzz.toml", toml_text, &overrides)
    } else {
        Config::read("fuzz.toml", toml_text, None, &overrides, &env)
    };
    if let Err(error) = read {
        assert!(!error.problems.is_empty(), "an error without problems");
        assert!(
            error.problems.iter().all(|p| !p.is_empty()),
            "an empty problem"
        );
    }
}

/// Whether the TOML has a key ending in `_file`, at any depth.
fn names_a_file(text: &str) -> bool {
    fn walk(value: &toml::Value) -> bool {
        match value {
            toml::Value::Table(table) => table
                .iter()
                .any(|(key, value)| key.ends_with("_file") || walk(value)),
            toml::Value::Array(items) => items.iter().any(walk),
            _ => false,
        }
    }
    text.parse::<toml::Table>()
        .is_ok_and(|table| walk(&toml::Value::Table(table)))
}

// ---------------------------------------------------------------------------------------------
// node_answer

/// Inputs up to this long are read split at every point.
const ANSWER_ALL_SPLITS: usize = 256;

/// What the gateway's client made of a node's bytes: the head (status, fields, framing, whether
/// the connection may be reused), the body, the bytes after it, or the error.
#[derive(Debug, PartialEq, Eq)]
enum Answered {
    Read {
        status: u16,
        fields: Vec<(String, Vec<u8>)>,
        framing: codec::Framing,
        reusable: bool,
        body: Vec<u8>,
        after: Vec<u8>,
    },
    /// Nothing wrong so far, but the bytes ended before the head or body did.
    Unfinished,
    Failed(codec::CodecError),
}

/// A node's answer as the gateway's HTTP/1.1 client reads it (`h1_client::codec`): the first
/// byte picks the request method (`HEAD` when odd), the rest is the answer. Never panics; the
/// reading is the same whole, split at any point, or byte by byte; a length-framed body is
/// exactly its length, a body never holds more bytes than came, and a chunked body that is read
/// is read again the same after it is written out by the gateway's own chunk encoder.
pub fn node_answer(data: &[u8]) {
    let Some((&first, answer)) = data.split_first() else {
        return;
    };
    let head_request = first & 1 == 1;
    let whole = read_answer(answer, head_request, &[answer.len()]);
    let splits: Vec<usize> = if answer.len() <= ANSWER_ALL_SPLITS {
        (1..answer.len()).collect()
    } else {
        (1..answer.len())
            .step_by(answer.len() / ANSWER_ALL_SPLITS)
            .collect()
    };
    for at in splits {
        let split = read_answer(answer, head_request, &[at, answer.len() - at]);
        assert_eq!(split, whole, "split at {at}");
    }
    if answer.len() <= ANSWER_ALL_SPLITS {
        let bytewise = read_answer(answer, head_request, &vec![1; answer.len()]);
        assert_eq!(bytewise, whole, "byte by byte");
    }
    if let Answered::Read {
        framing,
        body,
        after,
        ..
    } = &whole
    {
        assert!(body.len() + after.len() <= answer.len());
        if let codec::Framing::Length(length) = framing {
            assert_eq!(body.len() as u64, *length);
        }
        if *framing == codec::Framing::Chunked {
            // Written out as the gateway writes a request body, and read back.
            let mut wire = Vec::new();
            for piece in body.chunks(7) {
                codec::encode_chunk_size(piece.len(), &mut wire);
                wire.extend_from_slice(piece);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
            let (again, rest) = read_chunked(&wire)
                .ok()
                .flatten()
                .expect("our own chunks read back");
            assert_eq!(&again, body);
            assert!(rest.is_empty());
        }
    }
}

/// Reads `answer` fed in reads of the given sizes.
fn read_answer(answer: &[u8], head_request: bool, reads: &[usize]) -> Answered {
    let mut buf = bytes::BytesMut::new();
    let mut indices = Vec::new();
    let mut fed = 0;
    let mut reads = reads.iter();
    let mut feed = |buf: &mut bytes::BytesMut| match reads.next() {
        Some(&n) => {
            buf.extend_from_slice(&answer[fed..fed + n]);
            fed += n;
            true
        }
        None => false,
    };
    let head = loop {
        match codec::parse_head(&mut buf, head_request, &mut indices) {
            Ok(Some(head)) => break head,
            Ok(None) if feed(&mut buf) => {}
            Ok(None) => return Answered::Unfinished,
            Err(error) => return Answered::Failed(error),
        }
    };
    let mut body = Vec::new();
    let mut chunked = codec::Chunked::default();
    let mut left = match head.framing {
        codec::Framing::Length(length) => length,
        _ => 0,
    };
    loop {
        let done = match head.framing {
            codec::Framing::Empty => true,
            codec::Framing::Length(_) => {
                let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                body.extend_from_slice(&buf.split_to(take));
                left -= take as u64;
                left == 0
            }
            codec::Framing::Close => {
                body.extend_from_slice(&buf.split());
                false
            }
            codec::Framing::Chunked => match chunked.step(&mut buf) {
                Ok(codec::Step::Data(data)) => {
                    body.extend_from_slice(&data);
                    continue;
                }
                Ok(codec::Step::End) => true,
                Ok(codec::Step::More) => false,
                Err(error) => return Answered::Failed(error),
            },
        };
        if done {
            break;
        }
        if !feed(&mut buf) {
            // The close ends a close-framed body; any other is cut short.
            if head.framing == codec::Framing::Close {
                break;
            }
            return Answered::Unfinished;
        }
    }
    let mut after = buf.to_vec();
    after.extend_from_slice(&answer[fed..]);
    let mut fields: Vec<(String, Vec<u8>)> = head
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    fields.sort();
    Answered::Read {
        status: head.status.as_u16(),
        fields,
        framing: head.framing,
        reusable: head.reusable,
        body,
        after,
    }
}

/// A chunked body's data, and the bytes after its end.
type Decoded = (Vec<u8>, Vec<u8>);

/// A chunked body read whole; `None` when the bytes end first.
fn read_chunked(wire: &[u8]) -> Result<Option<Decoded>, codec::CodecError> {
    let mut buf = bytes::BytesMut::from(wire);
    let mut chunked = codec::Chunked::default();
    let mut data = Vec::new();
    loop {
        match chunked.step(&mut buf)? {
            codec::Step::Data(bytes) => data.extend_from_slice(&bytes),
            codec::Step::End => return Ok(Some((data, buf.to_vec()))),
            codec::Step::More => return Ok(None),
        }
    }
}
