//! A small HTTP API on loopback for the registered-API tests, with its OpenAPI document:
//! `GET /health`; `GET /openapi.json` (its document); `GET /pets/{id}` and `POST /pets`
//! (JSON body echoed with an id), which need the header `X-Key: <key>`; `GET /slow`
//! (answers after 30 s); 404 for the rest.
//! Every request line it receives is kept, for tests to check what reached it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The running API.
pub struct PetsApi {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The request lines it received (`GET /pets/7?x=1 HTTP/1.1`).
    pub requests: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for PetsApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PetsApi {
    /// Starts the API; it wants `key` in `X-Key`.
    pub async fn start(key: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let port = listener.local_addr().expect("an address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let key = format!("x-key: {}", key.to_ascii_lowercase());
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let seen = seen.clone();
                let key = key.clone();
                tokio::spawn(async move {
                    let Some((head, body)) = read_request(&mut socket).await else {
                        return;
                    };
                    let line = head.lines().next().unwrap_or_default().to_owned();
                    seen.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(line.clone());
                    let mut parts = line.split_whitespace();
                    let (method, target) =
                        (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
                    let path = target.split('?').next().unwrap_or("/");
                    let keyed = head.to_ascii_lowercase().contains(&key);
                    let (status, answer) = match (method, path) {
                        ("GET", "/health") => ("200 OK", json!({"ok": true})),
                        ("GET", "/openapi.json") => ("200 OK", Self::document()),
                        ("GET", "/slow") => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            ("200 OK", json!({"late": true}))
                        }
                        (_, p) if p.starts_with("/pets") && !keyed => {
                            ("401 Unauthorized", json!({"error": "send X-Key"}))
                        }
                        ("GET", p) if p.starts_with("/pets/") => {
                            let id = p.trim_start_matches("/pets/");
                            let query = target.split_once('?').map(|q| q.1).unwrap_or("");
                            ("200 OK", json!({"id": id, "name": "rex", "query": query}))
                        }
                        ("POST", "/pets") => {
                            let mut pet: Value =
                                serde_json::from_slice(&body).unwrap_or(Value::Null);
                            pet["id"] = json!(42);
                            ("201 Created", pet)
                        }
                        _ => ("404 Not Found", json!({"error": "no such thing"})),
                    };
                    let text = answer.to_string();
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        Self {
            port,
            requests,
            task,
        }
    }

    /// Where it answers.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its OpenAPI document.
    pub fn document() -> Value {
        json!({
            "openapi": "3.1.0",
            "info": {"title": "pets", "version": "1"},
            "paths": {
                "/pets/{id}": {"get": {
                    "operationId": "getPet", "summary": "One pet",
                    "parameters": [
                        {"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}},
                        {"name": "fields", "in": "query", "schema": {"type": "string"}}
                    ],
                    "responses": {"200": {"description": "the pet"}}}},
                "/pets": {"post": {
                    "operationId": "addPet", "summary": "Add a pet",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}},
                    "responses": {"201": {"description": "added"}}}},
                "/gone": {"get": {"operationId": "getGone", "responses": {"200": {"description": "never"}}}},
                "/slow": {"get": {"operationId": "getSlow", "responses": {"200": {"description": "late"}}}}
            },
            "components": {"schemas": {"Pet": {"type": "object", "required": ["name"],
                "properties": {"name": {"type": "string"}, "tag": {"type": "string"}}}}}
        })
    }
}

/// The head (request line and headers) and the body of one request.
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut data = Vec::new();
    let mut buffer = [0u8; 4096];
    let end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = socket.read(&mut buffer).await.ok().filter(|n| *n > 0)?;
        data.extend_from_slice(&buffer[..n]);
    };
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = data[end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut buffer).await.ok().filter(|n| *n > 0)?;
        body.extend_from_slice(&buffer[..n]);
    }
    Some((head, body))
}
