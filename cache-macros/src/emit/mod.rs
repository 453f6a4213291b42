//! Code generation, one piece per module, each a [`quote::ToTokens`]: the
//! wrapper keeps the signature, moves the body into an `async move` block
//! and hands it to one runtime function. Every runtime item the pieces name
//! is spelled in [`runtime`].

pub(crate) mod body;
pub(crate) mod companion;
pub(crate) mod credentials;
pub(crate) mod here;
pub(crate) mod instance;
pub(crate) mod invalidate;
pub(crate) mod key;
pub(crate) mod names;
pub(crate) mod outcome;
pub(crate) mod runtime;
pub(crate) mod wrapper;

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::ItemFn;

use crate::signature::Params;
use instance::Instance;
use key::Key;
use outcome::ReturnValue;
use runtime::Runtime;

/// What the wrapper and the companion of one `#[cache]` function are built from.
pub(crate) struct CachedFn<'a> {
    pub item: &'a ItemFn,
    pub rt: &'a Runtime,
    pub params: &'a Params,
    pub key: Key<'a>,
    pub outcome: ReturnValue,
    /// The `static` `CacheSpec`: the wrapper and the companion each define it.
    pub spec: TokenStream,
    /// Names the instantiation of a generic function, in both alike.
    pub instance: Instance<'a>,
    /// `expire_with = f`: the function giving the TTL from the value.
    pub expire_with: Option<&'a syn::Path>,
    /// Whether the body may outlive the call (refresh, soft timeout): the
    /// runtime's `cached_background`.
    pub background: bool,
    /// Whether a hit may start a refresh: no synchronous local hit then.
    pub refreshes: bool,
    /// `tags = [...]`: what the entries carry (built on a miss only).
    pub tags: Vec<key::KeyFormat>,
}

/// `Some(value)` or `None`, as an expression.
pub(crate) fn option(value: Option<impl ToTokens>) -> TokenStream {
    match value {
        Some(value) => quote!(::core::option::Option::Some(#value)),
        None => quote!(::core::option::Option::None),
    }
}
