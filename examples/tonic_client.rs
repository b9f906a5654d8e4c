//! Calls the greeter of the `tonic_server` example in a loop, with a health check now and then,
//! and prints each status and the retry delay the server gave, which it then waits out.
//!
//! ```sh
//! cargo run --features tonic --example tonic_server   # first, in another terminal
//! cargo run --features tonic --example tonic_client
//! ```
//!
//! `PORT` picks the server's port, as it does for the server (default 50051).

#[path = "env/mod.rs"]
mod env;
#[path = "greeter/mod.rs"]
mod greeter;

use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use greeter::{rpc, GreeterClient, HelloRequest};

const CALLS: u32 = 20;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = match env::var("PORT")? {
        Some(port) => port
            .parse()
            .map_err(|_| format!("PORT must be a port number, got {port:?}"))?,
        None => 50051,
    };
    let server = format!("http://127.0.0.1:{port}");
    // The server must listen on the same port: the hint passes it on.
    let env = match port {
        50051 => String::new(),
        port => format!("PORT={port} "),
    };
    let channel = Channel::from_shared(server.clone())?.connect().await.map_err(|e| {
        format!("cannot reach {server} ({e}); start the server first with `{env}cargo run --features tonic --example tonic_server`")
    })?;
    let mut greeter = GreeterClient::new(channel.clone());
    let mut health = HealthClient::new(channel);
    let start = Instant::now();

    for n in 1..=CALLS {
        // Every fifth call is a health check: it draws on the same budget.
        let (method, outcome) = if n % 5 == 0 {
            let request = HealthCheckRequest {
                service: String::new(),
            };
            ("Health/Check", health.check(request).await.map(|_| ()))
        } else {
            let request = HelloRequest {
                name: format!("call {n}"),
                count: 1,
            };
            (
                "Greeter/SayHello",
                greeter.say_hello(request).await.map(|_| ()),
            )
        };
        let at = start.elapsed().as_millis();
        match outcome {
            Ok(()) => println!("{at:>5} ms  #{n:<2} {method:<17} OK"),
            Err(status) => {
                let details = rpc::status_details(&status);
                let retry_info = details.as_ref().and_then(rpc::retry_delay);
                let pushback = rpc::pushback(&status);
                println!(
                    "{at:>5} ms  #{n:<2} {method:<17} {:?}: {:?}  RetryInfo.retry_delay={}  grpc-retry-pushback-ms={}",
                    status.code(),
                    status.message(),
                    retry_info.map_or("-".into(), |d| format!("{d:?}")),
                    pushback.map_or("-".into(), |d| d.as_millis().to_string()),
                );
                if let Some(wait) = retry_info.or(pushback) {
                    tokio::time::sleep(wait).await;
                } else {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
    Ok(())
}
