//! The gateway's decisions: which servers and tools each caller reaches through `/mcp`
//! and under which names. The protocol itself (the SDK), the upstream sessions and the
//! recording of calls live at the edges; what is decided here is pure and tested alone.

pub mod breaker;
pub mod directory;
pub mod guards;
pub mod listing;
pub mod names;
pub mod profiles;
pub mod recorded_call;
pub mod sharing;

pub use breaker::{BreakerPolicy, Circuit};
pub use directory::{
    Directory, Everything, Listing, Selection, View, VisibleTool, DEFAULT_CALL_TIMEOUT,
};
pub use guards::{Guards, Held, Pass, DEFAULT_MAX_IN_FLIGHT};
pub use listing::listing_of;
