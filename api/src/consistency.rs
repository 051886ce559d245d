//! Read-your-writes: a query carrying `min_position=N` waits (at most 5 s) until the
//! read model it reads has applied the event at global position N.

use std::time::Duration;

use deadpool_postgres::Pool;

use crate::problem::ApiError;

/// The longest a query waits for its read model.
pub const MAX_WAIT: Duration = Duration::from_secs(5);

/// Returns once `projection` has reached `min_position` (at once when absent), or a
/// 503 with `Retry-After` when it has not within [`MAX_WAIT`]. A position beyond the
/// newest event is a 422 at once: no write answered it, so waiting could only time out.
pub async fn await_position(
    pool: &Pool,
    projection: &str,
    min_position: Option<i64>,
) -> Result<(), ApiError> {
    let Some(position) = min_position else {
        return Ok(());
    };
    if position < 0 {
        return Err(ApiError::invalid_field("min_position", "must be 0 or more"));
    }
    if position == 0 {
        return Ok(());
    }
    // Usually there already: one look, no more round trips than before.
    if berth_projections::wait_until_reached(pool, projection, position, Duration::ZERO).await? {
        return Ok(());
    }
    let head = {
        let client = pool.get().await?;
        berth_infrastructure::feed::head_position(&client).await?
    };
    if position > head {
        return Err(ApiError::invalid_field(
            "min_position",
            format!("is beyond the newest event of the log (position {head})"),
        ));
    }
    if berth_projections::wait_until_reached(pool, projection, position, MAX_WAIT).await? {
        Ok(())
    } else {
        Err(ApiError::NotYetConsistent(format!(
            "the {projection} read model has not reached position {position} within {} s; retry later",
            MAX_WAIT.as_secs()
        )))
    }
}
