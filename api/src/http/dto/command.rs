//! What every command answers.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// The header carrying the global position a command's events reached.
pub const POSITION_HEADER: &str = "Berth-Position";

/// A committed command: the resource it concerns and the position of its last event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct CommandAccepted {
    /// The resource's id.
    pub id: Uuid,
    /// Global position of the last event written (the head when nothing changed); pass
    /// it as `min_position` to read your own write.
    pub position: i64,
}

impl CommandAccepted {
    /// The response: `status` (201 or 202), the body, and the `Berth-Position` header.
    pub fn respond(self, status: StatusCode) -> HttpResponse {
        HttpResponse::build(status)
            .insert_header((POSITION_HEADER, self.position.to_string()))
            .json(self)
    }
}
