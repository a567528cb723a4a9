//! Outbound HTTP for key material: bounded time, bounded size, no redirects.
//!
//! Used at load, on the periodic refresh and on an unknown `kid` (rate-limited by `KeyStore`),
//! and by kinds that call out (introspection), also as the HTTP client of the `oauth2` and
//! `openidconnect` crates. Never called with a URL taken from a token.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Largest JWKS or metadata document we read.
pub const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

/// The CA certificates of `outbound_ca_file` (PEM), for every outbound client.
pub fn extra_roots(pem: &[u8]) -> Result<Vec<reqwest::Certificate>, String> {
    let roots = reqwest::Certificate::from_pem_bundle(pem)
        .map_err(|_| "outbound CA file: not PEM certificates".to_string())?;
    if roots.is_empty() {
        return Err("outbound CA file: no certificate".into());
    }
    Ok(roots)
}

#[derive(Debug, Clone)]
pub struct HttpFetcher {
    client: reqwest::Client,
    timeout: Duration,
}

impl HttpFetcher {
    pub fn new(timeout: Duration) -> Result<Self, String> {
        Self::with_extra_roots(timeout, None)
    }

    /// An outbound client that also trusts the CA certificates in `pem` (a private PKI's
    /// roots), besides the system's.
    pub fn with_extra_roots(timeout: Duration, pem: Option<&[u8]>) -> Result<Self, String> {
        let mut builder = Self::builder(timeout);
        if let Some(pem) = pem {
            builder = builder.tls_certs_merge(extra_roots(pem)?);
        }
        Self::build(builder, timeout)
    }

    /// The time limit of each call (connect and whole request).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A client with a TLS configuration of its own (e.g. a server verifier that is not the
    /// Web PKI's), and the same timeouts, redirect policy and size limit.
    pub fn with_tls(timeout: Duration, tls: rustls::ClientConfig) -> Result<Self, String> {
        Self::build(
            Self::builder(timeout).tls_backend_preconfigured(tls),
            timeout,
        )
    }

    fn builder(timeout: Duration) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sts/", env!("CARGO_PKG_VERSION")))
    }

    fn build(builder: reqwest::ClientBuilder, timeout: Duration) -> Result<Self, String> {
        let client = builder.build().map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self { client, timeout })
    }

    /// Sends `request` and returns the whole response (any status), failing on a transport
    /// error, a timeout or a body over the size limit. Error texts hold no URL.
    pub async fn send(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, OutboundError> {
        let (parts, body) = request.into_parts();
        let resp = self
            .client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(|e| OutboundError(without_url(&e)))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = read_limited(resp).await.map_err(OutboundError)?;
        let mut out = http::Response::new(body);
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }

    /// GETs `url` and returns its body, failing on a non-2xx status or an oversized body.
    pub async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let resp = self
            .client
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", without_url(&e)))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", resp.status().as_u16()));
        }
        read_limited(resp)
            .await
            .map_err(|e| format!("GET {url}: {e}"))
    }
}

/// A failed outbound call; the text names no URL, token or secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct OutboundError(pub String);

/// The HTTP client of the `oauth2` and `openidconnect` crates: ours, with its timeouts, size
/// limit and no redirects.
impl<'c> oauth2::AsyncHttpClient<'c> for HttpFetcher {
    type Error = OutboundError;
    type Future =
        Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, OutboundError>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    let too_large = || format!("document larger than {MAX_DOCUMENT_BYTES} bytes");
    if resp
        .content_length()
        .is_some_and(|l| l as usize > MAX_DOCUMENT_BYTES)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| without_url(&e))? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    kind.to_string()
}

/// The metadata URLs tried for `issuer`, in order: RFC 8414 §3.1 (well-known segment inserted
/// between host and path), then OpenID Connect Discovery (appended).
pub fn discovery_urls(issuer: &str) -> [String; 2] {
    let issuer = issuer.trim_end_matches('/');
    let (scheme, rest) = issuer.split_once("://").unwrap_or(("https", issuer));
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    [
        format!("{scheme}://{host}/.well-known/oauth-authorization-server{path}"),
        format!("{issuer}/.well-known/openid-configuration"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8414_inserts_the_well_known_segment() {
        let [a, b] = discovery_urls("https://idp.example.com/tenant1");
        assert_eq!(
            a,
            "https://idp.example.com/.well-known/oauth-authorization-server/tenant1"
        );
        assert_eq!(
            b,
            "https://idp.example.com/tenant1/.well-known/openid-configuration"
        );
    }
}
