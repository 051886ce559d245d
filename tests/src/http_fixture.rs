//! The fixture MCP server over Streamable HTTP, started by a test on a free port: an MCP
//! server someone else runs, as Berth sees it. It is killed when dropped.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::docker::fixture_binary;

/// The running fixture.
pub struct HttpFixture {
    /// Its port (it listens on every address).
    pub port: u16,
    child: Child,
}

impl HttpFixture {
    /// Starts it; with `bearer`, every request must carry that token.
    pub async fn start(bearer: Option<&str>) -> Self {
        let mut command = Command::new(fixture_binary());
        command
            .args(["--http", "0"])
            .env_remove("PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(token) = bearer {
            command.args(["--bearer", token]);
        }
        let mut child = command.spawn().expect("starting the fixture");
        let stderr = child.stderr.take().expect("its standard error");
        let mut lines = BufReader::new(stderr).lines();
        let port = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(port) = line
                    .split("listening on ")
                    .nth(1)
                    .and_then(|address| address.rsplit(':').next())
                    .and_then(|port| port.trim().parse().ok())
                {
                    return port;
                }
            }
            panic!("the fixture ended without listening")
        })
        .await
        .expect("the fixture listens within 10 s");
        // The rest of what it says is not needed, but must be read or it could block.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { port, child }
    }

    /// Its MCP endpoint on loopback.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}

impl Drop for HttpFixture {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
