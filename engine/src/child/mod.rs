//! Inside the new namespaces, before exec: mounts, devices, exec, joining.
pub mod init;
