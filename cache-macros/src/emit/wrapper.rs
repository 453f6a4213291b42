//! The `#[cache]` wrapper: the same signature, a key computed when caching is
//! active, and the body handed to the runtime's `cached` (or, for a mutation
//! reaching a method-aware handler, to `invalidating`).

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::ItemFn;

use super::body::Body;
use super::credentials::CredentialWarnings;
use super::here::{self, Here};
use super::invalidate::{InvalidateStatic, InvalidatingCall, TargetsLet};
use super::key::KeyFormat;
use super::outcome::LocalHit;
use super::{names, CachedFn};

/// The function the user wrote, turned into a cache-aside wrapper.
pub(crate) struct Wrapper<'a> {
    pub cached: &'a CachedFn<'a>,
    /// `shared = true`: no warning about credentials missing from the key.
    pub shared: bool,
    /// The parameter added in front of an axum handler's own (`__cacheside_method:
    /// RequestMethod`), when it has no `Method` to read.
    pub added_method: Option<TokenStream>,
    /// For a method-aware handler: what its mutations delete.
    pub mutations: Option<Mutations<'a>>,
}

/// A method-aware handler: GET and HEAD read through the cache; other
/// methods run the handler and, when it succeeds, delete its key, `extra`
/// and `patterns`.
pub(crate) struct Mutations<'a> {
    /// The expression giving the request method.
    pub method: TokenStream,
    pub function: &'a str,
    pub extra: Vec<KeyFormat>,
    pub patterns: Vec<KeyFormat>,
    /// The entries' tags: mutations invalidate them too.
    pub tags: &'a [KeyFormat],
}

impl ToTokens for Wrapper<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let cached = self.cached;
        let (item, rt, key, outcome) = (cached.item, cached.rt, &cached.key, &cached.outcome);
        let (spec, instance) = (&cached.spec, &cached.instance);
        let (local_key, local_instance, local_body) =
            (names::key(), names::instance(), names::body());
        let spec_static = names::spec();
        let active = rt.spec_active();
        let uncached_generic_impl = rt.uncached_generic_impl();
        let fn_path = here::fn_path(rt);
        let assert_cacheable = outcome.assert_cacheable(rt);
        let warnings = CredentialWarnings {
            params: cached.params,
            key_params: key.params(),
            shared: self.shared,
        };
        let ret = &outcome.ret;
        let body = Body {
            block: &item.block,
            ret: Some(ret.to_token_stream()),
        };
        let read = outcome.read(rt, cached.expire_with, cached.background, &cached.tags);
        let value_bindings = outcome.value_bindings(rt);
        // A plain read starts with the synchronous lookup in the local tier,
        // which builds the key without allocating; a method-aware handler
        // needs the key as a `String` for its mutations too.
        let key_now = match &self.mutations {
            // A hit that may start a refresh goes through the runtime.
            None if cached.refreshes => quote!(::core::option::Option::Some(#key)),
            None => LocalHit {
                outcome,
                rt,
                key: key.closure(),
            }
            .into_token_stream(),
            Some(_) => quote!(::core::option::Option::Some(#key)),
        };
        let call = match &self.mutations {
            None => quote! {
                let #local_body = #body;
                #read
            },
            Some(Mutations {
                method,
                function,
                extra,
                patterns,
                tags,
            }) => {
                let local_read = names::read();
                let is_read_method = rt.is_read_method();
                // Mutations invalidate whenever invalidation is on, also with
                // `expire = 0` (extra/patterns belong to other functions' entries).
                let targets = TargetsLet {
                    rt,
                    unless_read: true,
                    keys: quote!(#key, #(#extra),*),
                    patterns,
                    tags,
                };
                let cache = rt.spec_cache();
                let invalidate_spec = InvalidateStatic {
                    rt,
                    function,
                    cache: quote!(#spec_static.#cache),
                    before: false,
                };
                let invalidating = InvalidatingCall {
                    rt,
                    ret,
                    succeeded: outcome.succeeded(rt),
                    body: &local_body,
                };
                quote! {
                    let #local_read = #is_read_method(#method);
                    #targets
                    let #local_body = #body;
                    if #local_read {
                        #read
                    } else {
                        #invalidate_spec
                        #invalidating
                    }
                }
            }
        };
        let ItemFn {
            attrs, vis, sig, ..
        } = item;
        let mut sig = sig.clone();
        if let Some(param) = &self.added_method {
            sig.inputs.insert(0, syn::parse_quote!(#param));
        }
        let here = Here::InWrapper;
        tokens.extend(quote! {
            #(#attrs)*
            #vis #sig {
                #assert_cacheable
                #warnings
                #spec
                #here
                #value_bindings
                let (#local_key, #local_instance): (
                    ::core::option::Option<::std::string::String>,
                    ::core::option::Option<&'static str>,
                ) = if #spec_static.#active() {
                    #instance
                    match #local_instance {
                        ::core::result::Result::Ok(#local_instance) => (#key_now, #local_instance),
                        ::core::result::Result::Err(()) => {
                            #uncached_generic_impl(&#spec_static, #fn_path);
                            (::core::option::Option::None, ::core::option::Option::None)
                        }
                    }
                } else {
                    (::core::option::Option::None, ::core::option::Option::None)
                };
                #call
            }
        });
    }
}
