//! The `#[cache]` and `#[invalidate]` attribute macros of cacheside.
//!
//! Use them through the `cacheside` crate (`#[cacheside::cache(…)]`); their
//! documentation lives there. This crate only parses, checks and emits a thin
//! wrapper that calls `cacheside::__private`:
//! - `args` parses the arguments into `CacheArgs` / `InvalidateArgs`,
//!   `signature` reads the function, `template` parses key templates,
//!   `type_names` holds what is recognised by written names;
//! - every error goes into one `ctxt::Ctxt`, checked before anything is emitted;
//! - `emit` builds the output, one `ToTokens` piece per module, and
//!   `expand` puts the two macros together.

// docs.rs (nightly, `--cfg docsrs`): each feature-gated item shows the feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]
mod args;
mod ctxt;
mod emit;
mod expand;
mod signature;
mod template;
mod type_names;

use proc_macro::TokenStream;

/// Cache-aside around an `async fn`. See the `cacheside` crate for the arguments.
#[proc_macro_attribute]
pub fn cache(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = syn::parse_macro_input!(item as syn::ItemFn);
    with_original_on_error(expand::cache(args.into(), item.clone()), &item)
}

/// Deletes cache entries when an `async fn` (a mutation) succeeds. See the `cacheside` crate.
#[proc_macro_attribute]
pub fn invalidate(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = syn::parse_macro_input!(item as syn::ItemFn);
    with_original_on_error(expand::invalidate(args.into(), item.clone()), &item)
}

/// On error, emit the diagnostics and the untouched function, so that the
/// only errors the user sees are ours (not "function not found" cascades).
fn with_original_on_error(
    result: syn::Result<proc_macro2::TokenStream>,
    item: &syn::ItemFn,
) -> TokenStream {
    match result {
        Ok(tokens) => tokens.into(),
        Err(err) => {
            let err = err.into_compile_error();
            quote::quote!(#err #item).into()
        }
    }
}
