//! HTTP integration (feature `axum`): tower layers that cache whole responses,
//! set client cache headers and rate-limit callers, with state in the same
//! stores as the rest of cacheside.
