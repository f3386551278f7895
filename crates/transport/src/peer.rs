//! Who the client is: the peer's address, or — only when the peer is a
//! configured trusted proxy — the address the proxies recorded in
//! `Forwarded` (RFC 7239) or `X-Forwarded-For`. Decided once per request by
//! [`client_addresses`] and read by both transports, so the login throttle
//! and the audit trail see the real client behind a load balancer, and a
//! client talking to Gatehouse directly cannot pick its own address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::HeaderMap;
use ipnet::IpNet;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// The client's address as decided for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

/// The one header the trusted proxies write. Only that one is read: most
/// proxies append to one and pass the other through as the client sent it,
/// so reading both would let a client choose its address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (nginx, HAProxy, AWS ALB, Envoy).
    #[default]
    XForwardedFor,
    /// `Forwarded` (RFC 7239) `for=` parameters.
    Forwarded,
}

/// The proxies whose forwarding header is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    /// Parses addresses and CIDR ranges (`10.0.0.0/8`, `::1`).
    pub fn parse(entries: &[String], header: ForwardedHeader) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
            .map(|e| {
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{e:?} is not an IP address or CIDR range"))
            })
            .collect::<Result<_, _>>()
            .map(|nets| Self { nets, header })
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer`: walking the recorded hops from the nearest,
    /// the first one that is not a trusted proxy. A hop that cannot be read
    /// ends the walk at the last trusted one (never a value the client chose).
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if !self.trusts(client) {
            return client;
        }
        for hop in forwarded_hops(headers, self.header).into_iter().rev() {
            match hop {
                Some(ip) => {
                    client = canonical(ip);
                    if !self.trusts(client) {
                        break;
                    }
                }
                None => break,
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 addresses as IPv4, so one client has one address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The hops recorded by proxies in `header`, farthest first, every line
/// of it in order. `None` for a hop that is not an address (`unknown`, an
/// obfuscated name, bytes that are not text).
fn forwarded_hops(headers: &HeaderMap, header: ForwardedHeader) -> Vec<Option<IpAddr>> {
    let name = match header {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        ForwardedHeader::Forwarded => "forwarded",
    };
    let elements = headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|element| std::str::from_utf8(element).ok().map(str::trim));
    match header {
        ForwardedHeader::XForwardedFor => elements.map(|hop| hop.and_then(parse_node)).collect(),
        ForwardedHeader::Forwarded => elements
            .map(|element| {
                element?
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, v)| parse_node(v.trim().trim_matches('"')))
            })
            .collect(),
    }
}

/// `192.0.2.1`, `192.0.2.1:80`, `[2001:db8::1]`, `[2001:db8::1]:80`, `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    node.strip_prefix('[')
        .and_then(|rest| rest.split(']').next())
        .and_then(|ip| ip.parse().ok())
}

/// The TCP peer of a request, through Gatehouse's own TLS too.
pub fn peer(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        })
        .map(|addr| addr.ip())
}

/// Middleware: decides each request's [`ClientAddress`] once, for both
/// transports.
pub async fn client_addresses(
    axum::extract::State(trusted): axum::extract::State<Arc<TrustedProxies>>,
    mut request: Request,
) -> Request {
    if let Some(peer) = peer(request.extensions()) {
        let client = trusted.client(peer, request.headers());
        request.extensions_mut().insert(ClientAddress(client));
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let trusted = TrustedProxies::parse(
            &["10.0.0.0/8".into(), "::1".into(), " ".into()],
            ForwardedHeader::XForwardedFor,
        )
        .unwrap();
        let xff = headers(&[("x-forwarded-for", "203.0.113.7, 10.1.2.3")]);
        // A direct client cannot choose its address.
        assert_eq!(trusted.client(ip("198.51.100.9"), &xff), ip("198.51.100.9"));
        // Behind two trusted proxies: the first untrusted hop from the right.
        assert_eq!(trusted.client(ip("10.0.0.1"), &xff), ip("203.0.113.7"));
        // A client that prepends a fake hop does not get to use it.
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.7")]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &spoofed), ip("203.0.113.7"));
        // Several header lines are one list.
        let lines = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "10.9.9.9"),
        ]);
        assert_eq!(trusted.client(ip("::1"), &lines), ip("203.0.113.7"));
        // The header the proxies do not write is the client's own: ignored.
        let smuggled = headers(&[
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-for", "203.0.113.7"),
        ]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &smuggled), ip("203.0.113.7"));
        let rfc7239 =
            TrustedProxies::parse(&["10.0.0.0/8".into()], ForwardedHeader::Forwarded).unwrap();
        let forwarded = headers(&[
            (
                "forwarded",
                r#"for="[2001:db8::1]:4711";proto=https, for=10.2.2.2"#,
            ),
            ("x-forwarded-for", "6.6.6.6"),
        ]);
        assert_eq!(
            rfc7239.client(ip("10.0.0.1"), &forwarded),
            ip("2001:db8::1")
        );
        // An unreadable hop stops the walk at the last trusted address.
        let unknown = headers(&[("forwarded", "for=unknown, for=10.3.3.3")]);
        assert_eq!(rfc7239.client(ip("10.0.0.1"), &unknown), ip("10.3.3.3"));
        // A hop of bytes that are not text spoils only itself.
        let mut binary = HeaderMap::new();
        binary.append(
            "x-forwarded-for",
            axum::http::HeaderValue::from_bytes(b"203.0.113.7, \xff\xfe, 10.4.4.4").unwrap(),
        );
        assert_eq!(trusted.client(ip("10.0.0.1"), &binary), ip("10.4.4.4"));
        // No header: the proxy itself.
        assert_eq!(
            trusted.client(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        // IPv4-mapped peers are IPv4.
        assert_eq!(
            trusted.client(ip("::ffff:10.0.0.1"), &xff),
            ip("203.0.113.7")
        );
        // Nothing trusted: always the peer.
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.1"), &xff),
            ip("10.0.0.1")
        );
        let header = ForwardedHeader::XForwardedFor;
        assert!(TrustedProxies::parse(&["not an ip".into()], header).is_err());
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()], header).is_err());
    }
}
