//! STUB: being written by the vm helper.
