//! One module per console page (or group of pages).

pub mod audit;
pub mod catalog;
pub mod events;
pub mod gateway;
pub mod server;
pub mod servers;
pub mod sign_in;
pub mod users;
