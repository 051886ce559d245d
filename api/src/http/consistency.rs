//! Read-your-writes: a query carrying `min_position=N` waits (at most 5 s) until the
//! read model it reads has applied the event at global position N, or, for the event
//! log's own lists, until the feed shows it.

use std::time::Duration;

use deadpool_postgres::Pool;

use crate::http::problem::ApiError;

/// The longest a query waits for its read model.
pub const MAX_WAIT: Duration = Duration::from_secs(5);

/// What a query reads, and so what must have caught up.
#[derive(Clone, Copy, Debug)]
enum Source<'a> {
    /// A projection's tables.
    Projection(&'a str),
    /// The event feed (the event lists), which holds events back behind transactions
    /// still open.
    Feed,
}

impl Source<'_> {
    async fn reached(
        self,
        pool: &Pool,
        position: i64,
        timeout: Duration,
    ) -> Result<bool, ApiError> {
        Ok(match self {
            Self::Projection(name) => {
                berth_projections::wait_until_reached(pool, name, position, timeout).await?
            }
            Self::Feed => berth_projections::wait_until_released(pool, position, timeout).await?,
        })
    }

    fn name(self) -> String {
        match self {
            Self::Projection(name) => format!("the {name} read model"),
            Self::Feed => "the event feed".to_owned(),
        }
    }
}

/// Returns once `projection` has reached `min_position` (at once when absent), or a
/// 503 with `Retry-After` when it has not within [`MAX_WAIT`]. A position beyond the
/// newest event is a 422 at once: no write answered it, so waiting could only time out.
pub async fn await_position(
    pool: &Pool,
    projection: &str,
    min_position: Option<i64>,
) -> Result<(), ApiError> {
    await_source(pool, Source::Projection(projection), min_position).await
}

/// Returns once the event feed shows the event at `min_position` (at once when
/// absent), with the same answers as [`await_position`].
pub async fn await_released(pool: &Pool, min_position: Option<i64>) -> Result<(), ApiError> {
    await_source(pool, Source::Feed, min_position).await
}

async fn await_source(
    pool: &Pool,
    source: Source<'_>,
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
    if source.reached(pool, position, Duration::ZERO).await? {
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
    if source.reached(pool, position, MAX_WAIT).await? {
        Ok(())
    } else {
        Err(ApiError::NotYetConsistent(format!(
            "{} has not reached position {position} within {} s; retry later",
            source.name(),
            MAX_WAIT.as_secs()
        )))
    }
}
