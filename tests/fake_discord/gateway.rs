//! A fake Discord gateway: a WebSocket server on 127.0.0.1 (port 0) that says HELLO to each
//! connection, acknowledges heartbeats, records every payload the bot sends (with the number of
//! the connection it came on), and sends whatever the test hands it to the newest connection.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Frame;

#[derive(Default)]
struct GatewayState {
    connections: usize,
    received: Vec<(usize, Value)>,
    current: Option<mpsc::UnboundedSender<Frame>>,
}

pub struct FakeGateway {
    pub url: String,
    state: Arc<Mutex<GatewayState>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeGateway {
    pub async fn start() -> FakeGateway {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake gateway");
        let url = format!("ws://{}", listener.local_addr().expect("an address"));
        let state = Arc::new(Mutex::new(GatewayState::default()));
        let shared = state.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Ok(socket) = tokio_tungstenite::accept_async(stream).await else { continue };
                let (sender, receiver) = mpsc::unbounded_channel();
                let number = {
                    let mut state = shared.lock().expect("gateway state");
                    state.connections += 1;
                    state.current = Some(sender);
                    state.connections
                };
                tokio::spawn(serve(socket, number, receiver, shared.clone()));
            }
        });
        FakeGateway { url, state, server }
    }

    /// Sends `payload` on the newest connection.
    pub fn send(&self, payload: Value) {
        let state = self.state.lock().expect("gateway state");
        let sender = state.current.as_ref().expect("a connection to send on");
        sender.send(Frame::Text(payload.to_string().into())).expect("the connection is open");
    }

    /// Closes the newest connection with `code` (4004: authentication failed…).
    pub fn close(&self, code: u16) {
        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
        let state = self.state.lock().expect("gateway state");
        let sender = state.current.as_ref().expect("a connection to close");
        let frame = CloseFrame { code: code.into(), reason: "closed by the fake".into() };
        sender.send(Frame::Close(Some(frame))).expect("the connection is open");
    }

    pub fn connections(&self) -> usize {
        self.state.lock().expect("gateway state").connections
    }

    /// Every payload the bot sent, with its connection's number (from 1).
    pub fn received(&self) -> Vec<(usize, Value)> {
        self.state.lock().expect("gateway state").received.clone()
    }

    /// Waits for a payload with opcode `op` on connection `connection`.
    pub async fn wait_op(&self, connection: usize, op: u64, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((_, payload)) =
                self.received().into_iter().find(|(number, payload)| *number == connection && payload["op"] == op)
            {
                return payload;
            }
            assert!(
                Instant::now() < deadline,
                "no op {op} on connection {connection}; received: {:?}",
                self.received()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn serve(
    socket: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    number: usize,
    mut outgoing: mpsc::UnboundedReceiver<Frame>,
    state: Arc<Mutex<GatewayState>>,
) {
    let (mut sink, mut stream) = socket.split();
    let hello = json!({"op": 10, "d": {"heartbeat_interval": 41_250}});
    if sink.send(Frame::Text(hello.to_string().into())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            frame = outgoing.recv() => match frame {
                Some(frame) => if sink.send(frame).await.is_err() { return },
                None => return,
            },
            frame = stream.next() => match frame {
                Some(Ok(Frame::Text(text))) => {
                    let payload: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                    let heartbeat = payload["op"] == 1;
                    state.lock().expect("gateway state").received.push((number, payload));
                    if heartbeat && sink.send(Frame::Text(json!({"op": 11}).to_string().into())).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Frame::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
