//! Where ECS requests go: an explicit URL (the simulator, a private gateway) or the regional
//! endpoint, public or VPC.

use reqwest::Url;

use crate::error::EcsError;

/// How the client picks the ECS endpoint for a region.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum EndpointConfig {
    /// `https://ecs.<region>.aliyuncs.com/` (the official SDKs' default).
    #[default]
    Public,
    /// `https://ecs-vpc.<region>.aliyuncs.com/`: reachable from inside a VPC without internet.
    Vpc,
    /// Every request goes here, whatever the region (`--ecs-endpoint`, e.g. `http://127.0.0.1:8080`).
    Fixed(Url),
}

impl EndpointConfig {
    /// Parses `--ecs-endpoint`: a full `http(s)://host[:port]` URL, or a bare host (HTTPS).
    pub fn fixed(raw: &str) -> Result<Self, String> {
        let with_scheme = if raw.contains("://") {
            raw.to_string()
        } else {
            format!("https://{raw}")
        };
        let url = Url::parse(&with_scheme)
            .map_err(|e| format!("--ecs-endpoint {raw:?} is not a URL ({e}); use e.g. https://ecs.cn-hangzhou.aliyuncs.com or http://127.0.0.1:8080"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "--ecs-endpoint {raw:?} must be an http:// or https:// URL with a host"
            ));
        }
        Ok(Self::Fixed(url))
    }

    /// The base URL (path `/`) for calls in `region`.
    pub fn url_for(&self, region: &str) -> Result<Url, EcsError> {
        validate_region(region)?;
        let url = match self {
            Self::Fixed(url) => {
                let mut url = url.clone();
                url.set_path("/");
                url.set_query(None);
                return Ok(url);
            }
            Self::Public => format!("https://ecs.{region}.aliyuncs.com/"),
            Self::Vpc => format!("https://ecs-vpc.{region}.aliyuncs.com/"),
        };
        Url::parse(&url).map_err(|e| EcsError::InvalidInput(format!("region {region:?}: {e}")))
    }
}

/// The `host` header value for a URL: host, plus the port when it is not the scheme's default
/// (what the HTTP client sends, so what must be signed).
pub fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// A region id goes into a host name: only `a-z 0-9 -` (e.g. `cn-hangzhou`, `ap-southeast-1`).
pub fn validate_region(region: &str) -> Result<(), EcsError> {
    let ok = !region.is_empty()
        && region.len() <= 64
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(EcsError::InvalidInput(format!(
            "region {region:?} is not a region id (lower-case letters, digits and '-', e.g. cn-hangzhou)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regional_endpoints_public_and_vpc() {
        assert_eq!(
            EndpointConfig::Public
                .url_for("cn-hangzhou")
                .unwrap()
                .as_str(),
            "https://ecs.cn-hangzhou.aliyuncs.com/"
        );
        assert_eq!(
            EndpointConfig::Vpc
                .url_for("ap-southeast-1")
                .unwrap()
                .as_str(),
            "https://ecs-vpc.ap-southeast-1.aliyuncs.com/"
        );
    }

    #[test]
    fn a_fixed_loopback_endpoint_keeps_scheme_and_port() {
        let endpoint = EndpointConfig::fixed("http://127.0.0.1:18080").unwrap();
        let url = endpoint.url_for("cn-beijing").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:18080/");
        assert_eq!(host_header(&url), "127.0.0.1:18080");
        let bare = EndpointConfig::fixed("ecs.cn-hangzhou.aliyuncs.com").unwrap();
        let url = bare.url_for("cn-hangzhou").unwrap();
        assert_eq!(host_header(&url), "ecs.cn-hangzhou.aliyuncs.com");
    }

    #[test]
    fn bad_endpoints_and_regions_are_refused_with_the_fix() {
        assert!(EndpointConfig::fixed("ftp://x").is_err());
        assert!(EndpointConfig::fixed("http://").is_err());
        let err = EndpointConfig::Public
            .url_for("evil.com/x?")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cn-hangzhou"), "{err}");
        assert!(EndpointConfig::Public.url_for("").is_err());
    }
}
