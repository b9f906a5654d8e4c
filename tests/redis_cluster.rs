//! `RedisStore` on a three-master Redis Cluster on loopback: keys spread across the nodes and
//! every decision is the one `MemoryStore` makes.

mod support;

use std::time::Duration;

use tower_ratelimit::{FailurePolicy, ManualClock, MemoryStore, Quota, RedisStore, Store};

#[tokio::test]
async fn keys_spread_across_nodes_and_decisions_stay_exact() {
    let cluster = support::RedisCluster::start();
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(1_700_000_000));
    let store = RedisStore::builder()
        .cluster(cluster.urls())
        .prefix("cluster")
        .clock(clock.clone())
        .on_failure(FailurePolicy::Deny)
        .timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    let memory = MemoryStore::builder().clock(clock.clone()).build().unwrap();
    let quota = Quota::with_period(Duration::from_millis(300)).allow_burst(3);
    for round in 0..6u32 {
        for user in 0..60u32 {
            let cost = 1 + (user + round) % 2;
            let expected = memory.check_now(&user, &quota, cost).unwrap();
            let got = store.check(&user, &quota, cost).await.unwrap();
            assert_eq!(got, expected, "user {user}, round {round}");
            let peeked = store.peek(&user, &quota).await.unwrap();
            assert_eq!(peeked, memory.peek_now(&user, &quota));
        }
        clock.advance(Duration::from_millis(250));
    }
    let mut per_node = Vec::new();
    for node in &cluster.nodes {
        let keys: u64 = redis::cmd("DBSIZE").query(&mut node.connection()).unwrap();
        per_node.push(keys);
    }
    assert_eq!(per_node.iter().sum::<u64>(), 60, "{per_node:?}");
    assert!(
        per_node.iter().all(|&n| n >= 5),
        "keys not spread: {per_node:?}"
    );
}
