//! Duo's request signature (Auth API "Authentication" section, and what Duo's own clients
//! do): the canonical request, its HMAC with the secret key, and the HTTP Basic header.
//!
//! Signature v2: the canonical request is five lines joined by `\n` — the `Date` header,
//! the method in upper case, the API host in lower case, the path, and the parameters
//! (URL-encoded, sorted) — and the password is the hex HMAC-SHA1 of it.
//!
//! Signature v5: the same five lines, then the hex SHA-512 of the body (of "" for a GET)
//! and the hex SHA-512 of the `X-Duo-*` headers (names in lower case, sorted, names and
//! values joined by NUL); the password is the hex HMAC-SHA512. Parameters of a POST go in a
//! JSON body (keys sorted, no spaces, non-ASCII as `\uXXXX`), and the parameter line of
//! the canonical request is then empty.
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha512};

/// Which signature a request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigVersion {
    /// HMAC-SHA1 over date, method, host, path and parameters.
    V2,
    /// HMAC-SHA512 that also covers the body and the `X-Duo-*` headers.
    V5,
}

impl SigVersion {
    /// `2` → V2, `5` → V5, anything else `None`.
    pub fn from_number(n: u8) -> Option<Self> {
        match n {
            2 => Some(Self::V2),
            5 => Some(Self::V5),
            _ => None,
        }
    }

    /// The version number Duo uses for it.
    pub fn number(self) -> u8 {
        match self {
            Self::V2 => 2,
            Self::V5 => 5,
        }
    }
}

/// What a signature covers.
#[derive(Clone, Copy, Debug)]
pub struct Canonical<'a> {
    /// HTTP method (`GET`, `POST`); upper-cased when canonicalized.
    pub method: &'a str,
    /// The API host name (`api-XXXXXXXX.duosecurity.com`); lower-cased.
    pub host: &'a str,
    /// The request path (`/auth/v2/preauth`).
    pub path: &'a str,
    /// The exact value of the `Date` header.
    pub date: &'a str,
    /// Parameters that are signed as parameters: all of them for v2; for v5, those of a
    /// GET (the query) and none for a POST (they are in the body).
    pub params: &'a [(String, String)],
    /// The request body (v5 only; `""` for a GET).
    pub body: &'a str,
    /// `X-Duo-*` headers sent with the request (v5 only).
    pub x_duo_headers: &'a [(String, String)],
}

/// Percent-encodes as Duo does: every byte except ASCII letters, digits, `_`, `.`, `~` and
/// `-` becomes `%XX` (upper-case hex), so a space is `%20` and `@` is `%40`.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'~' | b'-') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0xf));
        }
    }
    out
}

fn hex_digit(n: u8) -> char {
    char::from(if n < 10 { b'0' + n } else { b'A' + n - 10 })
}

/// The canonical parameter string: each key and value encoded with [`encode`], pairs
/// sorted (by key, then value), joined as `k=v&k=v`. Also the form body and query string
/// this client sends.
pub fn canon_params(params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> =
        params.iter().map(|(k, v)| (encode(k), encode(v))).collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The JSON body of a v5 POST: an object of the parameters, keys sorted, no whitespace,
/// every non-ASCII character (and DEL) written as `\uXXXX` (UTF-16, lower-case hex).
/// With a repeated key only the last value is kept, as in a JSON object built from a map.
pub fn canon_json(params: &[(String, String)]) -> String {
    let mut map = std::collections::BTreeMap::new();
    for (k, v) in params {
        map.insert(k.as_str(), v.as_str());
    }
    let mut out = String::from("{");
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(&mut out, k);
        out.push(':');
        json_string(&mut out, v);
    }
    out.push('}');
    out
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// Lower-case hex of some bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha512_hex(data: &[u8]) -> String {
    hex(&Sha512::digest(data))
}

/// The hash of the `X-Duo-*` headers that a v5 signature covers: names lower-cased and
/// sorted, then `name NUL value NUL name NUL value …` hashed with SHA-512.
pub fn x_duo_headers_hash(headers: &[(String, String)]) -> String {
    let mut lowered: Vec<(String, &str)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    lowered.sort();
    let parts: Vec<&str> = lowered.iter().flat_map(|(k, v)| [k.as_str(), *v]).collect();
    sha512_hex(parts.join("\0").as_bytes())
}

/// The canonical request that is signed.
pub fn canonicalize(version: SigVersion, c: &Canonical<'_>) -> String {
    let mut lines = vec![
        c.date.to_string(),
        c.method.to_ascii_uppercase(),
        c.host.to_ascii_lowercase(),
        c.path.to_string(),
        canon_params(c.params),
    ];
    if version == SigVersion::V5 {
        lines.push(sha512_hex(c.body.as_bytes()));
        lines.push(x_duo_headers_hash(c.x_duo_headers));
    }
    lines.join("\n")
}

/// The hex HMAC of the canonical request: SHA1 for v2, SHA512 for v5.
pub fn signature(skey: &str, version: SigVersion, c: &Canonical<'_>) -> String {
    signature_with(skey, version, hmac_sha1_for(version), c)
}

/// v2 normally uses HMAC-SHA1; Duo's own clients sign v2 with SHA512 by default, which Duo
/// accepts too (the stand-in checks both).
fn hmac_sha1_for(version: SigVersion) -> bool {
    version == SigVersion::V2
}

/// [`signature`] with the HMAC's hash chosen: SHA1 when `sha1`, else SHA512.
pub fn signature_with(skey: &str, version: SigVersion, sha1: bool, c: &Canonical<'_>) -> String {
    let canonical = canonicalize(version, c);
    if sha1 {
        hmac_hex::<Hmac<Sha1>>(skey.as_bytes(), canonical.as_bytes())
    } else {
        hmac_hex::<Hmac<Sha512>>(skey.as_bytes(), canonical.as_bytes())
    }
}

/// Hex HMAC of `data`. HMAC takes keys of any length, so the key is never refused; were
/// it, the empty signature would simply be rejected by Duo.
fn hmac_hex<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> String {
    match <M as hmac::digest::KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            hex(&mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

/// The `Authorization` header value: `Basic base64(ikey:signature)`.
pub fn sign(ikey: &str, skey: &str, version: SigVersion, c: &Canonical<'_>) -> String {
    basic(ikey, &signature(skey, version, c))
}

/// `Basic base64(user:password)`.
pub(crate) fn basic(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn encoding_is_duos() {
        assert_eq!(encode("a b~c_d.e-f@g/h+"), "a%20b~c_d.e-f%40g%2Fh%2B");
        assert_eq!(encode("é"), "%C3%A9");
        assert_eq!(
            canon_params(&p(&[("b", "2"), ("a", "1"), ("a", "0")])),
            "a=0&a=1&b=2"
        );
        assert_eq!(canon_params(&[]), "");
    }

    #[test]
    fn json_is_pythons_canonical_form() {
        let j = canon_json(&p(&[("z", "é\u{7f}\"\\\n"), ("a", "😀")]));
        assert_eq!(j, r#"{"a":"\ud83d\ude00","z":"\u00e9\u007f\"\\\n"}"#);
    }

    #[test]
    fn v2_canonical_has_five_lines() {
        let params = p(&[("username", "root"), ("realname", "First Last")]);
        let c = Canonical {
            method: "post",
            host: "API-X.duosecurity.com",
            path: "/accounts/v1/account/list",
            date: "Tue, 21 Aug 2012 17:29:18 -0000",
            params: &params,
            body: "",
            x_duo_headers: &[],
        };
        assert_eq!(
            canonicalize(SigVersion::V2, &c),
            "Tue, 21 Aug 2012 17:29:18 -0000\nPOST\napi-x.duosecurity.com\n\
             /accounts/v1/account/list\nrealname=First%20Last&username=root"
        );
        assert_eq!(signature(&"k".repeat(40), SigVersion::V2, &c).len(), 40);
        assert_eq!(signature(&"k".repeat(40), SigVersion::V5, &c).len(), 128);
    }
}
