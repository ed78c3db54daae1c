//! The view's HTTP server, on a thread with its own tokio runtime: routing, the checks of
//! `auth`, TLS off loopback, the event stream, and dropping viewers that stall.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};

use super::auth::{self, Sessions};
use super::{Shared, ViewConfig, ViewError, lock};

/// The page, served whole from the binary.
const PAGE: &str = include_str!("page.html");

/// The login form a guarded view shows with its 401.
const LOGIN: &str = "<!doctype html><meta charset=utf-8><title>dinoedge: sign in</title>\
<body style=\"font-family:sans-serif;background:#111;color:#ddd\"><h1>dinoedge live view</h1>\
<form method=post action=/login><label>Access token <input name=token type=password \
autofocus autocomplete=current-password></label> <button>Open</button></form>";

/// How requests are let in.
pub(super) enum Access {
    /// Bound to loopback: only the `Host` check.
    Loopback,
    /// Reachable from the network: TLS, the token, the cookie.
    Guarded {
        token: String,
        tls: Arc<rustls::ServerConfig>,
    },
}

impl Access {
    pub(super) fn from_config(config: &ViewConfig) -> Result<Access, ViewError> {
        if config.addr.ip().is_loopback() {
            return Ok(Access::Loopback);
        }
        let path = config
            .token_file
            .as_ref()
            .ok_or(ViewError::NeedsToken(config.addr))?;
        let token = auth::load_token(path)?;
        let tls = super::tls::server_config(&config.cert, &names(config))?;
        Ok(Access::Guarded { token, tls })
    }
}

/// The names a browser may call the view by.
fn names(config: &ViewConfig) -> Vec<String> {
    let mut names = config.hosts.clone();
    names.push(config.addr.ip().to_string());
    if config.addr.ip().is_loopback() || config.addr.ip().is_unspecified() {
        names.extend([
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ]);
    }
    names
}

/// What every request handler shares.
struct Ctx {
    shared: Arc<Shared>,
    names: Vec<String>,
    port: u16,
    guarded: Option<String>,
    sessions: std::sync::Mutex<Sessions>,
    open_metrics: bool,
    stall: Duration,
}

type Reply = Response<ViewBody>;

/// Starts the server thread on `listener` (already bound, non-blocking).
pub(super) fn spawn(
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
    access: Access,
    shared: Arc<Shared>,
    config: ViewConfig,
    stopped: oneshot::Receiver<()>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut names = names(&config);
    if local_addr.ip().is_unspecified() {
        names.push(local_addr.ip().to_string());
    }
    let (guarded, tls) = match access {
        Access::Loopback => (None, None),
        Access::Guarded { token, tls } => (Some(token), Some(tls)),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let ctx = Arc::new(Ctx {
        shared,
        names,
        port: local_addr.port(),
        guarded,
        sessions: std::sync::Mutex::new(Sessions::default()),
        open_metrics: config.open_metrics,
        stall: config.stall_timeout,
    });
    tracing::info!("live view at {scheme}://{local_addr}/");
    eprintln!("view at {scheme}://{local_addr}/");
    std::thread::Builder::new()
        .name("view-server".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "the live view cannot listen");
                        return;
                    }
                };
                let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
                let mut stopped = stopped;
                loop {
                    let (stream, peer) = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok(a) => a,
                            Err(e) => {
                                tracing::warn!(error = %e, "live view: accept failed");
                                continue;
                            }
                        },
                        _ = &mut stopped => break,
                    };
                    let _ = stream.set_nodelay(true);
                    let ctx = ctx.clone();
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let stall = ctx.stall;
                        match acceptor {
                            None => serve(StallGuard::new(stream, stall), peer, scheme, ctx).await,
                            Some(acceptor) => {
                                match tokio::time::timeout(stall, acceptor.accept(stream)).await {
                                    Ok(Ok(tls)) => {
                                        serve(StallGuard::new(tls, stall), peer, scheme, ctx).await;
                                    }
                                    Ok(Err(e)) => {
                                        tracing::warn!(%peer, error = %e, "live view: TLS handshake refused");
                                    }
                                    Err(_) => tracing::warn!(%peer, "live view: TLS handshake timed out"),
                                }
                            }
                        }
                    });
                }
            });
        })
}

async fn serve<I>(io: I, peer: SocketAddr, scheme: &'static str, ctx: Arc<Ctx>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(handle(req, peer, scheme, &ctx).await) }
    });
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(io), service)
        .await;
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "live view: connection ended");
    }
}

async fn handle(req: Request<Incoming>, peer: SocketAddr, scheme: &str, ctx: &Ctx) -> Reply {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !auth::host_allowed(host, &ctx.names, ctx.port) {
        tracing::warn!(%peer, host, "live view refused: unknown Host (DNS rebinding?)");
        return text(StatusCode::MISDIRECTED_REQUEST, "unknown host\n");
    }
    let path = req.uri().path().to_owned();
    let open = matches!(path.as_str(), "/metrics" | "/healthz") && ctx.open_metrics;
    let signed_in = ctx.guarded.is_none() || open || has_session(&req, ctx);
    match (req.method(), path.as_str()) {
        (&Method::POST, "/login") if ctx.guarded.is_some() => login(req, peer, ctx).await,
        (&Method::GET, "/login") if ctx.guarded.is_some() => html(StatusCode::OK, LOGIN),
        (_, _) if !signed_in => {
            tracing::warn!(%peer, path, "live view refused: no session");
            if path == "/" {
                html(StatusCode::UNAUTHORIZED, LOGIN)
            } else {
                text(StatusCode::UNAUTHORIZED, "sign in at /login\n")
            }
        }
        (&Method::GET, "/") => html(StatusCode::OK, PAGE),
        (&Method::GET, "/events") => events(&req, peer, scheme, ctx),
        (&Method::GET, "/frame.jpg") => frame(ctx),
        (&Method::GET, "/metrics") => {
            let mut r = text(StatusCode::OK, &ctx.shared.metrics_text());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (_, "/" | "/events" | "/frame.jpg" | "/metrics" | "/healthz" | "/login") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn has_session(req: &Request<Incoming>, ctx: &Ctx) -> bool {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|c| c.to_str().ok())
        .filter_map(auth::cookie_value)
        .any(|id| lock(&ctx.sessions).valid(id))
}

/// The token, posted once from the form, for a session cookie.
async fn login(req: Request<Incoming>, peer: SocketAddr, ctx: &Ctx) -> Reply {
    let Some(token) = &ctx.guarded else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let body = match Limited::new(req.into_body(), 4096).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "too large\n"),
    };
    let presented = std::str::from_utf8(&body)
        .ok()
        .and_then(|form| {
            form.split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == "token")
                .map(|(_, v)| percent_decode(v))
        })
        .unwrap_or_default();
    if !auth::token_matches(&presented, token) {
        tracing::warn!(%peer, "live view refused: wrong token");
        return html(StatusCode::UNAUTHORIZED, LOGIN);
    }
    let Some(id) = lock(&ctx.sessions).issue() else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "no entropy\n");
    };
    tracing::info!(%peer, "live view: signed in");
    let mut r = text(StatusCode::SEE_OTHER, "");
    let cookie = format!(
        "{}={id}; HttpOnly; Secure; SameSite=Strict; Path=/",
        auth::COOKIE
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/"));
    r
}

/// `application/x-www-form-urlencoded` value.
fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(x) = hex {
                    out.push(x);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn frame(ctx: &Ctx) -> Reply {
    let jpeg = ctx
        .shared
        .jpeg
        .read()
        .ok()
        .and_then(|j| j.as_ref().map(|(_, b)| b.clone()));
    match jpeg {
        Some(bytes) => {
            let mut r = Response::new(ViewBody::Full(Full::new(bytes)));
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        None => text(StatusCode::NOT_FOUND, "no frame yet\n"),
    }
}

/// The event stream: the newest update whenever there is one, as fast as the viewer takes
/// them and no faster; a comment every 15 s keeps proxies from closing it.
fn events(req: &Request<Incoming>, peer: SocketAddr, scheme: &str, ctx: &Ctx) -> Reply {
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        if !auth::origin_allowed(origin, scheme, &ctx.names, ctx.port) {
            tracing::warn!(%peer, origin, "live view refused: foreign Origin");
            return text(StatusCode::FORBIDDEN, "foreign origin\n");
        }
    }
    let mut updates = ctx.shared.updates.subscribe();
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    let shared = ctx.shared.clone();
    shared.viewers.fetch_add(1, Ordering::Relaxed);
    tracing::info!(%peer, "live view opened");
    tokio::spawn(async move {
        let mut keepalive = tokio::time::interval(Duration::from_secs(15));
        keepalive.tick().await;
        loop {
            let message = {
                let update = updates.borrow_and_update().clone();
                Bytes::from(format!("event: update\ndata: {update}\n\n"))
            };
            // Waits while the viewer's connection is full: meanwhile newer updates replace
            // older ones in the watch, so a slow viewer skips, and the pipeline never waits.
            if tx.send(message).await.is_err() {
                break;
            }
            tokio::select! {
                changed = updates.changed() => if changed.is_err() { break },
                _ = keepalive.tick() => {
                    if tx.send(Bytes::from_static(b": keepalive\n\n")).await.is_err() {
                        break;
                    }
                }
            }
        }
        shared.viewers.fetch_sub(1, Ordering::Relaxed);
        tracing::info!(%peer, "live view closed");
    });
    let mut r = Response::new(ViewBody::Events(rx));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn text(status: StatusCode, body: &str) -> Reply {
    let mut r = Response::new(ViewBody::Full(Full::new(Bytes::from(body.to_owned()))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn html(status: StatusCode, body: &'static str) -> Reply {
    let mut r = Response::new(ViewBody::Full(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // The page loads nothing from anywhere else, and no other site may frame it.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self'; style-src 'unsafe-inline'; \
             script-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A whole body, or the event stream.
pub(super) enum ViewBody {
    Full(Full<Bytes>),
    Events(mpsc::Receiver<Bytes>),
}

impl Body for ViewBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ViewBody::Full(full) => Pin::new(full).poll_frame(cx),
            ViewBody::Events(rx) => rx.poll_recv(cx).map(|m| m.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ViewBody::Full(full) => full.is_end_stream(),
            ViewBody::Events(_) => false,
        }
    }

    /// Exact for whole bodies, so that they go out with a `Content-Length`.
    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            ViewBody::Full(full) => full.size_hint(),
            ViewBody::Events(_) => hyper::body::SizeHint::default(),
        }
    }
}

/// A connection that fails once a write has waited longer than the stall limit: a viewer
/// that stops reading is dropped rather than held.
struct StallGuard<T> {
    inner: T,
    limit: Duration,
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> StallGuard<T> {
    fn new(inner: T, limit: Duration) -> Self {
        StallGuard {
            inner,
            limit,
            waiting: None,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => {
                let limit = this.limit;
                let sleep = this
                    .waiting
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the viewer stopped reading",
                    )));
                }
                Poll::Pending
            }
            ready => {
                this.waiting = None;
                ready
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
