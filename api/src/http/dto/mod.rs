//! Request and response bodies, with their OpenAPI schemas.

pub mod catalog;
pub mod command;
pub mod events;
pub mod servers;
pub mod values;
