//! The script and its keys: one Redis key per key, a hash tag (a long key as its digest),
//! holding the TAT of each policy with an expiry at the moment the last is full again; one
//! `EVALSHA` per check whatever the size of the stack; nothing written by denials and peeks;
//! `SCRIPT FLUSH` survived.

use std::net::IpAddr;
use std::time::Duration;

use redis::Commands;
use tower_ratelimit::{
    KeyBytes, ManualClock, MemoryStore, Policy, Quota, RedisStack, RedisStore, Store, MAX_KEY_LEN,
};

use crate::support::{command_calls, strict_store, RedisServer};
use crate::{records, stored_tat, tat_in};

/// A store on Redis `TIME` that sends every check to Redis.
async fn store(server: &RedisServer) -> RedisStore {
    stepped_store(server, Duration::ZERO).await
}

/// The same with its keys' expiries rounded up to `step`.
async fn stepped_store(server: &RedisServer, step: Duration) -> RedisStore {
    strict_store("script")
        .url(server.url())
        .deny_cache(false)
        .expiry_step(step)
        .build()
        .await
        .unwrap()
}

/// A store whose checks carry the time of `clock`, sending every check to Redis.
async fn clocked_store(server: &RedisServer, clock: &ManualClock) -> RedisStore {
    strict_store("script")
        .url(server.url())
        .clock(clock.clone())
        .deny_cache(false)
        .build()
        .await
        .unwrap()
}

/// A stack of the one policy `name` on `store`.
fn one_policy(store: &RedisStore, name: &str, quota: Quota) -> RedisStack {
    store.register(&[Policy::new(name, quota)]).unwrap()
}

/// Redis's count of writes since the last save: it moves on every write, and only then.
fn writes(conn: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("persistence").query(conn).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("rdb_changes_since_last_save:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn redis_time(conn: &mut redis::Connection) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query(conn).unwrap();
    secs * 1_000_000 + micros
}

fn sorted_keys(conn: &mut redis::Connection) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = conn.keys("*").unwrap();
    keys.sort();
    keys
}

#[tokio::test]
async fn a_key_is_one_redis_key_holding_the_tat_of_each_policy() {
    let server = RedisServer::start();
    let store = strict_store("script")
        .url(server.url())
        .prefix("keys")
        .deny_cache(false)
        .build()
        .await
        .unwrap();
    let stack = store
        .register(&[
            // Windows long enough that no key expires while the test reads it, however
            // slowly the machine runs.
            Policy::new("per-minute", Quota::per_minute(10)),
            Policy::new("per-hour", Quota::per_hour(100)),
        ])
        .unwrap();
    let mut conn = server.connection();
    // Redis's time read just before and just after a check bounds the check's own, so the
    // bounds below hold however slowly the machine runs.
    let before = redis_time(&mut conn);
    let decisions = store.check(&stack, b"alice", 4).await.unwrap();
    let after = redis_time(&mut conn);
    let resets: Vec<Duration> = decisions
        .as_slice()
        .iter()
        .map(|d| d.reset_after())
        .collect();
    assert_eq!(resets, [Duration::from_secs(24), Duration::from_secs(144)]);

    let key = store.redis_key(&"alice");
    assert_eq!(key, b"{keys:alice}");
    assert_eq!(sorted_keys(&mut conn), std::slice::from_ref(&key));

    // The key holds each policy's TAT, in [low, high] µs; the last TAT's bounds are given,
    // when it is reached the key expires.
    let expect = |conn: &mut redis::Connection, tats: [(&str, u64, u64); 2]| {
        for (policy, low, high) in tats {
            let tat = stored_tat(conn, &key, policy).unwrap();
            assert!(
                (low..=high).contains(&tat),
                "{policy}: TAT {tat} not in {low}..={high}"
            );
        }
        // The expiry is the TAT rounded up to a millisecond; PTTL counts from when it is read.
        let (_, low, high) = tats[1];
        let (from, pttl, to) = (redis_time(conn), conn.pttl(&key).unwrap(), redis_time(conn));
        let least = (low / 1000) as i64 - (to / 1000) as i64 - 1;
        let most = high.div_ceil(1000) as i64 - (from / 1000) as i64;
        assert!(
            (least..=most).contains(&pttl),
            "PTTL {pttl} not in {least}..={most} ms"
        );
    };
    let ms = 1_000;
    expect(
        &mut conn,
        [
            ("per-minute", before + 24_000 * ms, after + 24_000 * ms),
            ("per-hour", before + 144_000 * ms, after + 144_000 * ms),
        ],
    );

    // A conforming check moves both TATs by its cells, and both expiries with them.
    let before_2 = redis_time(&mut conn);
    assert!(store.check(&stack, b"alice", 6).await.unwrap().is_allowed());
    let after_2 = redis_time(&mut conn);
    let moved = |low: u64, high: u64, cells: u64| {
        (
            low.max(before_2) + cells * ms,
            high.max(after_2) + cells * ms,
        )
    };
    let (minute_low, minute_high) = moved(before + 24_000 * ms, after + 24_000 * ms, 36_000);
    let (hour_low, hour_high) = moved(before + 144_000 * ms, after + 144_000 * ms, 216_000);
    expect(
        &mut conn,
        [
            ("per-minute", minute_low, minute_high),
            ("per-hour", hour_low, hour_high),
        ],
    );
}

#[tokio::test]
async fn keys_are_their_key_bytes_under_the_prefix() {
    let server = RedisServer::start();
    let store = strict_store("script")
        .url(server.url())
        .prefix("bytes")
        .build()
        .await
        .unwrap();
    let stack = one_policy(&store, "p", Quota::per_minute(5));
    let ip: IpAddr = "2001:db8::1".parse().unwrap();
    let keys = [
        "alice".key_bytes(),
        42u64.key_bytes(),
        ip.key_bytes(),
        ("tenant", 7u32).key_bytes(),
        // An opening brace does not end the hash tag: kept as it is.
        vec![0xff, b'{', b':'].key_bytes(),
    ];
    let mut expected = Vec::new();
    for key in &keys {
        assert!(store
            .check(&stack, key.as_bytes(), 1)
            .await
            .unwrap()
            .is_allowed());
        expected.push([b"{bytes:", key.as_bytes(), b"}"].concat());
    }
    expected.sort();
    assert_eq!(sorted_keys(&mut server.connection()), expected);
    assert_eq!(store.redis_key(&42u64), b"{bytes:42}");
    assert_eq!(store.redis_key(&ip), b"{bytes:2001:db8::1}");
    assert_eq!(store.redis_key(&("tenant", 7u32)), b"{bytes:6:tenant7}");
    // A closing brace would end the tag early: such a key is kept as its digest, whole, and
    // keeps a budget of its own.
    let braced = [&b"}a"[..], b"}b", b"x}"];
    for key in braced {
        assert!(store.check(&stack, key, 5).await.unwrap().is_allowed());
        let redis_key = store.redis_key(key);
        assert!(redis_key.starts_with(b"{bytes:sha256:"), "{redis_key:?}");
        assert_eq!(redis_key.iter().filter(|&&b| b == b'}').count(), 1);
        assert!(redis_key.ends_with(b"}"));
    }
    assert!(!store.check(&stack, b"}a", 1).await.unwrap().is_allowed());
    assert_eq!(sorted_keys(&mut server.connection()).len(), keys.len() + 3);
}

#[tokio::test]
async fn a_key_longer_than_the_longest_kept_or_spelling_a_digest_is_its_sha256_under_the_prefix() {
    let server = RedisServer::start();
    let store = store(&server).await;
    let stack = one_policy(&store, "p", Quota::per_minute(2));
    // "a" × 65: one byte past the longest key kept as it is. Its digest, from `sha256sum`,
    // starts 635361c48bb9eab14198e76ea8ab7f1a.
    let long = "a".repeat(MAX_KEY_LEN + 1);
    let kept = "a".repeat(MAX_KEY_LEN);
    for key in [&long, &kept] {
        let first = store.check(&stack, key.as_bytes(), 2).await.unwrap();
        assert!(first.is_allowed());
        let second = store.check(&stack, key.as_bytes(), 1).await.unwrap();
        assert!(!second.is_allowed(), "one budget per key");
    }
    // A key that spells that digest is a key of its own, kept as its own digest.
    let spelled = "sha256:635361c48bb9eab14198e76ea8ab7f1a";
    let own = store.check(&stack, spelled.as_bytes(), 2).await.unwrap();
    assert!(own.is_allowed(), "not the long key's spent budget");
    let digest = store.redis_key(&long);
    let as_is = store.redis_key(&kept);
    let respelled = store.redis_key(&spelled);
    assert!(digest.ends_with(b":sha256:635361c48bb9eab14198e76ea8ab7f1a}"));
    assert!(as_is.ends_with(format!(":{kept}}}").as_bytes()));
    assert!(respelled.ends_with(b"}") && respelled.len() == digest.len());
    assert_ne!(respelled, digest);
    let mut expected = vec![digest, as_is, respelled];
    expected.sort();
    assert_eq!(sorted_keys(&mut server.connection()), expected);

    // The memory store keeps the same key the same way: a history decided on one is decided
    // the same on the other.
    let memory = MemoryStore::new();
    let local = memory
        .register(&[Policy::new("p", Quota::per_minute(2))])
        .unwrap();
    assert!(memory.check_now(&local, long.as_bytes(), 2).is_allowed());
    let denied = memory.check_now(&local, long.as_bytes(), 1);
    let from_redis = store.peek(&stack, long.as_bytes()).await.unwrap();
    assert!(!denied.is_allowed() && !from_redis.is_allowed());
    let wait = |d: &tower_ratelimit::Decisions| d.retry_after().as_secs_f64();
    assert!((wait(&denied) - wait(&from_redis)).abs() < 1.0);
}

#[tokio::test]
async fn a_conforming_stack_check_writes_its_key_once_and_denials_and_peeks_nothing() {
    let server = RedisServer::start();
    let store = store(&server).await;
    let stack = store
        .register(&[
            Policy::new("per-minute", Quota::per_minute(5)),
            Policy::new("per-hour", Quota::per_hour(50)),
        ])
        .unwrap();
    let mut conn = server.connection();
    let before = writes(&mut conn);
    assert!(store.check(&stack, b"7", 5).await.unwrap().is_allowed());
    let after_one = writes(&mut conn);
    assert_eq!(after_one, before + 1, "one write for the stack");
    for _ in 0..100 {
        assert!(!store.check(&stack, b"7", 1).await.unwrap().is_allowed());
        assert!(!store.peek(&stack, b"7").await.unwrap().is_allowed());
        assert!(store.peek(&stack, b"8").await.unwrap().is_allowed());
    }
    assert_eq!(writes(&mut conn), after_one);
    let key = store.redis_key(&7u64);
    assert_eq!(
        sorted_keys(&mut conn),
        std::slice::from_ref(&key),
        "peeks create no keys"
    );
    for policy in ["per-minute", "per-hour"] {
        assert!(stored_tat(&mut conn, &key, policy).is_some(), "{policy}");
    }
}

#[tokio::test]
async fn a_stack_check_is_one_evalsha_whatever_its_size() {
    let server = RedisServer::start();
    let store = store(&server).await;
    let policies = [
        Policy::new("a", Quota::per_second(5)),
        Policy::new("b", Quota::per_minute(20)),
        Policy::new("c", Quota::per_hour(100)),
    ];
    let mut conn = server.connection();
    for size in 1..=3 {
        let stack = store.register(&policies[..size]).unwrap();
        let evalsha = command_calls(&mut conn, "evalsha");
        let eval = command_calls(&mut conn, "eval");
        let mut denied = 0;
        for i in 0..40u32 {
            let key = format!("{size}-{}", i % 2);
            denied += u32::from(
                !store
                    .check(&stack, key.as_bytes(), 1)
                    .await
                    .unwrap()
                    .is_allowed(),
            );
        }
        for i in 0..10u32 {
            store
                .peek(&stack, format!("{size}-{i}").as_bytes())
                .await
                .unwrap();
        }
        assert!(denied > 0, "the checks should include denials");
        assert_eq!(
            command_calls(&mut conn, "evalsha") - evalsha,
            50,
            "{size} policies: one EVALSHA per check and per peek"
        );
        assert_eq!(command_calls(&mut conn, "eval"), eval);
    }
}

#[tokio::test]
async fn the_script_is_reloaded_after_script_flush() {
    let server = RedisServer::start();
    let store = store(&server).await;
    let stack = store
        .register(&[
            Policy::new("per-minute", Quota::per_minute(3)),
            Policy::new("per-hour", Quota::per_hour(30)),
        ])
        .unwrap();
    let mut conn = server.connection();
    assert!(store.check(&stack, b"k", 1).await.unwrap().is_allowed());
    let loads = command_calls(&mut conn, "script|load");
    let () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut conn).unwrap();
    // The failure policy is Deny: an answer here comes from the script.
    let decisions = store.check(&stack, b"k", 1).await.unwrap();
    assert!(decisions.is_allowed());
    let remaining: Vec<u32> = decisions.as_slice().iter().map(|d| d.remaining()).collect();
    assert_eq!(remaining, [1, 28]);
    assert_eq!(command_calls(&mut conn, "script|load"), loads + 1);
    assert_eq!(
        store.check(&stack, b"k", 1).await.unwrap().as_slice()[0].remaining(),
        0
    );
}

/// A key's TAT under `policy` (µs) and the moment the key expires (Unix ms, by `PEXPIRETIME`,
/// Redis 7.0), read together in one transaction so that the key cannot expire between the
/// two; `None` if it is gone or holds no TAT for `policy`.
fn tat_and_expiry(conn: &mut redis::Connection, key: &[u8], policy: &str) -> Option<(u64, u64)> {
    let (value, at): (Option<Vec<u8>>, i64) = redis::pipe()
        .atomic()
        .get(key)
        .cmd("PEXPIRETIME")
        .arg(key)
        .query(conn)
        .unwrap();
    let tat = tat_in(&value?, policy)?;
    Some((tat, u64::try_from(at).expect("a key with an expiry")))
}

#[tokio::test]
async fn with_an_expiry_step_a_key_expires_at_the_step_after_its_tat_and_keeps_it_within_the_step()
{
    let server = RedisServer::start();
    let store = stepped_store(&server, Duration::from_secs(10)).await;
    // 100 ms per cell, a burst of 10: eight checks move the TAT by 800 ms, within one step
    // of 10 s or across one boundary.
    let stack = one_policy(&store, "p", Quota::per_second(10));
    let key = store.redis_key(&"alice");
    let mut conn = server.connection();
    let step_us = 10_000_000;
    let mut kept = 0;
    let mut last: Option<(u64, u64)> = None;
    for _ in 0..8 {
        assert!(store.check(&stack, b"alice", 1).await.unwrap().is_allowed());
        let (tat, expires) = tat_and_expiry(&mut conn, &key, "p").expect("just written");
        let step_after_ms = tat.div_ceil(step_us) * step_us / 1000;
        match last {
            Some((step_before_ms, expired_before)) if step_before_ms == step_after_ms => {
                assert_eq!(
                    expires, expired_before,
                    "the expiry moved though the TAT stayed within its step"
                );
                kept += 1;
            }
            _ => assert!(
                (step_after_ms..step_after_ms + 100).contains(&expires),
                "expires at {expires} ms; the step after the TAT ends at {step_after_ms}"
            ),
        }
        assert!(expires * 1000 >= tat, "the key would expire before its TAT");
        last = Some((step_after_ms, expires));
    }
    assert!(kept >= 6, "{kept} of 7 checks kept the expiry");
}

#[tokio::test]
async fn with_an_expiry_step_no_key_expires_before_its_tat() {
    let server = RedisServer::start();
    let store = stepped_store(&server, Duration::from_millis(50)).await;
    // 50 ms per cell, a burst of 5, stacked with a slower policy; costs from 0 to 3 (0 is a
    // peek, 3 is sometimes denied) on three keys, checks 0 to 20 ms apart.
    let stack = store
        .register(&[
            Policy::new("fast", Quota::per_second(20).allow_burst(5)),
            Policy::new("slow", Quota::per_minute(600)),
        ])
        .unwrap();
    let mut conn = server.connection();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut allowed, mut denied) = (0, 0);
    for _ in 0..150 {
        let key = ["a", "b", "c"][(next() % 3) as usize];
        let cost = (next() % 4) as u32;
        let decisions = store.check(&stack, key.as_bytes(), cost).await.unwrap();
        match (cost, decisions.is_allowed()) {
            (0, _) => {}
            (_, true) => allowed += 1,
            (_, false) => denied += 1,
        }
        for key in ["a", "b", "c"] {
            for policy in ["fast", "slow"] {
                let redis_key = store.redis_key(&key);
                if let Some((tat, expires)) = tat_and_expiry(&mut conn, &redis_key, policy) {
                    assert!(
                        expires * 1000 >= tat,
                        "{key}/{policy}: expires at {expires} ms, before its TAT {tat} µs"
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(next() % 20)).await;
    }
    assert!(
        allowed > 20 && denied > 5,
        "{allowed} allowed, {denied} denied"
    );
}

#[tokio::test]
async fn an_expiry_step_longer_than_a_day_is_refused() {
    let error = RedisStore::builder()
        .url("redis://127.0.0.1:1")
        .expiry_step(Duration::from_secs(25 * 3600))
        .build()
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("expiry_step of 90000s is longer than a day"),
        "{error}"
    );
}

#[tokio::test]
async fn a_store_pointed_at_a_replica_is_refused_when_built() {
    let primary = RedisServer::start();
    let replica =
        RedisServer::start_with(&["--replicaof", "127.0.0.1", &primary.port().to_string()]);
    assert_eq!(crate::support::role(&replica), "slave");
    let error = RedisStore::builder()
        .url(replica.url())
        .build()
        .await
        .expect_err("a store whose every check would fail with READONLY was built");
    let message = error.to_string();
    assert!(message.contains("is a replica"), "{message}");
    assert!(message.contains("primary"), "{message}");

    // The primary it replicates is fine.
    RedisStore::builder()
        .url(primary.url())
        .build()
        .await
        .expect("the primary was refused");
}

#[tokio::test]
async fn a_clock_past_what_doubles_count_exactly_never_admits_more_than_the_burst() {
    let server = RedisServer::start();
    // 2^53 + 1 µs: the script's numbers are doubles, which stop being exact integers there.
    let clock = ManualClock::new();
    clock.advance(Duration::from_micros((1 << 53) + 1));
    let store = clocked_store(&server, &clock).await;
    let memory = MemoryStore::builder().clock(clock.clone()).build().unwrap();
    let policy = [Policy::new(
        "one",
        Quota::with_period(Duration::from_micros(1)).allow_burst(1),
    )];
    let (stack, local) = (
        store.register(&policy).unwrap(),
        memory.register(&policy).unwrap(),
    );
    let mut admitted = 0;
    for i in 0..5 {
        let exact = memory.check(&local, b"k", 1).await.unwrap();
        assert_eq!(exact.is_allowed(), i == 0);
        // The store may leave such a time to its failure policy (`Deny` here), but any
        // decision it makes is the exact one.
        if let Ok(decisions) = store.check(&stack, b"k", 1).await {
            admitted += u32::from(decisions.is_allowed());
            assert_eq!(decisions, exact, "check {i}");
        }
    }
    assert!(
        admitted <= 1,
        "{admitted} checks of a burst of 1 admitted at one instant"
    );
}

/// The message of a failed build with its causes.
fn build_error(error: &tower_ratelimit::ConfigError) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message += &format!(": {cause}");
        source = cause.source();
    }
    message
}

#[tokio::test]
async fn build_fails_naming_the_permissions_when_the_user_may_not_run_the_script() {
    let server = RedisServer::start();
    let mut admin = server.connection();
    let url = |user: &str| format!("redis://{user}:pw@127.0.0.1:{}", server.port());
    let grant = |admin: &mut redis::Connection, user: &str, rules: &[&str]| {
        let mut acl = redis::cmd("ACL");
        acl.arg("SETUSER")
            .arg(user)
            .arg("on")
            .arg(">pw")
            .arg("-@all");
        let _: () = acl.arg(rules).query(admin).unwrap();
    };
    let everything = [
        "+evalsha",
        "+script|load",
        "+role",
        "+time",
        "+mget",
        "+set",
        "+psetex",
    ];
    let build = |user: &str| {
        RedisStore::builder()
            .url(url(user))
            .on_failure(tower_ratelimit::store::FailurePolicy::Deny)
            .build()
    };
    // Everything the store needs, on its keys: `{` and the prefix.
    grant(
        &mut admin,
        "ok",
        &[&everything[..], &["~{ratelimit:*"]].concat(),
    );
    let store = build("ok").await.unwrap();
    let stack = one_policy(&store, "p", Quota::per_second(1));
    assert!(store.check(&stack, b"k", 1).await.unwrap().is_allowed());
    // Keys named without the hash tag's brace, then each command the store needs taken away:
    // every check would fail, so building does.
    grant(
        &mut admin,
        "keys",
        &[&everything[..], &["~ratelimit:*"]].concat(),
    );
    let error = build_error(&build("keys").await.unwrap_err());
    assert!(error.contains("~{ratelimit:*"), "{error}");
    for command in ["evalsha", "time", "mget"] {
        let rules: Vec<&str> = everything
            .iter()
            .copied()
            .filter(|rule| *rule != format!("+{command}"))
            .chain(["~{ratelimit:*"])
            .collect();
        grant(&mut admin, command, &rules);
        let error = build_error(&build(command).await.unwrap_err());
        assert!(error.contains("+evalsha"), "{command}: {error}");
    }
    // The peek writes nothing: a user that may not write builds, and its admitted checks fail.
    let rules: Vec<&str> = everything
        .iter()
        .copied()
        .filter(|rule| *rule != "+psetex")
        .chain(["~{ratelimit:*"])
        .collect();
    grant(&mut admin, "no-writes", &rules);
    let store = build("no-writes").await.unwrap();
    let stack = one_policy(&store, "p", Quota::per_second(1));
    assert!(store.check(&stack, b"fresh", 1).await.is_err());
}

#[tokio::test]
async fn build_succeeds_while_writes_are_paused() {
    let server = RedisServer::start();
    // Redis holds scripts while writes are paused, as in a failover.
    server.pause_writes(3000);
    let built = RedisStore::builder().url(server.url()).build().await;
    server.unpause();
    built.unwrap();
}

#[tokio::test]
async fn build_succeeds_while_writes_are_paused_on_a_connection_with_a_response_timeout() {
    let server = RedisServer::start();
    // A manager of the application's with a response timeout shorter than the build's wait:
    // the held peek ends as a timeout of the connection's own.
    let client = redis::Client::open(server.url()).unwrap();
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_millis(200)));
    let manager = redis::aio::ConnectionManager::new_with_config(client, config)
        .await
        .unwrap();
    server.pause_writes(3000);
    let built = RedisStore::builder()
        .connection_manager(manager)
        .build()
        .await;
    server.unpause();
    built.unwrap();
}

#[tokio::test]
async fn stacks_on_one_key_share_its_value_and_passed_tats_are_left_out() {
    let server = RedisServer::start();
    let store = store(&server).await;
    let login = one_policy(&store, "login", Quota::per_hour(5));
    let api = one_policy(&store, "api", Quota::per_second(100));
    let mut conn = server.connection();
    let key = store.redis_key(&"alice");
    assert!(store.check(&login, b"alice", 5).await.unwrap().is_allowed());
    assert!(store.check(&api, b"alice", 1).await.unwrap().is_allowed());
    // The API's write kept the login's TAT: its budget is still spent.
    assert!(stored_tat(&mut conn, &key, "login").is_some());
    assert!(!store.check(&login, b"alice", 1).await.unwrap().is_allowed());

    // A record whose TAT has passed says a full burst: it is left out of the next write.
    let login_tat = stored_tat(&mut conn, &key, "login").unwrap() as f64;
    let value = records(&[("login", login_tat), ("old", 1.0)]);
    let () = conn.set(&key, value).unwrap();
    assert!(store.check(&api, b"alice", 1).await.unwrap().is_allowed());
    assert_eq!(stored_tat(&mut conn, &key, "old"), None);
    assert!(stored_tat(&mut conn, &key, "login").is_some());
    assert!(stored_tat(&mut conn, &key, "api").is_some());

    // A value that is not records counts as none, as a missing key does.
    let () = conn.set(&key, "not records").unwrap();
    let decisions = store.check(&login, b"alice", 1).await.unwrap();
    assert_eq!(decisions.as_slice()[0].remaining(), 4);
    assert!(stored_tat(&mut conn, &key, "login").is_some());
}

/// In clock mode the TATs are the checking processes' times, which Redis's expiry does not
/// follow: a passed TAT is kept for the least expiry (an hour), as a key of its own was.
#[tokio::test]
async fn in_clock_mode_a_passed_tat_is_kept_for_the_least_expiry() {
    let server = RedisServer::start();
    let clock = crate::support::clock_at_unix_time();
    let store = clocked_store(&server, &clock).await;
    let fast = one_policy(&store, "fast", Quota::per_second(1));
    let slow = one_policy(&store, "slow", Quota::per_hour(10));
    let mut conn = server.connection();
    let key = store.redis_key(&"k");
    assert!(store.check(&fast, b"k", 1).await.unwrap().is_allowed());

    // Passed by 9 s: kept when the other policy writes the key.
    clock.advance(Duration::from_secs(10));
    assert!(store.check(&slow, b"k", 1).await.unwrap().is_allowed());
    assert!(stored_tat(&mut conn, &key, "fast").is_some());
    assert!(stored_tat(&mut conn, &key, "slow").is_some());
    // A passed TAT is a full burst.
    let again = store.peek(&fast, b"k").await.unwrap();
    assert_eq!(again.as_slice()[0].remaining(), 1);

    // Passed by more than an hour: left out.
    clock.advance(Duration::from_secs(2 * 3600));
    assert!(store.check(&slow, b"k", 1).await.unwrap().is_allowed());
    assert_eq!(stored_tat(&mut conn, &key, "fast"), None);
    assert!(stored_tat(&mut conn, &key, "slow").is_some());
}
