//! The binary tells a service manager when it is ready and when it stops, through the datagram
//! socket named by `NOTIFY_SOCKET`, as systemd's `Type=notify` expects.

use std::os::unix::net::UnixDatagram;

use crate::common::process::{tokengate, GatewayProcess, LOG_DEADLINE};

/// The next datagram on `socket`, waited for at most [`LOG_DEADLINE`].
fn next(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("no notification in time");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn ready_after_binding_and_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(LOG_DEADLINE)).unwrap();
    let mut child = GatewayProcess::spawn(
        tokengate()
            .args([
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                "http://127.0.0.1:9",
            ])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("ELASTIC_PASSWORD", "notify-pw")
            .env("NOTIFY_SOCKET", &path),
    )
    .await;
    assert_eq!(next(&socket), "READY=1");
    // Ready means bound: the address it announced takes connections now.
    std::net::TcpStream::connect(child.addr).unwrap();
    child.signal("TERM");
    assert_eq!(next(&socket), "STOPPING=1");
    let (status, _) = child.exit().await;
    assert!(status.success(), "{status:?}");
}
