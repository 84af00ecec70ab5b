//! The exit hop of onion requests: an HTTP(S) POST of the decrypted layer to an external
//! server (SOGS, file server, push server), storage-server.md 2.6.
//!
//! Owns the one pooled HTTP client a node uses for exits and the address policy: unless the
//! node is configured for a local network (`[onion] allow_private_targets`), a target that is
//! or resolves to a loopback, private, link-local, unspecified (or otherwise non-public) address
//! is refused. The check sits in the client's DNS resolver, so it applies to the very addresses
//! that are connected to (no re-resolution after the check, hence no DNS-rebinding window), and
//! every resolved address must pass. Must not: decide whether a target path is allowed (that is
//! `onion::is_allowed_target`), frame HTTP answers, or log targets above debug.

use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use axum::body::Bytes;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use reqwest::{Url, redirect};

/// Time the exit hop gives an external server (the original's 25 s).
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(25);
/// Largest answer relayed back from an external server: what a node accepts as a request.
pub const MAX_EXIT_RESPONSE: usize = super::MAX_REQUEST_BODY;
/// The `User-Agent` the original sends, which servers may match on.
pub const EXIT_USER_AGENT: &str = "Oxen Storage Server/2.8.0";

/// Why the exit hop could not get an answer from the server.
#[derive(Debug, thiserror::Error)]
pub enum ExitError {
    /// The host is not a valid host name or address (answered like a bad target).
    #[error("invalid host")]
    InvalidHost,
    /// The target is (or resolves to) an address this node does not proxy to.
    #[error("destination address not allowed (private, local or reserved)")]
    Refused,
    /// No answer within `EXIT_TIMEOUT`.
    #[error("Request time out")]
    Timeout,
    /// The answer exceeded `MAX_EXIT_RESPONSE`.
    #[error("response too large")]
    TooLarge,
    /// Connection, TLS or protocol failure; the text goes back to the client as the original's
    /// curl message did.
    #[error("{0}")]
    Transport(String),
}

/// The server's answer, returned verbatim to the client.
#[derive(Debug, Clone)]
pub struct ExitResponse {
    /// HTTP status.
    pub status: u16,
    /// The server's `Content-Type`, if any.
    pub content_type: Option<HeaderValue>,
    /// The body.
    pub body: Bytes,
}

/// The node's HTTP client for exits.
#[derive(Debug, Clone)]
pub struct ExitClient {
    http: reqwest::Client,
    allow_private: bool,
}

/// The marker error of the guarded resolver, found again in reqwest's error chain.
#[derive(Debug, thiserror::Error)]
#[error("destination address not allowed")]
struct RefusedAddress;

/// Resolves names with the system resolver and refuses the whole name if any address is not
/// public: a name with one public and one private address could otherwise be steered to the
/// private one.
struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() || addrs.iter().any(|a| !is_public_ip(a.ip())) {
                return Err(Box::new(RefusedAddress) as Box<dyn StdError + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

impl ExitClient {
    /// A client; `allow_private_targets` lifts the address policy (local networks only).
    pub fn new(allow_private_targets: bool) -> Result<ExitClient, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            // Redirects would let a server bounce the node to any address, policy unchecked.
            .redirect(redirect::Policy::none())
            // A proxy from the environment would resolve names where our policy cannot look.
            .no_proxy()
            .timeout(EXIT_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60));
        if !allow_private_targets {
            builder = builder.dns_resolver(GuardedResolver);
        }
        // TLS is verified (reqwest's rustls with the platform verifier): unlike node-to-node
        // traffic, an external server has a real certificate and nothing else proves who it is.
        Ok(ExitClient {
            http: builder.build()?,
            allow_private: allow_private_targets,
        })
    }

    /// POSTs `payload` to `protocol://host:port/target` and returns the server's answer.
    /// `protocol` and `target` must already have passed `onion::is_allowed_target`.
    pub async fn post(
        &self,
        protocol: &str,
        host: &str,
        port: u16,
        target: &str,
        payload: Vec<u8>,
    ) -> Result<ExitResponse, ExitError> {
        let url = target_url(protocol, host, port, target)?;
        // Address literals never reach the resolver: check them here.
        if let Some(ip) = literal_ip(&url)
            && !self.allow_private
            && !is_public_ip(ip)
        {
            return Err(ExitError::Refused);
        }
        let resp = self
            .http
            .post(url)
            .header(USER_AGENT, EXIT_USER_AGENT)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(payload)
            .send()
            .await
            .map_err(classify)?;
        let status = resp.status().as_u16();
        let content_type = resp.headers().get(CONTENT_TYPE).cloned();
        let body = read_limited(resp).await?;
        Ok(ExitResponse {
            status,
            content_type,
            body,
        })
    }
}

/// Builds the URL from its parts without string pasting, so a hostile `host` such as
/// `a@127.0.0.1` or `h/x?y` cannot change what is reached.
fn target_url(protocol: &str, host: &str, port: u16, target: &str) -> Result<Url, ExitError> {
    // IPv6 literals come bracketed or bare; the URL wants brackets. Anything else with a
    // `:` would smuggle a port, and the other characters a user, path, query or fragment.
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let bracketed;
    let host = if bare.parse::<Ipv6Addr>().is_ok() {
        bracketed = format!("[{bare}]");
        bracketed.as_str()
    } else if host.is_empty() || host.contains(['@', '/', '?', '#', '\\', ' ', ':', '[', ']']) {
        return Err(ExitError::InvalidHost);
    } else {
        host
    };
    let mut url = Url::parse(&format!("{protocol}://placeholder.invalid/"))
        .map_err(|_| ExitError::InvalidHost)?;
    url.set_host(Some(host))
        .map_err(|_| ExitError::InvalidHost)?;
    url.set_port(Some(port))
        .map_err(|_| ExitError::InvalidHost)?;
    url.set_path(target);
    Ok(url)
}

/// The address of an IP-literal host (the URL writes IPv6 literals in brackets).
fn literal_ip(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// Reads at most `MAX_EXIT_RESPONSE` bytes of the answer.
async fn read_limited(mut resp: reqwest::Response) -> Result<Bytes, ExitError> {
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(classify)? {
        if buf.len() + chunk.len() > MAX_EXIT_RESPONSE {
            return Err(ExitError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

fn classify(e: reqwest::Error) -> ExitError {
    if e.is_timeout() {
        return ExitError::Timeout;
    }
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        if s.downcast_ref::<RefusedAddress>().is_some() {
            return ExitError::Refused;
        }
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    ExitError::Transport(text)
}

/// Whether `ip` is an ordinary public unicast address. Everything a node's operator could have
/// behind it (loopback, RFC 1918, link-local, unique-local, CGNAT) or that is not a host
/// (unspecified, broadcast, multicast, reserved) is not; IPv4 embedded in IPv6 (mapped, 6to4,
/// NAT64) is judged as the IPv4 address it carries.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0 // "this network", including 0.0.0.0
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let seg = ip.segments();
    if seg[0] == 0x2002 {
        // 6to4: the IPv4 address is in segments 1 and 2.
        let [a, b] = seg[1].to_be_bytes();
        let [c, d] = seg[2].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    if seg[..3] == [0x64, 0xff9b, 1] {
        // RFC 8215's local-use NAT64 prefix 64:ff9b:1::/48: translated by a local gateway
        // into whatever IPv4 it chooses, private networks included, so never public.
        return false;
    }
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64 well-known prefix: the last 32 bits are IPv4.
        let [a, b] = seg[6].to_be_bytes();
        let [c, d] = seg[7].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00 // unique local
        || (seg[0] & 0xffc0) == 0xfe80 // link-local
        || (seg[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || seg[..6] == [0; 6]) // IPv4-compatible (deprecated) and other ::/96
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn address_policy() {
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "192.0.2.1",
            "2001:4860:4860::8888",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "2002:0808:0808::1",
            "64:ff9b::808:808",
        ] {
            assert!(is_public_ip(ip(public)), "{public}");
        }
        for private in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "100.64.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "240.0.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::127.0.0.1",
            "2002:7f00:0001::1",
            "2002:c0a8:0101::1",
            "64:ff9b::a00:1",
            "64:ff9b:1::808:808",
            "64:ff9b:1:ffff::1",
        ] {
            assert!(!is_public_ip(ip(private)), "{private}");
        }
    }

    #[test]
    fn urls_are_built_from_parts() {
        let u = target_url("https", "example.org", 443, "/oxen/v4/lsrpc").unwrap();
        assert_eq!(u.as_str(), "https://example.org/oxen/v4/lsrpc");
        let u = target_url("http", "example.org", 8080, "/loki/v3/lsrpc").unwrap();
        assert_eq!(u.as_str(), "http://example.org:8080/loki/v3/lsrpc");
        let u = target_url("http", "::1", 80, "/loki/v3/lsrpc").unwrap();
        assert_eq!(u.as_str(), "http://[::1]/loki/v3/lsrpc");
        let u = target_url("http", "[::1]", 80, "/loki/v3/lsrpc").unwrap();
        assert_eq!(u.as_str(), "http://[::1]/loki/v3/lsrpc");
        assert_eq!(literal_ip(&u), Some(ip("::1")));
        // Unusual IPv4 spellings are normalised, so the literal check sees them.
        let u = target_url("http", "2130706433", 80, "/loki/v3/lsrpc").unwrap();
        assert_eq!(literal_ip(&u), Some(ip("127.0.0.1")));
        let u = target_url("https", "127.0.0.1", 22, "/oxen/v4/lsrpc").unwrap();
        assert_eq!(literal_ip(&u), Some(ip("127.0.0.1")));
        // A path cannot smuggle a query or fragment.
        let u = target_url("https", "h.example", 443, "/oxen/x#y/lsrpc").unwrap();
        assert_eq!((u.query(), u.fragment()), (None, None));
        for bad in [
            "",
            "evil.example@127.0.0.1",
            "h.example/x",
            "h.example?x",
            "h.example#x",
            "a b",
            "h:1",
        ] {
            assert!(
                matches!(
                    target_url("https", bad, 443, "/oxen/v4/lsrpc"),
                    Err(ExitError::InvalidHost)
                ),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn private_targets_are_refused_before_any_connection() {
        let exit = ExitClient::new(false).unwrap();
        for host in [
            "127.0.0.1",
            "10.0.0.1",
            "::1",
            "0.0.0.0",
            "localhost",
            "0x7f.1",
        ] {
            let r = exit
                .post("http", host, 9, "/oxen/v4/lsrpc", b"x".to_vec())
                .await;
            assert!(matches!(r, Err(ExitError::Refused)), "{host}: {r:?}");
        }
    }

    #[tokio::test]
    async fn allowed_private_targets_reach_a_local_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/oxen/v4/lsrpc",
            axum::routing::post(|headers: axum::http::HeaderMap, body: Bytes| async move {
                let ua = headers
                    .get(USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let ct = headers
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                (
                    axum::http::StatusCode::IM_A_TEAPOT,
                    format!("{ua}|{ct}|{}", body.len()),
                )
            }),
        );
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let exit = ExitClient::new(true).unwrap();
        let r = exit
            .post(
                "http",
                "127.0.0.1",
                addr.port(),
                "/oxen/v4/lsrpc",
                vec![7; 5],
            )
            .await
            .unwrap();
        assert_eq!(r.status, 418);
        assert_eq!(
            r.body,
            Bytes::from("Oxen Storage Server/2.8.0|application/octet-stream|5")
        );
        // Nothing listens on port 9 of loopback: a transport error with its text.
        let e = exit
            .post("http", "127.0.0.1", 9, "/oxen/v4/lsrpc", Vec::new())
            .await
            .unwrap_err();
        assert!(
            matches!(e, ExitError::Transport(ref t) if !t.is_empty()),
            "{e:?}"
        );
        server.abort();
    }
}
