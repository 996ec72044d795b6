//! Harness: see tests/.
