//! A fake Slack Socket Mode server on 127.0.0.1: accepts WebSockets, greets each with `hello`,
//! and lets a test push envelopes and read back what Chime answers (its acks).

use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub struct FakeSocket {
    /// The `ws://` URL for [`super::FakeSlack::set_socket_url`].
    pub url: String,
    conns: mpsc::UnboundedReceiver<Conn>,
}

/// One accepted socket (one of Chime's connections).
pub struct Conn {
    sink: SplitSink<WebSocketStream<TcpStream>, Message>,
    /// Text frames from Chime; closed when Chime closes the socket.
    frames: mpsc::UnboundedReceiver<Value>,
}

impl FakeSocket {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/link/?ticket=test", listener.local_addr().unwrap());
        let (tx, conns) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                    continue;
                };
                let (mut sink, mut stream) = ws.split();
                if sink.send(Message::text(hello().to_string())).await.is_err() {
                    continue;
                }
                let (ftx, frames) = mpsc::unbounded_channel();
                // Reading also answers Chime's pings.
                tokio::spawn(async move {
                    while let Some(Ok(msg)) = stream.next().await {
                        match msg {
                            Message::Text(t) => {
                                let v = serde_json::from_str(t.as_str())
                                    .unwrap_or_else(|_| Value::String(t.to_string()));
                                let _ = ftx.send(v);
                            }
                            Message::Close(_) => break,
                            _ => {}
                        }
                    }
                });
                if tx.send(Conn { sink, frames }).is_err() {
                    break;
                }
            }
        });
        FakeSocket { url, conns }
    }

    /// The next socket Chime opens (already greeted with `hello`).
    pub async fn next_connection(&mut self, limit: Duration) -> Conn {
        tokio::time::timeout(limit, self.conns.recv())
            .await
            .expect("Chime did not open a Socket Mode connection in time")
            .expect("fake socket server stopped")
    }
}

impl Conn {
    pub async fn send(&mut self, frame: &Value) {
        self.sink
            .send(Message::text(frame.to_string()))
            .await
            .expect("send a frame to Chime");
    }

    /// The next frame Chime sends, or None if it sends none within `limit` or closes the socket.
    pub async fn next_frame(&mut self, limit: Duration) -> Option<Value> {
        tokio::time::timeout(limit, self.frames.recv())
            .await
            .ok()
            .flatten()
    }

    /// Waits for the ack of `envelope_id`: exactly `{"envelope_id": ...}`.
    pub async fn expect_ack(&mut self, envelope_id: &str, limit: Duration) {
        let frame = self
            .next_frame(limit)
            .await
            .unwrap_or_else(|| panic!("no ack for envelope {envelope_id}"));
        assert_eq!(frame, json!({ "envelope_id": envelope_id }));
    }

    /// True once Chime has closed this socket (its frame stream ended).
    pub async fn closed_by_chime(&mut self, limit: Duration) -> bool {
        let until = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(until, self.frames.recv()).await {
                Ok(None) => return true,
                Ok(Some(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// What Slack says first on every socket.
pub fn hello() -> Value {
    json!({
        "type": "hello", "num_connections": 1,
        "debug_info": { "host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060 },
        "connection_info": { "app_id": "A1" }
    })
}

/// An `events_api` envelope around an Events API body.
pub fn events_api(envelope_id: &str, body: &Value, retry_attempt: u32) -> Value {
    json!({
        "envelope_id": envelope_id, "payload": body, "type": "events_api",
        "accepts_response_payload": false, "retry_attempt": retry_attempt,
        "retry_reason": if retry_attempt > 0 { "timeout" } else { "" }
    })
}

/// An `interactive` envelope around an interaction payload (JSON, not form-encoded).
pub fn interactive(envelope_id: &str, payload: &Value) -> Value {
    json!({
        "envelope_id": envelope_id, "payload": payload, "type": "interactive",
        "accepts_response_payload": false
    })
}

/// Slack's notice that it is about to close the socket.
pub fn disconnect(reason: &str) -> Value {
    json!({ "type": "disconnect", "reason": reason, "debug_info": { "host": "applink-fake" } })
}
