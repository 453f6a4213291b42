//! The widgets example service as a library: `main.rs` serves it, and the
//! repository's end-to-end tests serve it on a free port.

pub mod app;
pub mod db;
