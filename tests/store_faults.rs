//! The store stops answering, on the real binary over PostgreSQL: a TCP proxy between firebell
//! and the database holds every byte while paused (its sockets stay open, as a frozen NAT or a
//! partition would). Alert webhooks answer 503 within the store's deadline instead of hanging,
//! `/readyz` turns not ready, and both recover once the proxy forwards again; every alert that
//! got a 2xx is in the store.

mod app;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use app::{PgDatabase, ServeDir, TOKEN};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards connections to `upstream`; while paused, nothing is read or written either way.
struct Proxy {
    address: SocketAddr,
    paused: watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (paused, _) = watch::channel(false);
        let gate = paused.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else { continue };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, gate.subscribe()));
                tokio::spawn(pipe(server_read, client_write, gate.subscribe()));
            }
        });
        Proxy { address, paused }
    }

    fn pause(&self, paused: bool) {
        self.paused.send_replace(paused);
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if paused.wait_for(|paused| !paused).await.is_err() {
            return;
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        // Bytes read just before the pause are held until it ends, like the rest.
        if paused.wait_for(|paused| !paused).await.is_err() || to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

async fn post_alert(client: &reqwest::Client, server: &app::Server, key: &str) -> u16 {
    let alert = json!({"title": format!("Disk almost full on {key}"), "status": "firing", "dedup_key": key});
    client
        .post(format!("http://{}/alerts/generic", server.address))
        .bearer_auth(TOKEN)
        .json(&alert)
        .send()
        .await
        .expect("the webhook is answered, not left hanging")
        .status()
        .as_u16()
}

async fn readyz(client: &reqwest::Client, server: &app::Server) -> u16 {
    client.get(format!("http://{}/readyz", server.address)).send().await.expect("readyz answers").status().as_u16()
}

#[tokio::test]
async fn a_store_that_stops_answering_gets_503s_then_recovers_and_loses_no_accepted_alert() {
    let Some(database) = PgDatabase::create().await else { return };
    let mut url = url::Url::parse(&database.url).unwrap();
    let upstream = SocketAddr::from(([127, 0, 0, 1], url.port().unwrap_or(5432)));
    let proxy = Proxy::start(upstream).await;
    url.set_port(Some(proxy.address.port())).unwrap();
    let mut dir = ServeDir::new(Some(url.as_str()), "");
    let server = dir.start("server").await;
    // Longer than the store's 10 s deadline: the answer must come from firebell, not our timeout.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(40)).build().unwrap();

    assert_eq!(post_alert(&client, &server, "before").await, 200, "{}", server.log());

    proxy.pause(true);
    assert_eq!(post_alert(&client, &server, "during").await, 503, "{}", server.log());
    assert_eq!(readyz(&client, &server).await, 503);

    proxy.pause(false);
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let mut accepted = vec!["before"];
    loop {
        let status = post_alert(&client, &server, "after").await;
        if status == 200 {
            accepted.push("after");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never recovered ({status}):\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(readyz(&client, &server).await, 200, "{}", server.log());

    // Every alert answered 2xx is in the store (the 503 one may or may not be).
    let store = dir.open_store().await;
    let stored: Vec<String> = store
        .incidents(true, 1000)
        .await
        .expect("the incidents read")
        .into_iter()
        .filter_map(|incident| incident.fingerprint)
        .collect();
    for key in accepted {
        assert!(stored.contains(&format!("generic:{key}")), "{key} was accepted but is not stored: {stored:?}");
    }
}
