//! Pure types and parsing (no file system, no network, no process): the
//! container description and its parts, and the engine's settings.
pub mod config;
pub mod env;
pub mod exit;
pub mod limits;
pub mod names;
pub mod network;
pub mod oci;
pub mod ports;
pub mod security;
pub mod spec;
pub mod subnet;
pub mod userns;
pub mod volumes;
