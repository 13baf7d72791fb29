//! Verifies V3 (`ACS3-HMAC-SHA256`) and V1 (HMAC-SHA1) signatures with the configured keys,
//! using the very functions the client signs with (`ecs_client::sign`).
//!
//! Checks, in order: the request carries a readable signature (`IncompleteSignature`), the key
//! exists (`InvalidAccessKeyId.NotFound`), the timestamp is within 15 minutes
//! (`InvalidTimeStamp.*`), the signature matches over the body actually received
//! (`SignatureDoesNotMatch`), the STS token fits the key (`MissingSecurityToken`,
//! `InvalidSecurityToken.MismatchWithAccessKey`), and the nonce is fresh (`SignatureNonceUsed`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, RwLock};

use axum::http::HeaderMap;
use jiff::{SignedDuration, Timestamp};

use crate::calls::Signature;
use crate::codes::SimError;
use crate::config::KeySpec;
use ecs_client::sign::{
    V3Input, parse_v3_authorization, sha256_hex, signatures_equal, v1_signature, v1_string_to_sign,
};

/// How far a request's timestamp may be from the server's clock, either way.
pub(crate) const TIMESTAMP_WINDOW: SignedDuration = SignedDuration::from_mins(15);

/// A request as the verifier sees it.
pub(crate) struct Incoming<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Decoded query parameters.
    pub query: &'a [(String, String)],
    /// Decoded form-body parameters (empty unless the body is a form).
    pub form: &'a [(String, String)],
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// What was learnt about the caller, whether or not verification succeeded (for the log).
#[derive(Debug, Default)]
pub(crate) struct Caller {
    pub signature: Option<Signature>,
    pub access_key_id: Option<String>,
}

/// The keys and the nonces seen recently.
pub(crate) struct Verifier {
    keys: RwLock<HashMap<String, KeySpec>>,
    nonces: Mutex<NonceMemory>,
}

impl Verifier {
    pub(crate) fn new(keys: Vec<KeySpec>) -> Self {
        Self {
            keys: RwLock::new(keys.into_iter().map(|k| (k.id.clone(), k)).collect()),
            nonces: Mutex::new(NonceMemory::default()),
        }
    }

    pub(crate) fn add_key(&self, key: KeySpec) {
        self.keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.id.clone(), key);
    }

    pub(crate) fn replace_keys(&self, keys: Vec<KeySpec>) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) =
            keys.into_iter().map(|k| (k.id.clone(), k)).collect();
        self.nonces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn key(&self, id: &str) -> Result<KeySpec, SimError> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| SimError::known("InvalidAccessKeyId.NotFound"))
    }

    /// Verifies the request's signature; `now` is the wall clock.
    pub(crate) fn verify(
        &self,
        req: &Incoming<'_>,
        now: Timestamp,
        caller: &mut Caller,
    ) -> Result<(), SimError> {
        if let Some(auth) = req.headers.get("authorization") {
            caller.signature = Some(Signature::V3);
            let auth = auth.to_str().map_err(|_| {
                SimError::incomplete_signature("The Authorization header is not text.")
            })?;
            self.verify_v3(req, auth, now, caller)
        } else if param(req, "Signature").is_some() || param(req, "AccessKeyId").is_some() {
            caller.signature = Some(Signature::V1);
            self.verify_v1(req, now, caller)
        } else {
            Err(SimError::incomplete_signature(
                "The request carries neither an Authorization header nor a Signature parameter.",
            ))
        }
    }

    fn verify_v3(
        &self,
        req: &Incoming<'_>,
        auth: &str,
        now: Timestamp,
        caller: &mut Caller,
    ) -> Result<(), SimError> {
        let parsed = parse_v3_authorization(auth)
            .map_err(|e| SimError::incomplete_signature(&format!("{e}.")))?;
        caller.access_key_id = Some(parsed.access_key_id.clone());
        let key = self.key(&parsed.access_key_id)?;
        let date = header(req.headers, "x-acs-date")
            .ok_or_else(|| SimError::incomplete_signature("The x-acs-date header is missing."))?;
        check_timestamp(&date, now)?;
        let nonce = header(req.headers, "x-acs-signature-nonce").ok_or_else(|| {
            SimError::incomplete_signature("The x-acs-signature-nonce header is missing.")
        })?;
        for required in [
            "host",
            "x-acs-date",
            "x-acs-signature-nonce",
            "x-acs-action",
        ] {
            if !parsed.signed_headers.iter().any(|h| h == required) {
                return Err(SimError::incomplete_signature(&format!(
                    "SignedHeaders must include {required}."
                )));
            }
        }
        let mut headers = Vec::with_capacity(parsed.signed_headers.len());
        for name in &parsed.signed_headers {
            let value = header(req.headers, name).ok_or_else(|| {
                SimError::incomplete_signature(&format!(
                    "The signed header {name} is not in the request."
                ))
            })?;
            headers.push((name.clone(), value));
        }
        // The server hashes the body it received: a body that does not match the client's
        // x-acs-content-sha256 therefore fails the signature.
        let payload_hash = sha256_hex(req.body);
        let input = V3Input {
            method: req.method,
            path: req.path,
            query: req.query,
            headers: &headers,
            payload_hash: &payload_hash,
        };
        let claimed_hash_ok = header(req.headers, "x-acs-content-sha256")
            .is_none_or(|claimed| claimed.eq_ignore_ascii_case(&payload_hash));
        if !claimed_hash_ok || !signatures_equal(&input.signature(&key.secret), &parsed.signature) {
            return Err(SimError::signature_does_not_match(&input.string_to_sign()));
        }
        check_token(&key, header(req.headers, "x-acs-security-token").as_deref())?;
        self.use_nonce(&nonce, now)
    }

    fn verify_v1(
        &self,
        req: &Incoming<'_>,
        now: Timestamp,
        caller: &mut Caller,
    ) -> Result<(), SimError> {
        let key_id = param(req, "AccessKeyId").ok_or_else(|| {
            SimError::incomplete_signature("The AccessKeyId parameter is missing.")
        })?;
        caller.access_key_id = Some(key_id.to_string());
        let signature = param(req, "Signature")
            .ok_or_else(|| SimError::incomplete_signature("The Signature parameter is missing."))?;
        let key = self.key(key_id)?;
        match param(req, "SignatureMethod") {
            Some("HMAC-SHA1") => {}
            other => {
                return Err(SimError::incomplete_signature(&format!(
                    "SignatureMethod must be HMAC-SHA1, not {other:?}."
                )));
            }
        }
        let timestamp =
            param(req, "Timestamp").ok_or_else(|| SimError::missing_parameter("Timestamp"))?;
        check_timestamp(timestamp, now)?;
        let nonce = param(req, "SignatureNonce")
            .ok_or_else(|| SimError::missing_parameter("SignatureNonce"))?;
        let signed: Vec<(&str, &str)> = req
            .query
            .iter()
            .chain(req.form)
            .filter(|(k, _)| k != "Signature")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let string_to_sign = v1_string_to_sign(req.method, &signed);
        if !signatures_equal(&v1_signature(&key.secret, &string_to_sign), signature) {
            return Err(SimError::signature_does_not_match(&string_to_sign));
        }
        check_token(&key, param(req, "SecurityToken"))?;
        self.use_nonce(nonce, now)
    }

    fn use_nonce(&self, nonce: &str, now: Timestamp) -> Result<(), SimError> {
        let mut nonces = self.nonces.lock().unwrap_or_else(|e| e.into_inner());
        if nonces.insert(nonce, now) {
            Ok(())
        } else {
            Err(SimError::known("SignatureNonceUsed"))
        }
    }
}

fn param<'a>(req: &'a Incoming<'_>, name: &str) -> Option<&'a str> {
    req.query
        .iter()
        .chain(req.form)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// All values of a header, sorted and joined by `,` as the SDK canonicalises repeats.
fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    Some(values.join(","))
}

fn check_timestamp(value: &str, now: Timestamp) -> Result<(), SimError> {
    let ts: Timestamp = value
        .parse()
        .map_err(|_| SimError::known("InvalidTimeStamp.Format"))?;
    let skew = now.duration_since(ts).abs();
    if skew > TIMESTAMP_WINDOW {
        return Err(SimError::known("InvalidTimeStamp.Expired"));
    }
    Ok(())
}

fn check_token(key: &KeySpec, sent: Option<&str>) -> Result<(), SimError> {
    match (&key.security_token, sent) {
        (None, None) => Ok(()),
        (Some(_), None | Some("")) => Err(SimError::known("MissingSecurityToken")),
        (Some(want), Some(got)) if signatures_equal(want, got) => Ok(()),
        _ => Err(SimError::known(
            "InvalidSecurityToken.MismatchWithAccessKey",
        )),
    }
}

/// Nonces seen in the last 30 minutes. A replay of a request older than that fails the
/// 15-minute timestamp check anyway (its timestamp was at most 15 minutes ahead when first
/// seen), so the memory is bounded by the request rate times 30 minutes.
#[derive(Default)]
struct NonceMemory {
    seen: HashSet<String>,
    order: VecDeque<(Timestamp, String)>,
}

impl NonceMemory {
    const KEEP: SignedDuration = SignedDuration::from_mins(30);

    /// Records `nonce`; false if it was already there.
    fn insert(&mut self, nonce: &str, now: Timestamp) -> bool {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) <= Self::KEEP {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        if !self.seen.insert(nonce.to_string()) {
            return false;
        }
        self.order.push_back((now, nonce.to_string()));
        true
    }

    fn clear(&mut self) {
        self.seen.clear();
        self.order.clear();
    }
}

/// Decodes `application/x-www-form-urlencoded` text (also a query string): `+` is a space,
/// `%XX` a byte; malformed escapes are kept as they are.
pub(crate) fn decode_form(input: &[u8]) -> Vec<(String, String)> {
    input
        .split(|&b| b == b'&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut kv = part.splitn(2, |&b| b == b'=');
            let key = decode(kv.next().unwrap_or_default());
            let value = decode(kv.next().unwrap_or_default());
            (key, value)
        })
        .collect()
}

fn decode(input: &[u8]) -> String {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < input.len() => match (hex(input[i + 1]), hex(input[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        assert_eq!(
            decode_form(b"a=1&b=x+y&c=%5B%22i-a%22%5D&d=&e=100%&f=%zz"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), "[\"i-a\"]".into()),
                ("d".into(), "".into()),
                ("e".into(), "100%".into()),
                ("f".into(), "%zz".into()),
            ]
        );
        assert_eq!(decode_form(b"k=%41"), vec![("k".into(), "A".into())]);
    }

    #[test]
    fn nonces_are_refused_twice_then_forgotten_after_the_window() {
        let mut memory = NonceMemory::default();
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert!(memory.insert("n1", t0));
        assert!(!memory.insert("n1", t0 + SignedDuration::from_mins(29)));
        assert!(memory.insert("n2", t0 + SignedDuration::from_mins(31)));
        assert_eq!(memory.seen.len(), 1, "n1 expired, only n2 kept");
    }

    #[test]
    fn timestamps_outside_fifteen_minutes_are_expired() {
        let now: Timestamp = "2026-01-01T00:30:00Z".parse().unwrap();
        assert!(check_timestamp("2026-01-01T00:15:00Z", now).is_ok());
        assert_eq!(
            check_timestamp("2026-01-01T00:14:59Z", now)
                .unwrap_err()
                .code,
            "InvalidTimeStamp.Expired"
        );
        assert_eq!(
            check_timestamp("2026-01-01T00:45:01Z", now)
                .unwrap_err()
                .code,
            "InvalidTimeStamp.Expired"
        );
        assert_eq!(
            check_timestamp("yesterday", now).unwrap_err().code,
            "InvalidTimeStamp.Format"
        );
    }
}
