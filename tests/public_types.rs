//! The common traits of the public types, checked when the tests compile.

use std::error::Error;
use std::fmt::{Debug, Display};
use std::hash::Hash;

use tower_ratelimit::*;

fn debug<T: Debug>() {}
fn clone_send_sync<T: Clone + Send + Sync + 'static>() {}
fn value<T: Clone + Debug + PartialEq + Eq + Hash + Send + Sync + 'static>() {}
fn error<T: Error + Display + Debug + Send + Sync + 'static>() {}

#[test]
fn value_types_compare_and_hash() {
    // Equal keys written in two steps or one hash alike, so a set of key bytes works.
    let mut split = KeyBuf::new();
    split.extend(b"ten");
    split.extend(b"ant-7");
    let set: std::collections::HashSet<KeyBuf> = [split, "tenant-7".key_bytes()].into();
    assert_eq!(set.len(), 1);
    let nets: std::collections::HashSet<IpNet> =
        ["10.0.0.0/8", "10.0.0.0/8", "::ffff:10.0.0.0/104"]
            .map(|n| n.parse().unwrap())
            .into();
    assert_eq!(nets.len(), 1);

    value::<Quota>();
    value::<Policy>();
    value::<Decision>();
    value::<IpNet>();
    value::<KeyBuf>();
    value::<HeaderKey>();
    value::<MethodKey>();
    value::<MissingKey>();
    #[cfg(feature = "redis")]
    value::<FailurePolicy>();
}

#[test]
fn errors_are_std_errors_that_cross_threads() {
    error::<ConfigError>();
    error::<QuotaError>();
    #[cfg(feature = "redis")]
    error::<RedisStoreError>();
    // So that `?` turns them into the usual boxed error of `main`.
    let _: Box<dyn Error + Send + Sync> =
        ConfigError::from(QuotaError::clone(&"0/s".parse::<Quota>().unwrap_err())).into();
}

#[test]
fn addresses_are_networks_and_networks_collect_into_an_allow_list() {
    use std::net::IpAddr;

    for (addr, net) in [
        ("10.0.0.1", "10.0.0.1/32"),
        ("2001:db8::1", "2001:db8::1/128"),
        ("::ffff:10.0.0.1", "10.0.0.1/32"),
    ] {
        let addr: IpAddr = addr.parse().unwrap();
        assert_eq!(
            IpNet::from(addr),
            addr.to_string().parse::<IpNet>().unwrap()
        );
        assert_eq!(IpNet::from(addr).to_string(), net);
    }
    let allow: AllowIps = ["10.0.0.0/8", "2001:db8::/32"]
        .map(|net| net.parse::<IpNet>().unwrap())
        .into_iter()
        .collect();
    assert!(allow.contains("10.9.8.7".parse().unwrap()));
    assert!(allow.contains("2001:db8::5".parse().unwrap()));
    assert!(!allow.contains("192.0.2.1".parse().unwrap()));
}

#[test]
fn a_store_of_ones_own_can_refuse_a_stack_with_a_config_error() {
    struct Full;
    impl Store for Full {
        type Stack = ();
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Decisions, Self::Error>>;

        fn register(&self, policies: &[Policy]) -> Result<(), ConfigError> {
            let name = policies[0].name().to_owned();
            let full = std::io::Error::other("no room");
            Err(ConfigError::with_source(
                format!("no room for policy {name:?}"),
                full,
            ))
        }

        fn check(&self, _: &(), _: &[u8], _: u32) -> Self::Future {
            unreachable!("never registered")
        }

        fn peek(&self, _: &(), _: &[u8]) -> Self::Future {
            unreachable!("never registered")
        }
    }

    let error = RateLimitLayer::builder()
        .policy(Policy::new("api", Quota::per_second(1)))
        .store(Full)
        .build()
        .unwrap_err();
    assert_eq!(error.to_string(), r#"no room for policy "api""#);
    assert_eq!(error.source().unwrap().to_string(), "no room");
    assert_eq!(ConfigError::new("plain").to_string(), "plain");
}

#[test]
fn stores_extractors_and_clocks_are_shared_across_tasks() {
    clone_send_sync::<MemoryStore>();
    clone_send_sync::<MemoryStore<ManualClock>>();
    clone_send_sync::<MemoryStack>();
    clone_send_sync::<ManualClock>();
    clone_send_sync::<MonotonicClock>();
    clone_send_sync::<PeerIp>();
    clone_send_sync::<ForwardedIp>();
    clone_send_sync::<Header>();
    clone_send_sync::<Global>();
    clone_send_sync::<GrpcMethod>();
    clone_send_sync::<AllowIps>();
    clone_send_sync::<DefaultRejection>();
    clone_send_sync::<Decisions>();
    clone_send_sync::<RateLimited>();
    #[cfg(feature = "redis")]
    {
        clone_send_sync::<RedisStore>();
        clone_send_sync::<RedisStack>();
        clone_send_sync::<FailurePolicy>();
        fn send<T: Send + 'static>() {}
        send::<RedisStoreFuture>();
        send::<RedisStoreBuilder>();
        // Connecting can happen inside a spawned task.
        fn send_future<F: std::future::Future + Send>(_: F) {}
        send_future(RedisStore::connect("redis://127.0.0.1:1"));
        send_future(RedisStore::builder().url("redis://127.0.0.1:1").build());
    }
}

#[test]
fn every_public_type_is_debug() {
    debug::<RateLimitLayer>();
    debug::<RateLimitLayerBuilder>();
    debug::<RateLimit<()>>();
    debug::<MemoryStoreBuilder>();
    debug::<CostTooLarge>();
    debug::<MissingKeyRejected>();
    debug::<StoreFailed<'static>>();
    debug::<ResponseBody<String>>();
}
