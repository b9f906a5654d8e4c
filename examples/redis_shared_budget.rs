//! Several limiter instances, each with its own Redis connection as separate processes would
//! have, spend one budget: their combined admissions match one quota. The instances fail closed
//! (`FailurePolicy::Deny`), so every admission is Redis's; checks Redis did not answer in time
//! are counted apart (with the default `Local` policy each instance would answer those from a
//! budget of its own).
//!
//! ```sh
//! cargo run --features redis --example redis_shared_budget
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --features redis --example redis_shared_budget
//! ```

#[path = "env/mod.rs"]
mod env;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tower_ratelimit::{FailurePolicy, Policy, Quota, RedisStore, Store};

const INSTANCES: usize = 4;
const RUN: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let redis_url = env::var("REDIS_URL")?.unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    // A prefix of this run alone, so that earlier runs leave no state behind.
    let prefix = format!("shared-budget-example-{}", std::process::id());
    let quota = Quota::per_second(50).allow_burst(10);

    let admitted: Vec<Arc<AtomicU32>> = (0..INSTANCES).map(|_| Arc::default()).collect();
    let errors = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for counter in &admitted {
        let store = RedisStore::builder()
            .url(&redis_url)
            .prefix(&prefix)
            .on_failure(FailurePolicy::Deny)
            .build()
            .await?;
        let stack = store.register(&[Policy::new("shared", quota)])?;
        let (counter, errors) = (Arc::clone(counter), Arc::clone(&errors));
        tasks.push(tokio::spawn(async move {
            while started.elapsed() < RUN {
                match store.check(&stack, b"one-key", 1).await {
                    Ok(decisions) if decisions.is_allowed() => {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed();
    let per_instance: Vec<u32> = admitted.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let total: u32 = per_instance.iter().sum();
    let allowed = quota.burst() as f64 + elapsed.as_secs_f64() / quota.interval().as_secs_f64();
    // The server's address only: a password (before `@` or in `?pass=`) stays out of the log.
    let server = redis_url.split('?').next().unwrap_or_default();
    let server = server.rsplit_once('@').map_or(server, |(_, server)| server);
    println!("quota: {quota} on {server}, {INSTANCES} instances for {elapsed:.2?}");
    println!("admitted per instance: {per_instance:?}");
    println!("admitted in total: {total}; one quota allows {allowed:.1} over the run");
    println!(
        "checks Redis did not answer (refused): {}",
        errors.load(Ordering::Relaxed)
    );
    Ok(())
}
