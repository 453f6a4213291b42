//! Invalidation: the `#[invalidate]` function, and the pieces it shares with
//! a method-aware `#[cache]` handler (whose mutations invalidate too).

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::ItemFn;

use super::key::KeyFormat;
use super::names;
use super::outcome::Succeeded;
use super::runtime::Runtime;

/// `static __CACHESIDE_INVALIDATE: InvalidateSpec = …;`
pub(crate) struct InvalidateStatic<'a> {
    pub rt: &'a Runtime,
    pub function: &'a str,
    /// The cache's name, as an `Option<&str>` expression.
    pub cache: TokenStream,
    pub before: bool,
}

impl ToTokens for InvalidateStatic<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        tokens.extend(self.rt.invalidate_spec_static(
            &names::invalidate_spec(),
            self.function,
            &self.cache,
            self.before,
        ));
    }
}

/// `let __cacheside_targets = if … { Some(Targets { … }) } else { None };`
pub(crate) struct TargetsLet<'a> {
    pub rt: &'a Runtime,
    /// Only when the request method does not read (method-aware handlers).
    pub unless_read: bool,
    /// The keys to delete, comma-separated.
    pub keys: TokenStream,
    pub patterns: &'a [KeyFormat],
    /// The tags to invalidate.
    pub tags: &'a [KeyFormat],
}

impl ToTokens for TargetsLet<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let (targets, active) = (names::targets(), self.rt.invalidation_active());
        let guard = if self.unless_read {
            let read = names::read();
            quote!(!#read && #active())
        } else {
            quote!(#active())
        };
        let (patterns, tags) = (self.patterns, self.tags);
        let value = self
            .rt
            .targets(&self.keys, &quote!(#(#patterns),*), &quote!(#(#tags),*));
        tokens.extend(quote! {
            let #targets = if #guard {
                ::core::option::Option::Some(#value)
            } else {
                ::core::option::Option::None
            };
        });
    }
}

/// `invalidating::<Ret, _>(&__CACHESIDE_INVALIDATE, targets, succeeded, body).await`
pub(crate) struct InvalidatingCall<'a> {
    pub rt: &'a Runtime,
    /// The return type, or `_` when it cannot be named.
    pub ret: &'a dyn ToTokens,
    pub succeeded: Succeeded<'a>,
    pub body: &'a dyn ToTokens,
}

impl ToTokens for InvalidatingCall<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let (invalidating, spec, targets) = (
            self.rt.invalidating(),
            names::invalidate_spec(),
            names::targets(),
        );
        let (ret, succeeded, body) = (self.ret, &self.succeeded, self.body);
        tokens.extend(quote! {
            #invalidating::<#ret, _>(&#spec, #targets, #succeeded, #body).await
        });
    }
}

/// The `#[invalidate]` function: same signature, the body run by `invalidating`.
pub(crate) struct Invalidator<'a> {
    pub item: &'a ItemFn,
    pub spec: InvalidateStatic<'a>,
    pub targets: TargetsLet<'a>,
    pub call: InvalidatingCall<'a>,
}

impl ToTokens for Invalidator<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let ItemFn {
            attrs, vis, sig, ..
        } = self.item;
        let (spec, targets, call) = (&self.spec, &self.targets, &self.call);
        tokens.extend(quote! {
            #(#attrs)*
            #vis #sig {
                #spec
                #targets
                #call
            }
        });
    }
}
