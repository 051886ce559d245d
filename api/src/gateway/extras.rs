//! Resources and prompts through the gateway. Servers do not report these in the log
//! (only tools are recorded), so they are asked for live, every server at once, each
//! within a short time: one that does not answer is left out, the others are listed.
//!
//! A resource's URI becomes `berth://server/<server id>/<its URI>`, so two servers' URIs
//! never collide and a read goes back to the server that offered it; a prompt is named
//! `<server>__<prompt>` like a tool.

use std::sync::Arc;
use std::time::Duration;

use berth_application::gateway::directory::named;
use berth_application::gateway::Listing;
use berth_infrastructure::mcp::Upstream;
use futures_util::future::join_all;
use rmcp::model::{
    ErrorData, GetPromptRequestParams, GetPromptResponse, ListPromptsResult, ListResourcesResult,
    Prompt, ReadResourceRequestParams, ReadResourceResponse, ResourceContents, ResultType,
};

use super::calls::relay;
use super::redacted::redacted;
use super::Shared;

/// Where the gateway's resource URIs start.
pub const RESOURCE_PREFIX: &str = "berth://server/";

/// How long one server may take to list its resources or prompts.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

fn ours(server_id: uuid::Uuid, uri: &str) -> String {
    format!("{RESOURCE_PREFIX}{server_id}/{uri}")
}

fn theirs(uri: &str) -> Option<(uuid::Uuid, &str)> {
    let (id, original) = uri.strip_prefix(RESOURCE_PREFIX)?.split_once('/')?;
    Some((id.parse().ok()?, original))
}

/// The open sessions of `servers` that offer what `offers` asks about.
async fn sessions(
    shared: &Shared,
    servers: &[Arc<Listing>],
    offers: fn(&rmcp::model::ServerCapabilities) -> bool,
) -> Vec<(Arc<Listing>, Arc<Upstream>)> {
    let opened = join_all(servers.iter().map(|listing| async move {
        let upstream = shared
            .sessions
            .session(listing.server_id, listing.transport, LIST_TIMEOUT)
            .await
            .ok()?;
        let info = upstream.peer().peer_info()?;
        offers(&info.capabilities).then(|| (Arc::clone(listing), upstream))
    }))
    .await;
    opened.into_iter().flatten().collect()
}

/// Every resource of `servers`.
pub(crate) async fn list_resources(
    shared: &Shared,
    servers: &[Arc<Listing>],
) -> ListResourcesResult {
    let open = sessions(shared, servers, |c| c.resources.is_some()).await;
    let listed = join_all(open.iter().map(|(listing, upstream)| async move {
        match tokio::time::timeout(LIST_TIMEOUT, upstream.peer().list_all_resources()).await {
            Ok(Ok(resources)) => redacted(&listing.redactor, resources)
                .ok()
                .map(|resources| (listing, resources)),
            other => {
                tracing::debug!(server_id = %listing.server_id, ?other, "resources left out");
                None
            }
        }
    }))
    .await;
    let mut resources = Vec::new();
    for (listing, offered) in listed.into_iter().flatten() {
        for mut resource in offered {
            resource.uri = ours(listing.server_id, &resource.uri);
            resource.title = Some(format!(
                "{}: {}",
                listing.name,
                resource.title.as_deref().unwrap_or(&resource.name)
            ));
            resources.push(resource);
        }
    }
    ListResourcesResult::with_all_items(resources)
}

/// Reads `uri` from the server of `servers` that offered it.
pub(crate) async fn read_resource(
    shared: &Shared,
    servers: &[Arc<Listing>],
    uri: &str,
) -> Result<ReadResourceResponse, ErrorData> {
    let not_found =
        || ErrorData::resource_not_found(format!("no resource `{uri}` is available to you"), None);
    let (server_id, original) = theirs(uri).ok_or_else(not_found)?;
    let listing = servers
        .iter()
        .find(|l| l.server_id == server_id)
        .ok_or_else(not_found)?;
    let timeout = listing.call_timeout;
    let mut result = relay(shared, listing, |upstream| async move {
        let read = upstream
            .peer()
            .read_resource(ReadResourceRequestParams::new(original));
        upstream.within(timeout, read).await
    })
    .await?;
    for contents in &mut result.contents {
        match contents {
            ResourceContents::TextResourceContents { uri, .. }
            | ResourceContents::BlobResourceContents { uri, .. } => {
                *uri = ours(server_id, uri);
            }
            // A kind of contents this SDK does not know yet keeps its own URI.
            _ => {}
        }
    }
    result.result_type.get_or_insert(ResultType::COMPLETE);
    Ok(ReadResourceResponse::Complete(result))
}

/// Every prompt of `servers`, with its gateway name, server and own name.
async fn prompts(shared: &Shared, servers: &[Arc<Listing>]) -> Vec<(String, Arc<Listing>, Prompt)> {
    let open = sessions(shared, servers, |c| c.prompts.is_some()).await;
    let listed = join_all(open.iter().map(|(listing, upstream)| async move {
        match tokio::time::timeout(LIST_TIMEOUT, upstream.peer().list_all_prompts()).await {
            Ok(Ok(prompts)) => redacted(&listing.redactor, prompts)
                .ok()
                .map(|prompts| (Arc::clone(listing), prompts)),
            _ => None,
        }
    }))
    .await;
    let found: Vec<(Arc<Listing>, Prompt)> = listed
        .into_iter()
        .flatten()
        .flat_map(|(listing, prompts)| prompts.into_iter().map(move |p| (Arc::clone(&listing), p)))
        .collect();
    named(found, |prompt| &prompt.name)
}

/// Every prompt of `servers`, named for the gateway.
pub(crate) async fn list_prompts(shared: &Shared, servers: &[Arc<Listing>]) -> ListPromptsResult {
    let listed = prompts(shared, servers)
        .await
        .into_iter()
        .map(|(name, _, mut prompt)| {
            prompt.name = name;
            prompt
        })
        .collect();
    ListPromptsResult::with_all_items(listed)
}

/// Gets the prompt the gateway calls `name` from its server.
pub(crate) async fn get_prompt(
    shared: &Shared,
    servers: &[Arc<Listing>],
    request: GetPromptRequestParams,
) -> Result<GetPromptResponse, ErrorData> {
    let all = prompts(shared, servers).await;
    let Some((_, listing, prompt)) = all.iter().find(|(n, _, _)| *n == request.name) else {
        return Err(ErrorData::invalid_params(
            format!("no prompt named `{}` is available to you", request.name),
            None,
        ));
    };
    let mut params = GetPromptRequestParams::new(prompt.name.clone());
    params.arguments = request.arguments;
    let timeout = listing.call_timeout;
    let mut result = relay(shared, listing, |upstream| async move {
        let got = upstream.peer().get_prompt(params);
        upstream.within(timeout, got).await
    })
    .await?;
    result.result_type.get_or_insert(ResultType::COMPLETE);
    Ok(GetPromptResponse::Complete(result))
}
