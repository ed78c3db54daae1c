//! The view's server against real sockets: routes, refusals, the guarded (TLS, token,
//! cookie) mode, the event stream, and metrics parsed back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use super::*;

fn info() -> ViewInfo {
    ViewInfo {
        model: "ViT-S/16 at 224x224".into(),
        engine: "cpu fp32".into(),
        random_weights: true,
        replay: true,
    }
}

fn loopback_view() -> LiveView {
    let dir = tempfile::tempdir().unwrap();
    LiveView::start(
        ViewConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_owned()),
        info(),
    )
    .unwrap()
}

/// One request, `Connection: close`; (status, head, body).
fn request(stream: &mut dyn ReadWrite, raw: &str) -> (u16, String, Vec<u8>) {
    stream.write_all(raw.as_bytes()).unwrap();
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all);
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(all.len());
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let body = all.get(split + 4..).unwrap_or_default().to_vec();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, body)
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn get(addr: SocketAddr, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    request(
        &mut s,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"),
    )
}

#[test]
fn loopback_serves_the_page_metrics_and_health_and_refuses_what_is_not_its_own() {
    let view = loopback_view();
    let addr = view.local_addr();
    let (status, head, body) = get(addr, "/", "");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("text/html") && head.contains("frame-ancestors 'none'"));
    assert!(String::from_utf8_lossy(&body).contains("<title"));
    let (status, _, body) = get(addr, "/healthz", "");
    assert_eq!((status, body.as_slice()), (200, &b"ok\n"[..]));
    let (status, head, body) = get(addr, "/metrics", "");
    assert_eq!(status, 200);
    assert!(head.contains("version=0.0.4"));
    let text = String::from_utf8(body).unwrap();
    let samples = metrics::tests::parse(&text);
    assert!(
        samples
            .iter()
            .any(|(k, _)| k == "dinoedge_frames_processed_total")
    );
    assert!(samples.iter().any(|(k, _)| k.starts_with("dinoedge_info{")));
    // No frame yet.
    assert_eq!(get(addr, "/frame.jpg", "").0, 404);
    // What is not here, or not allowed.
    assert_eq!(get(addr, "/nope", "").0, 404);
    let mut s = TcpStream::connect(addr).unwrap();
    let (status, _, _) = request(
        &mut s,
        &format!("DELETE / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 405);
    // A page asked for under a foreign name: DNS rebinding.
    let mut s = TcpStream::connect(addr).unwrap();
    let (status, _, _) = request(
        &mut s,
        "GET / HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 421);
    // The event stream from a foreign origin.
    assert_eq!(
        get(addr, "/events", "Origin: http://attacker.example\r\n").0,
        403
    );
    // Garbage is a 4xx, not a crash; the server still answers afterwards.
    let mut s = TcpStream::connect(addr).unwrap();
    let (status, _, _) = request(&mut s, "\x16\x03\x01 not http at all\r\n\r\n");
    assert!((400..500).contains(&status), "{status}");
    assert_eq!(get(addr, "/healthz", "").0, 200);
    assert_eq!(view.viewers(), 0);
}

#[test]
fn the_event_stream_sends_the_newest_update() {
    let view = loopback_view();
    let addr = view.local_addr();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /events HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(s);
    let mut data = None;
    let mut line = String::new();
    while data.is_none() {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "stream ended");
        if let Some(json) = line.strip_prefix("data: ") {
            data = Some(serde_json::from_str::<serde_json::Value>(json.trim()).unwrap());
        }
    }
    let data = data.unwrap();
    assert_eq!(data["model"], "ViT-S/16 at 224x224");
    assert_eq!(data["random_weights"], true);
    assert_eq!(data["link"]["state"], "replay");
    assert!(data["jpeg"].is_null());
}

#[test]
fn off_loopback_only_tls_and_the_token_get_in() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut config = ViewConfig::new("0.0.0.0:0".parse().unwrap(), dir.path().join("tls"));
    // Without a token: refused before anything listens.
    assert!(matches!(
        LiveView::start(config.clone(), info()),
        Err(ViewError::NeedsToken(_))
    ));
    config.token_file = Some(token_file);
    config.hosts = vec!["localhost".into()];
    let view = LiveView::start(config, info()).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", view.local_addr().port())
        .parse()
        .unwrap();

    // Trust the certificate the view made for itself.
    let cert = dir.path().join("tls/view-cert.pem");
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let tls = |raw: &str| {
        let conn = rustls::ClientConnection::new(
            client.clone(),
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let mut stream = rustls::StreamOwned::new(conn, TcpStream::connect(addr).unwrap());
        request(&mut stream, raw)
    };
    let port = addr.port();
    let host = format!("localhost:{port}");
    for path in ["/", "/events", "/frame.jpg", "/metrics", "/healthz"] {
        let (status, _, body) = tls(&format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        ));
        assert_eq!(status, 401, "{path} without a session");
        assert!(
            !String::from_utf8_lossy(&body).contains("dinoedge_"),
            "{path}"
        );
    }
    // Plain HTTP gets no answer worth having.
    let mut plain = TcpStream::connect(addr).unwrap();
    let (status, _, _) = request(
        &mut plain,
        &format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 0, "no HTTP answer without TLS");
    // The wrong token, then the right one.
    let login = |token: &str| {
        let body = format!("token={token}");
        tls(&format!(
            "POST /login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
    };
    assert_eq!(login("wrong-token-wrong-token").0, 401);
    let (status, head, _) = login("0123456789abcdef0123456789abcdef");
    assert_eq!(status, 303, "{head}");
    let cookie_line = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap()
        .to_owned();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(cookie_line.contains(flag), "{cookie_line}");
    }
    let cookie = cookie_line
        .split_once(':')
        .unwrap()
        .1
        .split(';')
        .next()
        .unwrap()
        .trim()
        .to_owned();
    let (status, _, body) = tls(&format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    ));
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("<title"));
    let (status, _, _) = tls(&format!(
        "GET /metrics HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    ));
    assert_eq!(status, 200);
    // A forged cookie is no session.
    let (status, _, _) = tls(&format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nCookie: dinoedge_view=00ff\r\nConnection: close\r\n\r\n"
    ));
    assert_eq!(status, 401);
}
