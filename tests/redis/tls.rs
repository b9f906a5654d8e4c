//! `rediss://`: the store over TLS to a `redis-server` listening with a certificate that the
//! test makes (with `openssl`), trusted through the test's own certificate authority.

use std::net::TcpListener;

use tower_ratelimit::{ManualClock, Policy, Quota, RedisStore, Store};

use crate::common::make_certificates;
use crate::stored_tat;
use crate::support::{self, RedisServer};

#[tokio::test]
async fn a_store_over_tls_decides_as_over_plain_tcp() {
    let dir = std::env::temp_dir().join(support::unique_prefix("tls"));
    std::fs::create_dir_all(&dir).unwrap();
    make_certificates(&dir);
    let tls_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let file = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let server = RedisServer::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &file("server.crt"),
        "--tls-key-file",
        &file("server.key"),
        "--tls-ca-cert-file",
        &file("ca.crt"),
        "--tls-auth-clients",
        "no",
    ]);
    let url = format!("rediss://localhost:{tls_port}");
    let trusted = || {
        let certificates = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(dir.join("ca.crt")).unwrap()),
        };
        redis::Client::build_with_tls(url.as_str(), certificates).unwrap()
    };

    let clock = ManualClock::new();
    let prefix = support::unique_prefix("tls");
    let store = RedisStore::builder()
        .client(trusted())
        .prefix(&prefix)
        .clock(clock.clone())
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    let stack = store
        .register(&[
            Policy::new("per-second", Quota::per_second(2)),
            Policy::new("per-minute", Quota::per_minute(3)),
        ])
        .unwrap();
    let mut admitted = Vec::new();
    for _ in 0..3 {
        admitted.push(store.check(&stack, b"alice", 1).await.unwrap().is_allowed());
    }
    assert_eq!(admitted, [true, true, false]);
    clock.advance(std::time::Duration::from_secs(1));
    assert!(store.check(&stack, b"alice", 1).await.unwrap().is_allowed());
    let over_minute = store.check(&stack, b"alice", 1).await.unwrap();
    assert!(!over_minute.is_allowed());
    assert!(over_minute.as_slice()[1].remaining() == 0);

    // The state went through the TLS port into the server the plain port also reaches.
    let mut plain = server.connection();
    let key = store.redis_key(&"alice");
    assert!(stored_tat(&mut plain, &key, "per-minute").is_some());

    // A certificate the client does not trust is refused when the store is built.
    let untrusted = RedisStore::builder().url(&url).build().await.unwrap_err();
    assert!(
        untrusted.to_string().contains("could not connect"),
        "{untrusted}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
