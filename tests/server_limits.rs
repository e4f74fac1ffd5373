//! The HTTP server under hostile connections, on the real binary: hundreds of clients that
//! connect and send nothing (or half a request) neither stop `/healthz` from answering nor stay
//! open past `[server] header_timeout`, and `[server] max_connections` holds.

mod app;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use app::ServeDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Waits until the server closes `stream` (EOF, a reset, or an answer such as 408 followed by
/// the close); fails after 20 s.
async fn closed_by_server(mut stream: TcpStream) {
    let mut buffer = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .expect("the server closed the connection");
}

#[tokio::test]
async fn three_hundred_half_open_connections_neither_block_healthz_nor_stay_open() {
    let mut dir = ServeDir::new(None, "").with_server_keys("header_timeout = \"2s\"");
    let server = dir.start("server").await;
    let mut idle = Vec::new();
    for n in 0..300 {
        let mut stream = TcpStream::connect(server.address).await.expect("a connection");
        if n % 2 == 1 {
            // Half a request: the headers never end.
            stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.unwrap();
        }
        idle.push(stream);
    }
    let health = server.client.get(format!("http://{}/healthz", server.address)).send().await.expect("healthz answers");
    assert_eq!(health.status(), 200);

    // Each of them is closed once its headers are late.
    futures::future::join_all(idle.into_iter().map(closed_by_server)).await;
    let health = server.client.get(format!("http://{}/healthz", server.address)).send().await.expect("healthz answers");
    assert_eq!(health.status(), 200, "{}", server.log());
}

#[tokio::test]
async fn past_max_connections_a_client_waits_until_a_connection_ends() {
    let mut dir = ServeDir::new(None, "").with_server_keys("header_timeout = \"1s\"\nmax_connections = 1");
    let server = dir.start("server").await;
    let quiet = TcpStream::connect(server.address).await.expect("a connection");
    let quiet_closed = Arc::new(AtomicBool::new(false));
    let flag = quiet_closed.clone();
    let watcher = tokio::spawn(async move {
        closed_by_server(quiet).await;
        flag.store(true, Ordering::SeqCst);
    });
    // A new client (no pooled connection) is served only once the quiet one is closed.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let health = client.get(format!("http://{}/healthz", server.address)).send().await.expect("healthz answers");
    assert_eq!(health.status(), 200);
    assert!(quiet_closed.load(Ordering::SeqCst), "served while the one allowed connection was taken");
    watcher.await.unwrap();
}
