//! The binary's command lines besides the native one in main.rs.

pub mod oci;
