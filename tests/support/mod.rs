//! Private `redis-server` instances for the tests: one per test on a free port, with nothing
//! saved to disk, stopped when dropped. A cluster of three masters for the cluster tests, a
//! primary with a replica and a sentinel for the failover tests, and a store builder whose
//! every answer is Redis's own.
//!
//! `REDIS_URL` points the tests that only need some Redis at an existing server instead
//! ([`redis_url`]); they use prefixes of their own and never flush it. Tests that stop or pause
//! the server, and cluster tests, always start their own.

#![allow(dead_code)]

use std::io::ErrorKind;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tower_ratelimit::store::RedisStoreBuilder;
use tower_ratelimit::{FailurePolicy, RedisStore};

const INSTALL_HINT: &str = "redis-server was not found: install it (`apt-get install \
     redis-server`, which brings redis-cli too) or set REDIS_URL to a Redis the tests may use";

/// A `redis-server` process owned by the test.
pub struct RedisServer {
    process: Process,
    extra: Vec<String>,
}

/// A process of `redis-server` (as a server or a sentinel) on a port and in a directory of its
/// own; killed, and its directory removed, when dropped.
struct Process {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    /// What it is, for messages, and its log file in `dir`.
    what: &'static str,
    log: &'static str,
}

impl Process {
    fn new(what: &'static str, log: &'static str) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "tower-ratelimit-{}-{}-{port}",
            log.trim_end_matches(".log"),
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("cannot create a directory for redis-server");
        Process {
            child: None,
            port,
            dir,
            what,
            log,
        }
    }

    /// Runs `redis-server args` and waits until it answers `PING`; panics with its log if it
    /// exits, or after 10 s.
    fn launch(&mut self, args: &[&str]) {
        if let Err(log) = self.try_launch(args) {
            panic!("{} on port {} exited: {log}", self.what, self.port);
        }
    }

    /// Runs `redis-server args` and waits until it answers `PING`; its log if it exits, and a
    /// panic after 10 s.
    fn try_launch(&mut self, args: &[&str]) -> Result<(), String> {
        let child = match Command::new("redis-server")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
            Err(e) => panic!("cannot start {}: {e}", self.what),
        };
        let client = redis::Client::open(self.url()).unwrap();
        let child = self.child.insert(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200)) {
                // The port was free when it was chosen; another process may have taken it
                // since, and then this one exits below with the log saying so.
                let info: Option<String> = redis::cmd("INFO").arg("server").query(&mut conn).ok();
                let pid = format!("process_id:{}\r\n", child.id());
                if info.is_some_and(|info| info.contains(&pid)) {
                    return Ok(());
                }
            }
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Err(format!("({status}) {}", self.log()));
            }
            assert!(
                Instant::now() < deadline,
                "{} on port {} did not answer within 10 s",
                self.what,
                self.port
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(self.log)).unwrap_or_default()
    }

    /// Kills the process (SIGKILL) and waits for it to be gone.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where a test that needs some Redis finds it: its own server, unless `REDIS_URL` is set.
pub enum TestRedis {
    Own(RedisServer),
    External(String),
}

impl TestRedis {
    pub fn url(&self) -> String {
        match self {
            TestRedis::Own(server) => server.url(),
            TestRedis::External(url) => url.clone(),
        }
    }
}

/// A Redis for tests that only read and write their own keys.
pub fn redis_url() -> TestRedis {
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => TestRedis::External(url),
        _ => TestRedis::Own(RedisServer::start()),
    }
}

/// A key prefix no other test (or test run) uses.
pub fn unique_prefix(name: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "test-{name}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Sets the password Redis asks of new connections, and the one it gives its primary when it
/// is a replica; connections made before stay authenticated.
pub fn set_password(admin: &mut redis::Connection, password: &str) {
    for setting in ["requirepass", "masterauth"] {
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(setting)
            .arg(password)
            .query(admin)
            .unwrap();
    }
}

/// Closes every client connection but `admin`'s (replication links aside); returns how many.
pub fn kill_other_clients(admin: &mut redis::Connection) -> i64 {
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query(admin)
        .unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("no free loopback port")
        .port()
}

impl RedisServer {
    /// Starts a private server and waits until it answers.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a private server with extra `redis-server` arguments.
    ///
    /// The port was free when it was chosen, but another process (another test binary) may
    /// take it, or a cluster node's bus port (the port + 10 000), before the server binds
    /// them: then the server starts again on another port.
    pub fn start_with(extra: &[&str]) -> Self {
        let mut server = RedisServer {
            process: Process::new("redis-server", "redis.log"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        let mut retries = 4;
        loop {
            match server.try_launch() {
                Ok(()) => return server,
                Err(log) if retries > 0 && log.contains("Address already in use") => {
                    retries -= 1;
                    server.process = Process::new("redis-server", "redis.log");
                }
                Err(log) => panic!("redis-server on port {} exited: {log}", server.port()),
            }
        }
    }

    /// Starts the server and waits until it answers; panics with its log if it exits.
    fn launch(&mut self) {
        if let Err(log) = self.try_launch() {
            panic!("redis-server on port {} exited: {log}", self.port());
        }
    }

    fn try_launch(&mut self) -> Result<(), String> {
        let port = self.process.port.to_string();
        let dir = self.process.dir.to_str().unwrap().to_owned();
        let mut args = vec![
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir,
            "--logfile",
            "redis.log",
        ];
        args.extend(self.extra.iter().map(String::as_str));
        self.process.try_launch(&args)
    }

    pub fn port(&self) -> u16 {
        self.process.port
    }

    pub fn url(&self) -> String {
        self.process.url()
    }

    /// A plain synchronous connection for inspecting the server.
    pub fn connection(&self) -> redis::Connection {
        self.process.connection()
    }

    /// Makes the server hold every client's writes, scripts among them, for `ms` milliseconds,
    /// or until [`unpause`](Self::unpause).
    pub fn pause_writes(&self, ms: u64) {
        self.client_pause(ms, "WRITE");
    }

    /// Makes the server hold every client's commands for `ms` milliseconds (`CLIENT PAUSE`).
    pub fn pause(&self, ms: u64) {
        self.client_pause(ms, "ALL");
    }

    /// Ends a pause at once (`CLIENT UNPAUSE`).
    pub fn unpause(&self) {
        let () = redis::cmd("CLIENT")
            .arg("UNPAUSE")
            .query(&mut self.connection())
            .unwrap();
    }

    /// `CLIENT PAUSE ms mode`.
    fn client_pause(&self, ms: u64, mode: &str) {
        let () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(ms)
            .arg(mode)
            .query(&mut self.connection())
            .unwrap();
    }

    /// Kills the server process (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

/// Three masters, each with as many replicas as asked, joined into a Redis Cluster by
/// `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts the cluster with extra `redis-server` arguments for every node.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::create(0, 5000, extra)
    }

    /// Three masters with one replica each, every replica in sync; a node unanswered for
    /// `node_timeout_ms` is failed over to its replica.
    pub fn start_with_replicas(node_timeout_ms: u64) -> Self {
        // A primary waits 5 s by default before it streams its first sync to a replica.
        let cluster = Self::create(1, node_timeout_ms, &["--repl-diskless-sync-delay", "0"]);
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &cluster.nodes {
            let mut conn = node.connection();
            loop {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut conn)
                    .unwrap();
                if info.contains("role:master") || info.contains("master_link_status:up") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "a replica did not sync with its primary: {info}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        cluster
    }

    fn create(replicas: usize, node_timeout_ms: u64, extra: &[&str]) -> Self {
        let node_timeout = node_timeout_ms.to_string();
        let nodes: Vec<RedisServer> = (0..3 * (1 + replicas))
            .map(|_| {
                let mut args = vec![
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    &node_timeout,
                ];
                args.extend_from_slice(extra);
                RedisServer::start_with(&args)
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let output = match Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
        {
            Ok(output) => output,
            Err(e) if e.kind() == ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
            Err(e) => panic!("cannot run redis-cli: {e}"),
        };
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_until_ok();
        cluster
    }

    /// Waits until every node reports `cluster_state:ok`.
    pub fn wait_until_ok(&self) {
        self.wait_until_ok_but(None);
    }

    /// Waits until every node but `down` (if any: one that was killed) reports
    /// `cluster_state:ok`.
    pub fn wait_until_ok_but(&self, down: Option<usize>) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let up = (0..self.nodes.len()).filter(|&i| Some(i) != down);
        for node in up.map(|i| &self.nodes[i]) {
            let mut conn = node.connection();
            loop {
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut conn).unwrap();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster did not reach cluster_state:ok: {info}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The node that serves `key`: the primary of its slot, which answers `TYPE` where the
    /// others (replicas among them) answer `MOVED`. Every node must be up.
    pub fn holder_of(&self, key: &[u8]) -> usize {
        (0..self.nodes.len())
            .find(|&i| {
                redis::cmd("TYPE")
                    .arg(key)
                    .query::<String>(&mut self.nodes[i].connection())
                    .is_ok()
            })
            .expect("a node serves every slot")
    }
}

/// A `redis-server` in sentinel mode owned by the test, with its configuration file (which the
/// sentinel rewrites) in a directory of its own.
pub struct RedisSentinel {
    process: Process,
}

/// The master name the test sentinels monitor.
pub const MASTER_NAME: &str = "mymaster";

impl RedisSentinel {
    /// Starts a sentinel that monitors the primary on `primary_port` as [`MASTER_NAME`] with a
    /// quorum of one, declares it down after `down_after` without an answer and gives a
    /// failover `failover_timeout`; waits until it answers.
    pub fn start(primary_port: u16, down_after: Duration, failover_timeout: Duration) -> Self {
        let mut process = Process::new("redis-server --sentinel", "sentinel.log");
        let config = process.dir.join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\n\
                 bind 127.0.0.1\n\
                 dir {dir}\n\
                 logfile sentinel.log\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 1\n\
                 sentinel down-after-milliseconds {MASTER_NAME} {down_after}\n\
                 sentinel failover-timeout {MASTER_NAME} {failover_timeout}\n",
                port = process.port,
                dir = process.dir.display(),
                down_after = down_after.as_millis(),
                failover_timeout = failover_timeout.as_millis(),
            ),
        )
        .expect("cannot write the sentinel's configuration");
        // `redis-server <config> --sentinel` is what `redis-sentinel <config>` runs.
        process.launch(&[config.to_str().unwrap(), "--sentinel"]);
        RedisSentinel { process }
    }

    pub fn port(&self) -> u16 {
        self.process.port
    }

    pub fn url(&self) -> String {
        self.process.url()
    }

    /// The sentinel's log, for failure messages.
    pub fn log(&self) -> String {
        self.process.log()
    }

    fn connection(&self) -> redis::Connection {
        self.process.connection()
    }

    /// The port of the primary the sentinel names now.
    pub fn primary_port(&self) -> u16 {
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(MASTER_NAME)
            .query(&mut self.connection())
            .unwrap();
        port
    }

    /// Waits until the sentinel knows `replicas` replicas of the primary, all up.
    pub fn wait_for_replicas(&self, replicas: usize) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut conn = self.connection();
        loop {
            let known: Vec<std::collections::HashMap<String, String>> = redis::cmd("SENTINEL")
                .arg("REPLICAS")
                .arg(MASTER_NAME)
                .query(&mut conn)
                .unwrap();
            let up = known
                .iter()
                .filter(|replica| {
                    replica.get("flags").is_some_and(|flags| {
                        !flags.contains("s_down") && !flags.contains("disconnected")
                    }) && replica.get("master-link-status").map(String::as_str) == Some("ok")
                })
                .count();
            if up >= replicas {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the sentinel does not see {replicas} replicas up: {known:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A primary, one replica of it, and a sentinel that watches them under [`MASTER_NAME`],
/// declaring the primary down after 200 ms without an answer (a failover takes a second or
/// two).
pub struct SentinelGroup {
    pub primary: RedisServer,
    pub replica: RedisServer,
    pub sentinel: RedisSentinel,
}

impl SentinelGroup {
    pub fn start() -> Self {
        // No wait before a full sync (Redis waits 5 s by default for more replicas to join).
        let now = ["--repl-diskless-sync-delay", "0"];
        let primary = RedisServer::start_with(&now);
        let port = primary.port().to_string();
        let replica =
            RedisServer::start_with(&[&now[..], &["--replicaof", "127.0.0.1", &port]].concat());
        // The sentinel learns of the replica from the primary's `INFO`, which it reads as it
        // connects, then every ten seconds: the replica is in sync before it starts. After a
        // full sync the primary streams writes only once the replica has acknowledged (once a
        // second): `WAIT` returns when the replica has a write made now.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut conn = primary.connection();
        loop {
            let () = redis::cmd("SET")
                .arg("replication-check")
                .arg(1)
                .query(&mut conn)
                .unwrap();
            let acknowledged: u32 = redis::cmd("WAIT").arg(1).arg(200).query(&mut conn).unwrap();
            if acknowledged == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the replica did not catch up with the primary"
            );
        }
        let _: u32 = redis::cmd("DEL")
            .arg("replication-check")
            .query(&mut conn)
            .unwrap();
        let sentinel = RedisSentinel::start(
            primary.port(),
            Duration::from_millis(200),
            Duration::from_millis(1000),
        );
        sentinel.wait_for_replicas(1);
        SentinelGroup {
            primary,
            replica,
            sentinel,
        }
    }
}

/// The replication role of a server: `master` or `slave`.
pub fn role(server: &RedisServer) -> String {
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut server.connection()).unwrap();
    match role.first() {
        Some(redis::Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        other => panic!("ROLE answered {other:?}"),
    }
}

/// How many times Redis ran a command, from `INFO commandstats` (`evalsha`, `eval`, ...).
pub fn command_calls(conn: &mut redis::Connection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
        .unwrap_or(0)
}

/// How many times the cluster's masters ran a command, all together.
pub fn cluster_command_calls(cluster: &RedisCluster, command: &str) -> u64 {
    cluster
        .nodes
        .iter()
        .map(|node| command_calls(&mut node.connection(), command))
        .sum()
}

/// A manual clock at a time like Redis `TIME`'s, well past zero, for stores in clock mode.
pub fn clock_at_unix_time() -> tower_ratelimit::ManualClock {
    let clock = tower_ratelimit::ManualClock::new();
    clock.advance(Duration::from_secs(1_700_000_000));
    clock
}

/// A store builder for tests, still without a connection: a prefix of its own, no failure
/// fallback (`Deny`, so a Redis failure is an error, never an in-memory answer in Redis's
/// place) and a timeout a slow machine cannot hit.
pub fn strict_store(name: &str) -> RedisStoreBuilder {
    RedisStore::builder()
        .prefix(unique_prefix(name))
        .on_failure(FailurePolicy::Deny)
        .timeout(Duration::from_secs(5))
}

/// A TCP proxy on loopback in front of Redis. New connections go to the server it points at,
/// which can change (as a DNS name moved to a new primary would send them), and the
/// connections open at some moment can be cut off without a word: they stay open and forward
/// nothing more either way, as behind a load balancer or NAT that forgot them.
pub struct Proxy {
    port: u16,
    state: Arc<ProxyState>,
}

struct ProxyState {
    upstream: AtomicU16,
    /// Connections accepted so far; each is numbered in turn.
    accepted: AtomicU64,
    /// Connections numbered below this forward nothing.
    silent_below: AtomicU64,
    /// Connections accepted while this is set forward their client's first request (a Redis
    /// client's handshake), and nothing it sends after.
    handshake_only: AtomicBool,
    /// How long, in milliseconds, every answer from the server is held before it goes on.
    answers_delayed_ms: AtomicU64,
}

/// Which way a proxied connection's bytes go.
#[derive(Clone, Copy)]
enum Way {
    /// From the client; `first_only` forwards what it reads first and nothing after.
    Requests { first_only: bool },
    /// From the server, held as long as the proxy delays answers.
    Answers,
}

impl Proxy {
    /// A proxy to `server`, accepting connections until the test process ends.
    pub fn to(server: &RedisServer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("no free loopback port");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ProxyState {
            upstream: server.port().into(),
            accepted: 0.into(),
            silent_below: 0.into(),
            handshake_only: false.into(),
            answers_delayed_ms: 0.into(),
        });
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let number = shared.accepted.fetch_add(1, Ordering::SeqCst);
                let handshake_only = shared.handshake_only.load(Ordering::SeqCst);
                let upstream = shared.upstream.load(Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let requests = Way::Requests {
                    first_only: handshake_only,
                };
                for (from, to, way) in [
                    (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        requests,
                    ),
                    (server, client, Way::Answers),
                ] {
                    let shared = Arc::clone(&shared);
                    std::thread::spawn(move || pump(from, to, number, way, &shared));
                }
            }
        });
        Proxy { port, state }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sends the connections opened from now on to `server`.
    pub fn point_at(&self, server: &RedisServer) {
        self.state.upstream.store(server.port(), Ordering::SeqCst);
    }

    /// The connections open now forward nothing more, and stay open; the ones opened from now
    /// on forward everything.
    pub fn silence_open_connections(&self) {
        self.state.handshake_only.store(false, Ordering::SeqCst);
        let accepted = self.state.accepted.load(Ordering::SeqCst);
        self.state.silent_below.store(accepted, Ordering::SeqCst);
    }

    /// The connections opened from now on, until
    /// [`silence_open_connections`](Self::silence_open_connections), forward their client's
    /// first request (a Redis client's handshake, and its answer) and nothing after: they go
    /// silent before their first call is answered.
    pub fn silence_new_connections_after_their_handshake(&self) {
        self.state.handshake_only.store(true, Ordering::SeqCst);
    }

    /// Every answer from the server is held for `delay` before it goes on, on every connection.
    pub fn delay_answers(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap();
        self.state.answers_delayed_ms.store(ms, Ordering::SeqCst);
    }

    /// How many connections the proxy has accepted.
    pub fn connections(&self) -> u64 {
        self.state.accepted.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to` until either end closes, as `way` says; a silenced connection's bytes
/// are read and dropped.
fn pump(mut from: TcpStream, mut to: TcpStream, number: u64, way: Way, state: &ProxyState) {
    use std::io::{Read, Write};
    let mut buf = [0; 16 * 1024];
    let mut reads = 0;
    while let Ok(n @ 1..) = from.read(&mut buf) {
        reads += 1;
        let forward = match way {
            Way::Requests { first_only } => !first_only || reads == 1,
            Way::Answers => {
                match state.answers_delayed_ms.load(Ordering::SeqCst) {
                    0 => {}
                    delay => std::thread::sleep(Duration::from_millis(delay)),
                }
                true
            }
        };
        let silent = number < state.silent_below.load(Ordering::SeqCst);
        if forward && !silent && to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}
