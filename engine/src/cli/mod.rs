//! The binary's command lines besides the native one in main.rs (the
//! seed's and runc's), and what main.rs needs beside clap: where a
//! command begins, parse errors as sentences, and the verbs around the
//! engine (version, completion, man).

pub mod errors;
pub mod extras;
pub mod images;
pub mod login;
pub mod oci;
pub mod seed;
pub mod split;
pub mod template;
