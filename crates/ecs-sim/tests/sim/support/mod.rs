//! A minimal signed ECS client for the simulator's integration tests, built on the crate's own
//! signing functions, with hooks to break a signature on purpose.
#![allow(dead_code)]

use ecs_client::sign::{
    EMPTY_BODY_SHA256, V3Input, canonical_query, sha256_hex, v1_signature, v1_string_to_sign,
};
use serde_json::Value;

pub const KEY: &str = "test-ak";
pub const SECRET: &str = "test-sk";

/// What a request got back.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["Code"].as_str().unwrap_or("")
    }

    /// Asserts an ECS error answer: status, code and the exact error-body shape.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "{:#}",
            self.body
        );
        let mut keys: Vec<&str> = self
            .body
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["Code", "HostId", "Message", "Recommend", "RequestId"]
        );
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Value {
        assert_eq!(self.status, 200, "{:#}", self.body);
        assert!(self.body["RequestId"].is_string());
        &self.body
    }
}

/// Knobs to produce bad requests.
#[derive(Clone, Default)]
pub struct Tweak {
    pub date: Option<String>,
    pub nonce: Option<String>,
    pub secret: Option<String>,
    pub key: Option<String>,
    pub token: Option<String>,
    /// A form body (V3: signed with its hash; see `claimed_hash`).
    pub body: Option<String>,
    /// Send this x-acs-content-sha256 instead of the body's.
    pub claimed_hash: Option<String>,
}

pub struct Client {
    pub endpoint: String,
    pub host: String,
    http: reqwest::Client,
}

pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub fn nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "nonce-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl Client {
    pub fn new(addr: std::net::SocketAddr) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            endpoint: format!("http://{addr}"),
            host: addr.to_string(),
            http: reqwest::Client::new(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("the simulator answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, body }
    }

    /// A V3-signed POST with the parameters in the query string (what the SDK sends).
    pub async fn v3(&self, action: &str, params: &[(&str, &str)]) -> Reply {
        self.v3_with(action, params, Tweak::default()).await
    }

    pub async fn v3_with(&self, action: &str, params: &[(&str, &str)], t: Tweak) -> Reply {
        let query: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let body = t.body.clone().unwrap_or_default();
        let hash = if body.is_empty() {
            EMPTY_BODY_SHA256.to_string()
        } else {
            sha256_hex(body.as_bytes())
        };
        let claimed = t.claimed_hash.clone().unwrap_or_else(|| hash.clone());
        let mut headers = vec![
            ("host".to_string(), self.host.clone()),
            ("x-acs-action".to_string(), action.to_string()),
            ("x-acs-version".to_string(), "2014-05-26".to_string()),
            ("x-acs-date".to_string(), t.date.clone().unwrap_or_else(now)),
            (
                "x-acs-signature-nonce".to_string(),
                t.nonce.clone().unwrap_or_else(nonce),
            ),
            ("x-acs-content-sha256".to_string(), claimed.clone()),
        ];
        if let Some(token) = &t.token {
            headers.push(("x-acs-security-token".to_string(), token.clone()));
        }
        if t.body.is_some() {
            headers.push((
                "content-type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ));
        }
        let input = V3Input {
            method: "POST",
            path: "/",
            query: &query,
            headers: &headers,
            payload_hash: &claimed,
        };
        let auth = input.authorization(
            t.key.as_deref().unwrap_or(KEY),
            t.secret.as_deref().unwrap_or(SECRET),
        );
        let url = format!("{}/?{}", self.endpoint, canonical_query(&query));
        let mut req = self.http.post(url).header("authorization", auth).body(body);
        for (name, value) in headers.iter().filter(|(n, _)| n != "host") {
            req = req.header(name.as_str(), value.as_str());
        }
        self.send(req).await
    }

    /// A V1-signed request: GET with every parameter in the query, or POST with the action's
    /// parameters in a form body.
    pub async fn v1(&self, method: &str, action: &str, params: &[(&str, &str)]) -> (Reply, String) {
        self.v1_with(method, action, params, Tweak::default()).await
    }

    /// Also returns the string to sign the client used.
    pub async fn v1_with(
        &self,
        method: &str,
        action: &str,
        params: &[(&str, &str)],
        t: Tweak,
    ) -> (Reply, String) {
        let timestamp = t.date.clone().unwrap_or_else(now);
        let nonce = t.nonce.clone().unwrap_or_else(nonce);
        let mut common: Vec<(String, String)> = vec![
            ("AccessKeyId".into(), t.key.clone().unwrap_or(KEY.into())),
            ("Action".into(), action.into()),
            ("Format".into(), "JSON".into()),
            ("SignatureMethod".into(), "HMAC-SHA1".into()),
            ("SignatureNonce".into(), nonce),
            ("SignatureVersion".into(), "1.0".into()),
            ("Timestamp".into(), timestamp),
            ("Version".into(), "2014-05-26".into()),
        ];
        if let Some(token) = &t.token {
            common.push(("SecurityToken".into(), token.clone()));
        }
        let own: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let all: Vec<(String, String)> = common.iter().chain(own.iter()).cloned().collect();
        let string_to_sign = v1_string_to_sign(method, &all);
        let signature = v1_signature(t.secret.as_deref().unwrap_or(SECRET), &string_to_sign);
        let reply = if method == "GET" {
            let mut q = all.clone();
            q.push(("Signature".into(), signature));
            self.send(
                self.http
                    .get(format!("{}/?{}", self.endpoint, canonical_query(&q))),
            )
            .await
        } else {
            common.push(("Signature".into(), signature));
            self.send(
                self.http
                    .post(format!("{}/?{}", self.endpoint, canonical_query(&common)))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(canonical_query(&own)),
            )
            .await
        };
        (reply, string_to_sign)
    }

    /// The admin API.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let url = format!("{}/_sim{path}", self.endpoint);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, url);
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        self.send(req).await
    }
}
