//! The names the generated code gives its own items and locals.
//!
//! Locals are mixed-site (invisible to the user's code: a parameter named
//! like one cannot collide, see `tests/macros.rs`, "hygiene"). Items are
//! call-site: the wrapper and the companion each define their own.

use proc_macro2::{Ident, Span};
use quote::format_ident;

fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

fn item(name: &str) -> Ident {
    Ident::new(name, Span::call_site())
}

/// The key computed for this call (`None`: not cached).
pub(crate) fn key() -> Ident {
    local("__cacheside_key")
}

/// The `&mut String` a key is appended to.
/// Hygienic (`mixed_site`): the key's values are the user's tokens, and a
/// parameter may have any name.
pub(crate) fn key_out() -> Ident {
    Ident::new("__cacheside_key_out", Span::mixed_site())
}

/// How the call's values go in and out of the local tier (`Option<Typed<V>>`), hygienic.
pub(crate) fn typed() -> Ident {
    Ident::new("__cacheside_typed", Span::mixed_site())
}

/// The `String` a key expression builds (hygienic, as [`key_out`]).
pub(crate) fn key_buffer() -> Ident {
    Ident::new("__cacheside_key_buffer", Span::mixed_site())
}

/// What `local_hit` found.
pub(crate) fn lookup() -> Ident {
    local("__cacheside_lookup")
}

/// The instantiation of a generic function (see `instance.rs`).
pub(crate) fn instance() -> Ident {
    local("__cacheside_instance")
}

/// The body, as a future not yet awaited.
pub(crate) fn body() -> Ident {
    local("__cacheside_body")
}

/// The `Kind` the probe chose for the return type (hygienic: it is bound
/// before the key, whose values are the user's tokens).
pub(crate) fn kind() -> Ident {
    Ident::new("__cacheside_kind", Span::mixed_site())
}

/// Whether the request method reads (method-aware handlers).
pub(crate) fn read() -> Ident {
    local("__cacheside_read")
}

/// The request method parameter `#[cache]` adds to an axum handler without one.
pub(crate) fn method() -> Ident {
    local("__cacheside_method")
}

/// What a mutation deletes (`None`: invalidation is off).
pub(crate) fn targets() -> Ident {
    local("__cacheside_targets")
}

/// The never-run value that pins the body's output type.
pub(crate) fn fake_return() -> Ident {
    local("__cacheside_fake_return")
}

/// The `static` `CacheSpec` of a `#[cache]` function.
pub(crate) fn spec() -> Ident {
    item("__CACHESIDE_SPEC")
}

/// The `static` `InvalidateSpec` of a function that invalidates.
pub(crate) fn invalidate_spec() -> Ident {
    item("__CACHESIDE_INVALIDATE")
}

/// The function item whose `type_name` tells where the wrapper is (see `here.rs`).
pub(crate) const HERE: &str = "__cacheside_here";

pub(crate) fn here() -> Ident {
    item(HERE)
}

/// The `const` holding what to strip from `HERE`'s path.
pub(crate) fn suffix() -> Ident {
    item("__CACHESIDE_SUFFIX")
}

/// What the companion's name adds to the function's.
pub(crate) const COMPANION_SUFFIX: &str = "_cache_entry";

/// The struct that names the const parameter at `index` in a `type_name`.
pub(crate) fn const_holder(index: usize) -> Ident {
    format_ident!("__CachesideConst{}", index)
}

/// The deprecated struct whose use warns about the credentials parameter at `index`.
pub(crate) fn credentials_warning(index: usize, span: Span) -> Ident {
    format_ident!("__cacheside_key_ignores_credentials_{}", index, span = span)
}
