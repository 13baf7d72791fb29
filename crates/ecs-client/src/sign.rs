//! Request signing for the ECS OpenAPI (RPC style).
//!
//! Two schemes, both verified against the official SDK's own code (see
//! `shared/reference/ecs-api.md`):
//! - V3 `ACS3-HMAC-SHA256`: what the current SDKs send by default.
//! - V1 HMAC-SHA1: the legacy RPC signature (`aliyun-python-sdk-core`, or the new SDK with
//!   `signature_algorithm='v2'`).
//!
//! The same canonicalisation serves the client (which signs) and the simulator (which
//! verifies), so the two can never disagree about what a signature covers.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The V3 algorithm name, as it appears at the start of `Authorization` and of the string to sign.
pub const V3_ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// Hex SHA-256 of the empty body: what `x-acs-content-sha256` carries for a bodiless request.
pub const EMPTY_BODY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Which signature scheme a request uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SignatureVersion {
    /// `ACS3-HMAC-SHA256`, header-based (the default of the official SDKs).
    #[default]
    V3,
    /// Legacy RPC HMAC-SHA1, parameter-based.
    V1,
}

/// RFC 3986 percent-encoding as Alibaba Cloud canonicalises it: only `A-Z a-z 0-9 - _ . ~` stay
/// as they are; every other byte of the UTF-8 form becomes `%XX` (upper-case hex). So a space is
/// `%20`, `*` is `%2A`, `+` is `%2B`, and `~` is left alone.
pub fn percent_encode(input: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(input.len() + input.len() / 2);
    for &byte in input.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push('%');
            out.push(HEX[(byte >> 4) as usize] as char);
            out.push(HEX[(byte & 0x0f) as usize] as char);
        }
    }
    out
}

/// `k=v` pairs, sorted by key (then value, so repeated keys are deterministic), each side
/// percent-encoded, joined by `&`. The canonical query of V3 and the canonicalized parameters of V1.
pub fn canonical_query<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    pairs.sort_unstable();
    let mut out = String::new();
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&percent_encode(key));
        out.push('=');
        out.push_str(&percent_encode(value));
    }
    out
}

/// Hex SHA-256 of a request body (the value of `x-acs-content-sha256`).
pub fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// The parts of a request that a V3 signature covers.
#[derive(Debug, Clone, Copy)]
pub struct V3Input<'a> {
    /// HTTP method, upper-case (`POST`, `GET`).
    pub method: &'a str,
    /// The URI path; `/` for the RPC-style ECS API.
    pub path: &'a str,
    /// Query parameters as raw (decoded) strings.
    pub query: &'a [(String, String)],
    /// The signed headers as (name, value); names in any case, values untrimmed.
    pub headers: &'a [(String, String)],
    /// Hex SHA-256 of the body, as sent in `x-acs-content-sha256`.
    pub payload_hash: &'a str,
}

impl V3Input<'_> {
    /// Lower-cased, sorted header names joined by `;`.
    pub fn signed_headers(&self) -> String {
        let mut names: Vec<String> = self
            .headers
            .iter()
            .map(|(name, _)| name.to_ascii_lowercase())
            .collect();
        names.sort_unstable();
        names.dedup();
        names.join(";")
    }

    /// The canonical request (the text whose hash is signed).
    pub fn canonical_request(&self) -> String {
        let mut headers: Vec<(String, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.trim()))
            .collect();
        headers.sort_unstable();
        let mut canonical_headers = String::new();
        for (name, value) in &headers {
            canonical_headers.push_str(name);
            canonical_headers.push(':');
            canonical_headers.push_str(value);
            canonical_headers.push('\n');
        }
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            self.method,
            self.path,
            canonical_query(self.query),
            canonical_headers,
            self.signed_headers(),
            self.payload_hash
        )
    }

    /// `ACS3-HMAC-SHA256\n` + hex(sha256(canonical request)).
    pub fn string_to_sign(&self) -> String {
        format!(
            "{V3_ALGORITHM}\n{}",
            sha256_hex(self.canonical_request().as_bytes())
        )
    }

    /// Hex HMAC-SHA256 of the string to sign, keyed by the AccessKey secret.
    pub fn signature(&self, access_key_secret: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(access_key_secret.as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(self.string_to_sign().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The full `Authorization` header value.
    pub fn authorization(&self, access_key_id: &str, access_key_secret: &str) -> String {
        format!(
            "{V3_ALGORITHM} Credential={access_key_id},SignedHeaders={},Signature={}",
            self.signed_headers(),
            self.signature(access_key_secret)
        )
    }
}

/// A parsed V3 `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V3Authorization {
    pub access_key_id: String,
    /// Lower-case header names, in the order given.
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Why an `Authorization` header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizationError {
    #[error("the Authorization header does not start with {V3_ALGORITHM}")]
    WrongAlgorithm,
    #[error("the Authorization header has no {0} part")]
    MissingPart(&'static str),
}

/// Parses `ACS3-HMAC-SHA256 Credential=ID,SignedHeaders=a;b,Signature=hex`.
pub fn parse_v3_authorization(header: &str) -> Result<V3Authorization, AuthorizationError> {
    let rest = header
        .trim()
        .strip_prefix(V3_ALGORITHM)
        .ok_or(AuthorizationError::WrongAlgorithm)?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    Ok(V3Authorization {
        access_key_id: credential
            .ok_or(AuthorizationError::MissingPart("Credential"))?
            .to_string(),
        signed_headers: signed
            .ok_or(AuthorizationError::MissingPart("SignedHeaders"))?
            .split(';')
            .filter(|s| !s.is_empty())
            .map(|s| s.trim().to_ascii_lowercase())
            .collect(),
        signature: signature
            .ok_or(AuthorizationError::MissingPart("Signature"))?
            .to_string(),
    })
}

/// V1 string to sign: `METHOD&%2F&percent(canonicalized params)`. `params` must not include
/// `Signature`.
pub fn v1_string_to_sign<K: AsRef<str>, V: AsRef<str>>(method: &str, params: &[(K, V)]) -> String {
    format!(
        "{method}&{}&{}",
        percent_encode("/"),
        percent_encode(&canonical_query(params))
    )
}

/// V1 signature: base64(HMAC-SHA1(secret + "&", string to sign)).
pub fn v1_signature(access_key_secret: &str, string_to_sign: &str) -> String {
    let key = format!("{access_key_secret}&");
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(key.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Compares two signatures in time independent of where they first differ.
pub fn signatures_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn v3_vector_from_the_official_sdk() {
        let query = owned(&[
            ("InstanceId", "i-bp67acfmxazb4ph1234"),
            ("InitLocalDisk", "false"),
        ]);
        let headers = owned(&[
            ("host", "ecs.cn-hangzhou.aliyuncs.com"),
            ("x-acs-action", "StartInstance"),
            ("x-acs-version", "2014-05-26"),
            ("x-acs-date", "2026-11-22T08:00:00Z"),
            (
                "x-acs-signature-nonce",
                "6a1f3c2e-0b4d-4e8a-9c71-2f5d8e9a0b13",
            ),
            ("x-acs-content-sha256", EMPTY_BODY_SHA256),
        ]);
        let input = V3Input {
            method: "POST",
            path: "/",
            query: &query,
            headers: &headers,
            payload_hash: EMPTY_BODY_SHA256,
        };
        assert_eq!(
            input.authorization("testid", "testsecret"),
            "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=8f954c3cf618f1ea9446a5e3616b231194e9a53462685fddd5c9713d0531a728"
        );
    }

    #[test]
    fn v3_vector_from_the_public_documentation() {
        let query = owned(&[
            (
                "ImageId",
                "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
            ),
            ("RegionId", "cn-shanghai"),
        ]);
        let headers = owned(&[
            ("host", "ecs.cn-shanghai.aliyuncs.com"),
            ("x-acs-action", "RunInstances"),
            ("x-acs-version", "2014-05-26"),
            ("x-acs-date", "2023-10-26T10:22:32Z"),
            ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
            ("x-acs-content-sha256", EMPTY_BODY_SHA256),
        ]);
        let input = V3Input {
            method: "POST",
            path: "/",
            query: &query,
            headers: &headers,
            payload_hash: EMPTY_BODY_SHA256,
        };
        assert_eq!(
            input.signature("YourAccessKeySecret"),
            "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
        );
    }

    #[test]
    fn v1_worked_example_from_the_official_documentation() {
        let params = [
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ];
        let sts = v1_string_to_sign("GET", &params);
        assert_eq!(
            v1_signature("testsecret", &sts),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
    }

    #[test]
    fn percent_encoding_of_the_characters_sdks_disagree_on() {
        assert_eq!(percent_encode("a b"), "a%20b");
        assert_eq!(percent_encode("*"), "%2A");
        assert_eq!(percent_encode("~"), "~");
        assert_eq!(percent_encode("+"), "%2B");
        assert_eq!(percent_encode("/"), "%2F");
        assert_eq!(percent_encode("é"), "%C3%A9");
        assert_eq!(percent_encode("[\"i-a\"]"), "%5B%22i-a%22%5D");
    }

    #[test]
    fn authorization_header_round_trips() {
        let parsed = parse_v3_authorization(
            "ACS3-HMAC-SHA256 Credential=ak,SignedHeaders=host;x-acs-date,Signature=abc",
        )
        .unwrap();
        assert_eq!(parsed.access_key_id, "ak");
        assert_eq!(parsed.signed_headers, vec!["host", "x-acs-date"]);
        assert_eq!(parsed.signature, "abc");
        assert_eq!(
            parse_v3_authorization("HMAC-SHA1 x"),
            Err(AuthorizationError::WrongAlgorithm)
        );
        assert_eq!(
            parse_v3_authorization("ACS3-HMAC-SHA256 Credential=ak,Signature=abc"),
            Err(AuthorizationError::MissingPart("SignedHeaders"))
        );
    }

    #[test]
    fn signature_comparison() {
        assert!(signatures_equal("abc", "abc"));
        assert!(!signatures_equal("abc", "abd"));
        assert!(!signatures_equal("abc", "ab"));
    }

    proptest! {
        /// Every byte: unreserved bytes pass through, every other byte is exactly `%XX`.
        #[test]
        fn every_byte_is_encoded_canonically(byte in 0u8..=127) {
            let s = (byte as char).to_string();
            let encoded = percent_encode(&s);
            if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
                prop_assert_eq!(encoded, s);
            } else {
                prop_assert_eq!(encoded, format!("%{byte:02X}"));
            }
        }

        /// Any string: the encoding uses only unreserved characters and `%`, and decodes back.
        #[test]
        fn encoding_is_reversible(s in any::<String>()) {
            let encoded = percent_encode(&s);
            prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b)));
            let mut bytes = Vec::new();
            let raw = encoded.as_bytes();
            let mut i = 0;
            while i < raw.len() {
                if raw[i] == b'%' {
                    let hex = std::str::from_utf8(&raw[i + 1..i + 3]).unwrap();
                    bytes.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 3;
                } else {
                    bytes.push(raw[i]);
                    i += 1;
                }
            }
            prop_assert_eq!(String::from_utf8(bytes).unwrap(), s);
        }

        /// The canonical query does not depend on the order parameters were given in.
        #[test]
        fn canonical_query_ignores_order(mut params in proptest::collection::vec(("[a-zA-Z]{1,6}", ".{0,8}"), 0..8)) {
            let first = canonical_query(&params);
            params.reverse();
            prop_assert_eq!(first, canonical_query(&params));
        }
    }
}
