//! The relay's edge settings: where `/metrics` is served, whether it may show exact counts, and which
//! WebSocket upgrades are accepted (path, browser `Origin`).
//!
//! ```text
//! ConfigLayer (file, flags) ─apply─▶ RelayConfig.{metrics_addr, danger_exact_metrics, allowed_origins,
//!                                                  websocket_path} ─validate─▶ metrics_bind_addr (driver binds it)
//! ```
//! Kept beside `config.rs` so that the privacy rules of the edge read in one place: the metrics listener is
//! never the client port, and exact (real-only) counts are never served beyond loopback.

use std::net::{IpAddr, SocketAddr};

use super::config::{ConfigError, ConfigLayer, RelayConfig};

/// The WebSocket path when none is configured: the one `ws://host:port/` URLs ask for.
pub const WEBSOCKET_PATH_DEFAULT: &str = "/";
/// Longest allowed origin or WebSocket path, bytes (a request head is at most 8 KiB anyway).
const EDGE_TEXT_BYTES_MAX: usize = 512;

/// Applies the layer's edge settings (a list replaces the previous one: flags override the file whole).
pub fn apply(config: &mut RelayConfig, layer: &ConfigLayer) -> Result<(), ConfigError> {
    if let Some(text) = &layer.metrics_addr {
        let addr = text.parse::<SocketAddr>().map_err(|_| {
            ConfigError::new("metrics-addr", text, "must be HOST:PORT with an IP address (e.g. 127.0.0.1:9100)")
        })?;
        config.metrics_addr = Some(addr);
    }
    if let Some(v) = layer.danger_exact_metrics {
        config.danger_exact_metrics = v;
    }
    if let Some(origins) = &layer.allowed_origins {
        config.allowed_origins = origins.iter().map(|o| normalize_origin(o)).collect();
    }
    if let Some(path) = &layer.websocket_path {
        config.websocket_path = path.clone();
    }
    Ok(())
}

/// Checks the edge settings (after the host and port are known).
pub fn validate(config: &RelayConfig) -> Result<(), ConfigError> {
    let metrics = metrics_bind_addr(config);
    if config.port != 0 && metrics.port() == config.port && same_host(metrics.ip(), config.host) {
        return Err(ConfigError::new("metrics-addr", metrics, "must differ from the client address (--host, --port)"));
    }
    if config.danger_exact_metrics && !metrics.ip().is_loopback() {
        return Err(ConfigError::new(
            "danger-exact-metrics",
            metrics,
            "exact (real-only) counts are served on a loopback --metrics-addr only",
        ));
    }
    let path = &config.websocket_path;
    let path_ok = path.starts_with('/') && path.len() <= EDGE_TEXT_BYTES_MAX && !path.contains(['?', '#']);
    if !path_ok || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::new("websocket-path", path, "must start with / and hold no space, ? or #"));
    }
    for origin in &config.allowed_origins {
        let bad = origin.is_empty() || origin.len() > EDGE_TEXT_BYTES_MAX;
        if bad || origin.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::new("allowed-origins", origin, "must be an origin like https://app.example"));
        }
    }
    Ok(())
}

/// Where `/metrics` and `/healthz` listen: the configured address, else loopback on the client port + 1 (an
/// ephemeral port when the client port is 0 or 65535), so that metrics are private unless an operator says so.
pub fn metrics_bind_addr(config: &RelayConfig) -> SocketAddr {
    config.metrics_addr.unwrap_or_else(|| {
        let port = match config.port {
            0 | u16::MAX => 0,
            p => p + 1,
        };
        SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port)
    })
}

/// Whether two listen addresses can collide (an unspecified address collides with every address).
fn same_host(a: IpAddr, b: IpAddr) -> bool {
    a == b || a.is_unspecified() || b.is_unspecified()
}

/// An origin as browsers send it: scheme and host lower case, no trailing slash.
pub fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(layer: &str) -> Result<RelayConfig, ConfigError> {
        let mut config = RelayConfig::defaults(1);
        config.apply(&ConfigLayer::from_toml(layer)?)?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn metrics_default_to_loopback_next_to_the_client_port() {
        let c = config("host = \"0.0.0.0\"\nport = 8100\ndanger_plaintext = true\n").unwrap();
        assert_eq!(metrics_bind_addr(&c), "127.0.0.1:8101".parse().unwrap());
        let c = config("port = 0\n").unwrap();
        assert_eq!(metrics_bind_addr(&c), "127.0.0.1:0".parse().unwrap());
        let c = config("metrics_addr = \"10.0.0.1:9100\"\n").unwrap();
        assert_eq!(metrics_bind_addr(&c), "10.0.0.1:9100".parse().unwrap());
    }

    #[test]
    fn refusals_name_the_key() {
        let err = |toml: &str| config(toml).unwrap_err().key;
        assert_eq!(err("port = 8100\nmetrics_addr = \"127.0.0.1:8100\"\n"), "metrics-addr");
        assert_eq!(
            err("host = \"0.0.0.0\"\nport = 8100\ndanger_plaintext = true\nmetrics_addr = \"127.0.0.1:8100\"\n"),
            "metrics-addr"
        );
        assert_eq!(err("metrics_addr = \"localhost:9100\"\n"), "metrics-addr");
        assert_eq!(err("danger_exact_metrics = true\nmetrics_addr = \"0.0.0.0:9100\"\n"), "danger-exact-metrics");
        assert!(config("danger_exact_metrics = true\n").is_ok());
        assert_eq!(err("websocket_path = \"tessera\"\n"), "websocket-path");
        assert_eq!(err("websocket_path = \"/a?b\"\n"), "websocket-path");
        assert_eq!(err("allowed_origins = [\"https://a b\"]\n"), "allowed-origins");
    }

    #[test]
    fn origins_are_normalized() {
        let c = config("allowed_origins = [\"HTTPS://App.Example/\"]\nwebsocket_path = \"/tessera\"\n").unwrap();
        assert_eq!(c.allowed_origins, ["https://app.example"]);
        assert_eq!(c.websocket_path, "/tessera");
    }
}
