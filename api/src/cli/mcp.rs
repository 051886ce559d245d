//! `berth mcp connect`: MCP over standard input and output, for clients that start their
//! servers as commands (Claude Desktop), relayed to the gateway over Streamable HTTP with
//! a Berth key. Both ends are the SDK's own transports; this only passes messages
//! between them, so the protocol is the SDK's, whatever revision the client speaks.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, Transport};
use rmcp::{RoleClient, RoleServer};
use secrecy::ExposeSecret;

use crate::cli::config::Settings;
use crate::cli::events_tail::{resolve_token, resolve_url};
use crate::gateway::MCP_PATH;

/// `berth mcp connect`.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Berth's address (default: where the `berth serve` of this data directory listens).
    #[arg(long, env = "BERTH_URL", value_name = "URL")]
    pub url: Option<String>,
    /// Connect to this gateway profile (`/mcp/p/NAME`) instead of every tool.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// A file holding the API key (default: the `BERTH_TOKEN` environment variable when
    /// set, else `<data_dir>/admin-token`).
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
}

/// The gateway's URL for `profile` at Berth's base URL `base`.
pub fn gateway_url(base: &str, profile: Option<&str>) -> String {
    let base = base.trim_end_matches('/');
    match profile {
        Some(profile) => format!("{base}{MCP_PATH}/p/{profile}"),
        None => format!("{base}{MCP_PATH}"),
    }
}

/// Relays until either side closes.
pub async fn connect(settings: &Settings, args: &ConnectArgs) -> anyhow::Result<()> {
    let url = gateway_url(
        &resolve_url(args.url.as_deref(), settings),
        args.profile.as_deref(),
    );
    let key = resolve_token(args.key_file.as_deref(), &settings.data_dir)?;
    let config =
        StreamableHttpClientTransportConfig::with_uri(url.clone()).auth_header(key.expose_secret());
    let mut gateway: StreamableHttpClientTransport<_> =
        StreamableHttpClientTransport::from_config(config);
    let mut local =
        AsyncRwTransport::<RoleServer, _, _>::new(tokio::io::stdin(), tokio::io::stdout());
    tracing::info!(%url, "relaying MCP between standard input and output and the gateway");
    let outcome = loop {
        tokio::select! {
            from_client = local.receive() => match from_client {
                Some(message) => {
                    if let Err(e) = Transport::<RoleClient>::send(&mut gateway, message).await {
                        break Err(anyhow::Error::new(e).context(format!("sending to {url}")));
                    }
                }
                None => break Ok(()),
            },
            from_gateway = Transport::<RoleClient>::receive(&mut gateway) => match from_gateway {
                Some(message) => {
                    local
                        .send(message)
                        .await
                        .context("writing to standard output")?;
                }
                None => break Err(anyhow::anyhow!("the gateway at {url} closed the session")),
            },
        }
    };
    let _ = Transport::<RoleClient>::close(&mut gateway).await;
    outcome
}
