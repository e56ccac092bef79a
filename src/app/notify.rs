//! Readiness for a service manager: `READY=1` once the listeners are bound, `STOPPING=1` when a
//! shutdown begins, sent to `$NOTIFY_SOCKET` as systemd's `sd_notify` does, so a unit with
//! `Type=notify` starts its dependents only when the gateway can take connections.
//!
//! Without the variable (any other way of running the gateway) nothing is sent. A failed send
//! is logged and otherwise ignored: serving matters more than telling.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The variable a service manager sets to its notification socket.
const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Tells the service manager the gateway is serving.
pub fn ready() {
    send("READY=1");
}

/// Tells the service manager the gateway is draining and about to exit.
pub fn stopping() {
    send("STOPPING=1");
}

fn send(state: &str) {
    let Some(path) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    let path = path.to_string_lossy();
    match notify(&path, state) {
        Ok(()) => tracing::debug!(socket = %path, state, "service manager notified"),
        Err(error) => {
            tracing::warn!(socket = %path, state, %error, "cannot notify the service manager")
        }
    }
}

/// Sends `state` as one datagram to `socket`: a path, or an abstract name when it starts with
/// `@` (Linux).
pub fn notify(socket: &str, state: &str) -> io::Result<()> {
    let addr = address(socket)?;
    UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

fn address(socket: &str) -> io::Result<SocketAddr> {
    match socket.strip_prefix('@') {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        Some(_) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "abstract socket names exist on Linux only",
        )),
        None => SocketAddr::from_pathname(socket),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_reaches_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        notify(path.to_str().unwrap(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_datagram_reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("tokengate-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        notify(&format!("@{name}"), "STOPPING=1").unwrap();
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn a_missing_socket_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        assert!(notify(dir.path().join("none").to_str().unwrap(), "READY=1").is_err());
    }
}
