//! The `[server]` keys that bound what one request may make the gateway read, and whose
//! forwarding headers are believed.

use ipnet::IpNet;

use super::reader::{Reader, Section};
use super::HttpLimits;

impl Reader<'_> {
    pub(super) fn http_limits(&mut self, server: &mut Section) -> HttpLimits {
        HttpLimits {
            max_request_line: self.positive_count(
                server,
                "max_request_line",
                HttpLimits::DEFAULT_MAX_REQUEST_LINE,
            ),
            max_header_size: self.positive_count(
                server,
                "max_header_size",
                HttpLimits::DEFAULT_MAX_HEADER_SIZE,
            ),
            max_api_body: self.count(server, "max_api_body", HttpLimits::DEFAULT_MAX_API_BODY),
            client_body_timeout: self.duration(
                server,
                "client_body_timeout",
                HttpLimits::DEFAULT_CLIENT_BODY_TIMEOUT,
            ),
        }
    }

    /// `trusted_proxies = ["10.0.0.0/8", "192.0.2.7"]`: networks or single addresses.
    pub(super) fn trusted_proxies(&mut self, server: &mut Section) -> Vec<IpNet> {
        let mut networks = Vec::new();
        for text in self.strings(server, "trusted_proxies") {
            let parsed = text
                .parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from));
            match parsed {
                Ok(network) => networks.push(network),
                Err(_) => self.problem(
                    "server",
                    "trusted_proxies",
                    &format!(
                        "expected an address or network like \"10.0.0.0/8\", found \"{text}\""
                    ),
                ),
            }
        }
        networks
    }
}
