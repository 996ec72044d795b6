//! Pure types and parsing: the validated container description and its parts.
pub mod config;
pub mod spec;
