//! Helpers shared by the test binaries; each binary uses some of them.

#![allow(dead_code)]

use std::future::{ready, Ready};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use http::Response;
use tower_ratelimit::{ConfigError, Decisions, ManualClock, MemoryStore, Policy, Store};
use tracing_subscriber::fmt::writer::OptionalWriter;

/// A memory store on a clock the test moves, and that clock.
pub fn manual_store() -> (MemoryStore<ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    let store = MemoryStore::builder()
        .clock(clock.clone())
        .build()
        .expect("a valid store");
    (store, clock)
}

/// A store that always fails, like a backend that is down under a policy that fails closed.
#[derive(Clone, Copy)]
pub struct DownStore;

impl Store for DownStore {
    type Stack = ();
    type Error = io::Error;
    type Future = Ready<Result<Decisions, io::Error>>;

    fn register(&self, _: &[Policy]) -> Result<(), ConfigError> {
        Ok(())
    }

    fn check(&self, _: &(), _: &[u8], _: u32) -> Self::Future {
        ready(Err(io::Error::other("connection refused")))
    }

    fn peek(&self, _: &(), _: &[u8]) -> Self::Future {
        ready(Err(io::Error::other("connection refused")))
    }
}

/// The value of the header `name` of `response`, which must have it as text.
pub fn header<'a, B>(response: &'a Response<B>, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {:?}", response.headers()))
        .to_str()
        .unwrap()
}

/// Serves `app` on a free loopback port, with the peer's address as connect info; returns
/// the address and the server's task.
/// `app` is a Router, or a service around one (a layer wrapping the whole Router).
pub async fn serve<S>(app: S) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    S: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
        SocketAddr,
    >(app);
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, server)
}

/// Makes a certificate authority and a server certificate for `localhost` in `dir`.
pub fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is needed to make the test's certificates: apt-get install openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=tower-ratelimit test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

/// What a `tracing` subscriber wrote on one thread, from [`Captured::install`].
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

thread_local! {
    /// The capture of this thread and the most verbose level it keeps, while installed.
    static CAPTURE: std::cell::RefCell<Option<(Captured, tracing::Level)>> =
        const { std::cell::RefCell::new(None) };
}

/// The writer of the global subscriber: the capture of the thread that logs.
struct ToThread;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ToThread {
    type Writer = OptionalWriter<Captured>;

    fn make_writer(&'a self) -> Self::Writer {
        CAPTURE.with(|capture| match &*capture.borrow() {
            Some((captured, _)) => OptionalWriter::some(captured.clone()),
            None => OptionalWriter::none(),
        })
    }
}

/// Whether this thread keeps lines of `meta`'s level: asked of every event, so that lines no
/// thread keeps are not even formatted.
fn kept(meta: &tracing::Metadata<'_>) -> bool {
    CAPTURE.with(|capture| matches!(&*capture.borrow(), Some((_, level)) if meta.level() <= level))
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Ends this thread's capture when dropped.
pub struct CaptureGuard(());

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE.with(|capture| capture.borrow_mut().take());
    }
}

impl Captured {
    /// Keeps what is logged on this thread at `level` and above in the returned `Captured`,
    /// until the guard is dropped.
    ///
    /// One global subscriber sends each line to the thread that logs it. A subscriber of this
    /// thread's own (`tracing::subscriber::set_default`) would miss lines: a thread with none
    /// (another test's) that meets a call site first leaves it cached as one no one listens to.
    pub fn install(level: tracing::Level) -> (Captured, CaptureGuard) {
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            use tracing_subscriber::layer::SubscriberExt as _;
            use tracing_subscriber::Layer as _;
            let lines = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(ToThread)
                .with_filter(tracing_subscriber::filter::dynamic_filter_fn(|meta, _| {
                    kept(meta)
                }));
            let subscriber = tracing_subscriber::registry().with(lines);
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other subscriber is set in the tests");
        });
        let captured = Captured::default();
        CAPTURE.with(|capture| *capture.borrow_mut() = Some((captured.clone(), level)));
        (captured, CaptureGuard(()))
    }

    /// What was written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// How many lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.text().lines().filter(|l| l.contains(needle)).count()
    }

    /// The value of the integer field `name` on the first line that contains `needle`.
    pub fn field(&self, needle: &str, name: &str) -> u64 {
        let text = self.text();
        let line = text.lines().find(|l| l.contains(needle)).expect(needle);
        let at = line.find(&format!("{name}=")).expect(name) + name.len() + 1;
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|digits| digits.parse().ok())
            .expect(name)
    }
}
