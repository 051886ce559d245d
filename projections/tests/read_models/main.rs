//! Integration tests of the read models against a real PostgreSQL, with events written
//! through the real event store and command bus.

mod audit;
mod catalog;
mod kit;
mod rebuild;
mod servers;
mod sim;
mod wait;
