//! A hello-world axum server for measuring what rate limiting costs per request: bare, behind
//! `RateLimitLayer` (per client IP, in memory), or behind `tower_governor`'s layer, on the path
//! where every request is allowed or the one where every request (but the first) is rejected.
//! `benches/wrk_cpu.sh` drives it with wrk and reads its CPU time; `benches/instructions.sh`
//! counts its instructions per request under callgrind.
//!
//! ```sh
//! LIMITER=ours OUTCOME=reject PORT=3010 cargo run --release --example hello_server
//! ```
//!
//! - `LIMITER`: `none` (default), `ours`, `tower_governor`, or `noop`: a layer that does nothing
//!   (`tower::layer::util::Identity`), placed where a limiter would be. Inside the route it shows
//!   what axum's `Router::layer` costs any layer, before the layer does anything.
//! - `OUTCOME`: `allow` (default) or `reject`.
//! - `LAYER`: where the limiter sits: `route` (default: `Router::layer`, inside every route, so
//!   a request is routed before it is checked) or `router` (around the whole `Router`, so a
//!   rejected request is never routed).
//! - `PORT`: default 3010.
//! - `REQUESTS`: when set, no socket: the server answers that many requests, one at a time, from
//!   a client in the same thread over an in-memory pipe, checks every status and exits.
//! - `CLIENTS` (with `REQUESTS`): the requests come from that many peer addresses in turn
//!   (default 1). Each one's first request is sent 1.1 s after the one before, so that, when
//!   rejecting, their waits differ and no rejection shows the numbers of the one before it.
//!   `fresh`: every request comes from an address never seen before, as from a client rotating
//!   its address; each is its address's first request, and so is answered 200.

#[path = "env/mod.rs"]
mod env;

use std::convert::Infallible;
use std::error::Error;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use axum::{routing::get, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tower::{Service, ServiceBuilder};
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::GovernorLayer;
use tower_ratelimit::{Quota, RateLimitLayer};

type BoxError = Box<dyn Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let limiter = env::var("LIMITER")?.unwrap_or_else(|| "none".into());
    let outcome = env::var("OUTCOME")?.unwrap_or_else(|| "allow".into());
    let placement = env::var("LAYER")?.unwrap_or_else(|| "route".into());
    // Allow: a burst no run can spend. Reject: one request an hour.
    let (period, burst) = match outcome.as_str() {
        "allow" => (Duration::from_nanos(1), 1_000_000_000),
        "reject" => (Duration::from_secs(3600), 1),
        other => return Err(format!("OUTCOME must be allow or reject, got {other:?}").into()),
    };
    let around_router = match placement.as_str() {
        "route" => false,
        "router" => true,
        other => return Err(format!("LAYER must be route or router, got {other:?}").into()),
    };
    let requests: Option<u64> = match env::var("REQUESTS")? {
        Some(n) => Some(
            n.parse()
                .map_err(|_| format!("REQUESTS must be a number, got {n:?}"))?,
        ),
        None => None,
    };
    let port: u16 = match env::var("PORT")? {
        Some(port) => port
            .parse()
            .map_err(|_| format!("PORT must be a port number, got {port:?}"))?,
        None => 3010,
    };
    let clients = match env::var("CLIENTS")? {
        Some(n) if n == "fresh" => Clients::Fresh,
        Some(n) => n
            .parse()
            .ok()
            .filter(|n| (1..=200).contains(n))
            .map(Clients::InTurn)
            .ok_or_else(|| {
                format!("CLIENTS must be a number from 1 to 200 or `fresh`, got {n:?}")
            })?,
        None => Clients::InTurn(1),
    };
    let run = Run {
        requests,
        clients,
        port,
        rejecting: outcome == "reject" && limiter != "none" && limiter != "noop",
    };

    let hello = Router::new().route("/", get(|| async { "hello" }));
    // The same router with a limiter inside its route, or around it (checked before routing).
    macro_rules! limited_by {
        ($layer:expr) => {
            if around_router {
                run.serve(ServiceBuilder::new().layer($layer).service(prepared(hello)))
            } else {
                run.serve(prepared(hello.layer($layer)))
            }
        };
    }
    match limiter.as_str() {
        "none" => run.serve(prepared(hello)),
        "noop" => limited_by!(tower::layer::util::Identity::new()),
        "ours" => limited_by!(RateLimitLayer::builder()
            .quota(Quota::with_period(period).allow_burst(burst))
            .build()?),
        "tower_governor" => limited_by!(GovernorLayer::new(
            GovernorConfigBuilder::default()
                .period(period)
                .burst_size(burst)
                .finish()
                .ok_or("invalid tower_governor configuration")?,
        )),
        other => {
            Err(format!("LIMITER must be none, ours, tower_governor or noop, got {other:?}").into())
        }
    }
}

/// What `axum::serve` and `Router::into_make_service` do before the first request: every route
/// built once, its layers applied. A `Router` called as a service without this builds its routes
/// (and applies its layers) again for every request.
fn prepared(router: Router) -> Router {
    router.with_state(())
}

/// Where the requests of a `REQUESTS` run come from.
#[derive(Clone, Copy)]
enum Clients {
    /// This many peer addresses, in turn.
    InTurn(u64),
    /// A new peer address for every request.
    Fresh,
}

impl Clients {
    /// The peer address of the `i`th request.
    fn peer(self, i: u64) -> SocketAddr {
        match self {
            Clients::InTurn(n) => SocketAddr::from(([192, 0, 2, 1 + (i % n) as u8], 40000)),
            // From 10.0.0.0 on: about 4.1 billion addresses before the counter wraps.
            Clients::Fresh => SocketAddr::from((
                std::net::Ipv4Addr::from(0x0a00_0000u32.wrapping_add(i as u32)),
                40000,
            )),
        }
    }

    /// How many requests are answered 200 when every address may send only its first.
    fn first_requests(self, n: u64) -> u64 {
        match self {
            Clients::InTurn(clients) => clients.min(n),
            Clients::Fresh => n,
        }
    }

    /// Before which requests the client waits 1.1 s: each new address of those in turn, so
    /// that their waits differ.
    fn waits_before(self, i: u64) -> bool {
        matches!(self, Clients::InTurn(n) if (1..n).contains(&i))
    }
}

struct Run {
    requests: Option<u64>,
    clients: Clients,
    port: u16,
    rejecting: bool,
}

impl Run {
    fn serve<S>(self, app: S) -> Result<(), BoxError>
    where
        S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send,
    {
        match self.requests {
            None => tokio::runtime::Runtime::new()?.block_on(async {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await?;
                println!("listening on http://{}", listener.local_addr()?);
                axum::serve(
                    listener,
                    axum::ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(
                        app,
                    ),
                )
                .await?;
                Ok(())
            }),
            Some(n) => self.serve_pipe(app, n),
        }
    }

    /// Serves `n` requests over an in-memory pipe: hyper's HTTP/1 server on one end, a client
    /// writing one request and reading its whole response at a time on the other.
    fn serve_pipe<S>(&self, app: S, n: u64) -> Result<(), BoxError>
    where
        S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send,
    {
        let clients = self.clients;
        let sent = Arc::new(AtomicU64::new(0));
        // What `axum::serve` does for each connection: the peer's address and axum's body type;
        // here the peer is each client in turn.
        let app = ServiceBuilder::new()
            .map_request(move |request: hyper::Request<hyper::body::Incoming>| {
                let peer = clients.peer(sent.fetch_add(1, Ordering::Relaxed));
                let mut request = request.map(axum::body::Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            })
            .service(app);
        let mut runtime = tokio::runtime::Builder::new_current_thread();
        if matches!(clients, Clients::InTurn(n) if n > 1) {
            runtime.enable_time();
        }
        let (ok, limited) = exchange(&runtime.build()?, app, n, clients)?;
        let expected_limited = if self.rejecting {
            n - clients.first_requests(n)
        } else {
            0
        };
        if limited != expected_limited {
            return Err(format!("{ok} answered 200 and {limited} 429").into());
        }
        println!("served {n} requests: {ok} answered 200, {limited} 429");
        Ok(())
    }
}

/// The server's connection and the client, run together on one thread so that a profiler can
/// count this function alone (`valgrind --tool=callgrind --toggle-collect='*exchange*'`): what
/// the server does per request, plus the client's small share.
#[inline(never)]
fn exchange<S>(
    runtime: &tokio::runtime::Runtime,
    app: S,
    n: u64,
    clients: Clients,
) -> Result<(u64, u64), BoxError>
where
    S: Service<hyper::Request<hyper::body::Incoming>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let connection = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(server), TowerToHyperService::new(app));
    let requests = async move {
        let mut buffer = Vec::with_capacity(64 * 1024);
        let (mut ok, mut limited) = (0u64, 0u64);
        for i in 0..n {
            if clients.waits_before(i) {
                tokio::time::sleep(Duration::from_millis(1100)).await;
            }
            client
                .write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
                .await?;
            match read_status(&mut client, &mut buffer).await? {
                200 => ok += 1,
                429 => limited += 1,
                other => return Err(format!("unexpected status {other}").into()),
            }
        }
        Ok::<_, BoxError>((ok, limited))
        // The client end drops here, which ends the connection.
    };
    let (served, answered) = runtime.block_on(async { tokio::join!(connection, requests) });
    served?;
    answered
}

/// Reads one whole response (headers and a `content-length` body) and returns its status.
async fn read_status(pipe: &mut DuplexStream, buffer: &mut Vec<u8>) -> Result<u16, BoxError> {
    buffer.clear();
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buffer[..end])?;
            let status: u16 = head
                .get(9..12)
                .and_then(|s| s.parse().ok())
                .ok_or("no status line")?;
            let length: usize = head
                .split("\r\n")
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .ok_or("no content-length")?;
            while buffer.len() < end + 4 + length {
                read_more(pipe, buffer).await?;
            }
            return Ok(status);
        }
        read_more(pipe, buffer).await?;
    }
}

async fn read_more(pipe: &mut DuplexStream, buffer: &mut Vec<u8>) -> Result<(), BoxError> {
    if pipe.read_buf(buffer).await? == 0 {
        return Err("the server closed the pipe".into());
    }
    Ok(())
}
