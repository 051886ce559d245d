//! The console reads through the API's own handlers, in process: a page shows exactly
//! what the API would answer its user (the same rules, the same read models, the same
//! errors), and a new API rule reaches the console without being written twice.

use actix_web::HttpResponse;
use berth_infrastructure::feed;
use serde_json::Value;

use crate::console::caller::ConsoleError;
use crate::http::problem::ApiError;
use crate::http::state::AppState;

/// The JSON an API handler answered, or the problem it refused with.
pub async fn json_of(answer: Result<HttpResponse, ApiError>) -> Result<Value, ConsoleError> {
    let body = actix_web::body::to_bytes(answer?.into_body())
        .await
        .map_err(|e| ApiError::internal(format!("reading an API answer: {e}")))?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::internal(format!("an API answer is not JSON: {e}")).into())
}

/// `value[field]` as text (empty when absent or not a string).
pub fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field].as_str().unwrap_or_default()
}

/// The items of a page the API listed.
pub fn items(page: &Value) -> &[Value] {
    page["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The newest position in the log: pages read their read models at least this far,
/// and their live stream starts after it, so no change falls between the two.
pub async fn head(state: &AppState) -> Result<i64, ConsoleError> {
    let client = state.pool.get().await?;
    Ok(feed::head_position(&client).await.map_err(ApiError::from)?)
}
