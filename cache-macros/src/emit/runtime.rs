//! Every item of the runtime (`cacheside::__private`, or `<crate = "path">::__private`)
//! that the generated code names, each spelled here once: to rename or drop
//! one (a type, a function, a trait method, a field of `CacheSpec`), edit this file.
//!
//! A method returns the item's path (or, for a trait method or a field, its
//! name). Those that take a `span` give the path that span, so that a type
//! error in the generated code points at the user's token it is about.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};

use crate::args::CacheArgs;

/// The path of the runtime crate: `::cacheside`, or `crate = "path"`.
#[derive(Clone)]
pub(crate) struct Runtime {
    krate: TokenStream,
}

impl Runtime {
    pub(crate) fn new(krate: Option<&syn::Path>) -> Self {
        Runtime {
            krate: match krate {
                Some(path) => path.to_token_stream(),
                None => quote!(::cacheside),
            },
        }
    }

    /// `<crate>::__private`: the module of every item below.
    pub(crate) fn private(&self, span: Span) -> TokenStream {
        let krate = &self.krate;
        quote_spanned!(span=> #krate::__private)
    }

    /// `<crate>::__private::a::b`, spanned at `span`.
    fn item(&self, span: Span, path: &[&str]) -> TokenStream {
        let private = self.private(span);
        let segments = path.iter().map(|s| Ident::new(s, span));
        quote_spanned!(span=> #private #(::#segments)*)
    }

    fn call_site(&self, path: &[&str]) -> TokenStream {
        self.item(Span::call_site(), path)
    }

    /// `static NAME: CacheSpec = CacheSpec { … };`, the description of one
    /// `#[cache]` function, from its arguments.
    pub(crate) fn spec_static(
        &self,
        name: &Ident,
        function: &str,
        args: &CacheArgs,
    ) -> TokenStream {
        let spec = self.call_site(&["CacheSpec"]);
        let observed = self.call_site(&["Observed"]);
        // For spans: the prefix as written, never an argument's value.
        let key_prefix = match (&args.common.key_prefix, &args.common.key) {
            (Some(prefix), _) => prefix.value(),
            (None, Some(key)) => {
                let key = key.value();
                let head = key.split('{').next().unwrap_or_default();
                head.trim_end_matches(':').to_owned()
            }
            (None, None) => function.to_owned(),
        };
        let once_lock = self.call_site(&["OnceLock"]);
        let (cache, expire, local_ttl) = (
            super::option(args.common.cache.as_ref()),
            super::option(args.expire),
            super::option(args.local_ttl),
        );
        let (version, local) = (args.version, args.local);
        let (fail_safe_max, fail_safe_throttle, jitter) = (
            super::option(args.fail_safe_max),
            super::option(args.fail_safe_throttle),
            super::option(args.jitter),
        );
        let lease_ms = super::option(args.lease_ms);
        let (refresh_after, early_expiry_beta, soft_timeout_ms, hard_timeout_ms) = (
            super::option(args.refresh_after),
            super::option(args.early_expiry_beta),
            super::option(args.soft_timeout_ms),
            super::option(args.hard_timeout_ms),
        );
        quote! {
            static #name: #spec = #spec {
                function: #function,
                key_prefix: #key_prefix,
                cache: #cache,
                observed: #observed::new(),
                expire: #expire,
                version: #version,
                local: #local,
                local_ttl: #local_ttl,
                fail_safe_max: #fail_safe_max,
                fail_safe_throttle: #fail_safe_throttle,
                jitter: #jitter,
                refresh_after: #refresh_after,
                early_expiry_beta: #early_expiry_beta,
                soft_timeout_ms: #soft_timeout_ms,
                hard_timeout_ms: #hard_timeout_ms,
                lease_ms: #lease_ms,
                crate_version: ::core::env!("CARGO_PKG_VERSION"),
                salt: #once_lock::new(),
                generic_impl: #once_lock::new(),
            };
        }
    }

    /// `CacheSpec::active`: whether the wrapper computes a key at all.
    pub(crate) fn spec_active(&self) -> Ident {
        Ident::new("active", Span::call_site())
    }

    /// `CacheSpec::cache`: the cache a `#[cache]` function uses.
    pub(crate) fn spec_cache(&self) -> Ident {
        Ident::new("cache", Span::call_site())
    }

    /// `static NAME: InvalidateSpec = InvalidateSpec { … };`, the description
    /// of one function that invalidates.
    pub(crate) fn invalidate_spec_static(
        &self,
        name: &Ident,
        function: &str,
        cache: &TokenStream,
        before: bool,
    ) -> TokenStream {
        let spec = self.call_site(&["InvalidateSpec"]);
        let observed = self.call_site(&["Observed"]);
        quote! {
            static #name: #spec = #spec {
                function: #function,
                cache: #cache,
                before: #before,
                observed: #observed::new(),
            };
        }
    }

    /// `Targets { keys, patterns }`: what a mutation deletes.
    pub(crate) fn targets(
        &self,
        keys: &TokenStream,
        patterns: &TokenStream,
        tags: &TokenStream,
    ) -> TokenStream {
        let targets = self.call_site(&["Targets"]);
        quote! {
            #targets {
                keys: ::std::vec![#keys],
                patterns: ::std::vec![#patterns],
                tags: ::std::vec![#tags],
            }
        }
    }

    /// `KeyValue`: a key value on its way into a key (`__cacheside_push` appends it encoded).
    pub(crate) fn key_value(&self) -> TokenStream {
        self.call_site(&["KeyValue"])
    }

    /// `key_display`: the `Display` check of a key value, spanned where the value is named.
    pub(crate) fn key_display(&self, span: Span) -> TokenStream {
        self.item(span, &["key_display"])
    }

    /// The two traits whose `__cacheside_push` a [`key_value`](Self::key_value) picks from.
    pub(crate) fn key_push_traits(&self) -> TokenStream {
        let private = self.private(Span::call_site());
        quote! {
            #[allow(unused_imports)]
            use #private::{ViaDisplayKey as _, ViaFastKey as _};
        }
    }

    /// `push_hash`: appends `:` and a stable hash of the arguments.
    pub(crate) fn push_hash(&self) -> TokenStream {
        self.call_site(&["push_hash"])
    }

    /// `hashed_arg`: one argument of a hashed key, checked `Hash` at `span`.
    pub(crate) fn hashed_arg(&self, span: Span) -> TokenStream {
        self.item(span, &["hashed_arg"])
    }

    /// `local_hit`: the wrapper's synchronous lookup in the local tier.
    pub(crate) fn local_hit(&self) -> TokenStream {
        self.call_site(&["local_hit"])
    }

    /// `hit_value`: the return value of a local hit.
    pub(crate) fn hit_value(&self) -> TokenStream {
        self.call_site(&["hit_value"])
    }

    /// `Outcome`: how a return value is cached.
    pub(crate) fn outcome(&self) -> TokenStream {
        self.call_site(&["Outcome"])
    }

    /// `Lookup`: what `local_hit` found.
    pub(crate) fn lookup(&self) -> TokenStream {
        self.call_site(&["Lookup"])
    }

    /// `fn_path`: the path of the annotated function, at run time.
    pub(crate) fn fn_path(&self) -> TokenStream {
        self.call_site(&["fn_path"])
    }

    /// `instance`: what names an instantiation of a generic function.
    pub(crate) fn instance(&self) -> TokenStream {
        self.call_site(&["instance"])
    }

    /// `uncached_generic_impl`: says once that a generic impl is not cached.
    pub(crate) fn uncached_generic_impl(&self) -> TokenStream {
        self.call_site(&["uncached_generic_impl"])
    }

    /// `cached`: cache-aside around the body.
    pub(crate) fn cached(&self) -> TokenStream {
        self.call_site(&["cached"])
    }

    /// `cached_background`: `cached` for a body that may outlive the call.
    pub(crate) fn cached_background(&self) -> TokenStream {
        self.call_site(&["cached_background"])
    }

    /// `invalidating`: runs the body and deletes the targets when it succeeds.
    pub(crate) fn invalidating(&self) -> TokenStream {
        self.call_site(&["invalidating"])
    }

    /// `invalidation_active`: whether deletes are sent at all.
    pub(crate) fn invalidation_active(&self) -> TokenStream {
        self.call_site(&["invalidation_active"])
    }

    /// The local tier's handle of the stored type, `Option<Typed<V>>`, by
    /// autoref (`None` when it is not `Clone + Send + Sync + 'static`):
    /// `of` is the `&Kind` of the call, or the `Outcome` wrapper type.
    pub(crate) fn typed(&self, of: TypedOf<'_>) -> TokenStream {
        let (via_clone, via_bytes) = (self.call_site(&["ViaClone"]), self.call_site(&["ViaBytes"]));
        let probe = match of {
            TypedOf::Kind(kind) => {
                let typed_probe = self.call_site(&["typed_probe"]);
                quote!(#typed_probe(&#kind))
            }
            TypedOf::Wrapper(wrapper) => {
                let (probe, outcome) = (
                    self.call_site(&["TypedProbe"]),
                    self.call_site(&["Outcome"]),
                );
                quote!(#probe::<<#wrapper as #outcome>::Value>::new())
            }
        };
        quote! {{
            #[allow(unused_imports)]
            use #via_clone as _;
            #[allow(unused_imports)]
            use #via_bytes as _;
            (&#probe).__cacheside_typed()
        }}
    }

    /// `Kind::wrap`: the return value into what is cached.
    pub(crate) fn kind_wrap(&self) -> TokenStream {
        self.call_site(&["Kind", "wrap"])
    }

    /// `Kind::unwrap`: what is cached back into the return value.
    pub(crate) fn kind_unwrap(&self) -> TokenStream {
        self.call_site(&["Kind", "unwrap"])
    }

    /// `Probe`: the autoref probe that classifies a return type.
    pub(crate) fn probe(&self, span: Span) -> TokenStream {
        self.item(span, &["Probe"])
    }

    /// `ViaOutcome`, `ViaPlain`: the traits behind [`Self::probe_kind`].
    pub(crate) fn kind_probes(&self, span: Span) -> [Ident; 2] {
        [Ident::new("ViaOutcome", span), Ident::new("ViaPlain", span)]
    }

    /// `__cacheside_kind`: the probe's method giving the `Kind`.
    pub(crate) fn probe_kind(&self, span: Span) -> Ident {
        Ident::new("__cacheside_kind", span)
    }

    /// `ViaAnything`, `ViaResult`: the traits behind [`Self::probe_succeeded`].
    pub(crate) fn succeeded_probes(&self, span: Span) -> [Ident; 2] {
        [
            Ident::new("ViaAnything", span),
            Ident::new("ViaResult", span),
        ]
    }

    /// `__cacheside_succeeded`: the probe's method giving "did it succeed".
    pub(crate) fn probe_succeeded(&self, span: Span) -> Ident {
        Ident::new("__cacheside_succeeded", span)
    }

    /// `none_cached_kind`: the `Kind` of `cache_none = true`.
    pub(crate) fn none_cached_kind(&self, span: Span) -> TokenStream {
        self.item(span, &["none_cached_kind"])
    }

    /// `same_stored`: the companion's stored type is the wrapper's.
    pub(crate) fn same_stored(&self) -> TokenStream {
        self.call_site(&["same_stored"])
    }

    /// `assert_cacheable`: the stored type can be (de)serialized.
    pub(crate) fn assert_cacheable(&self, span: Span) -> TokenStream {
        self.item(span, &["assert_cacheable"])
    }

    /// `Entry`: the companion's typed handle on an entry.
    pub(crate) fn entry(&self) -> TokenStream {
        self.call_site(&["Entry"])
    }

    /// `Entry::new`.
    pub(crate) fn entry_new(&self) -> TokenStream {
        self.call_site(&["Entry", "new"])
    }

    /// `http::is_read_method`: GET and HEAD read through the cache.
    pub(crate) fn is_read_method(&self) -> TokenStream {
        self.call_site(&["http", "is_read_method"])
    }

    /// `http::RequestMethod`: the extractor of the parameter added to axum handlers.
    pub(crate) fn request_method(&self) -> TokenStream {
        self.call_site(&["http", "RequestMethod"])
    }

    /// `http::JsonOutcome`: the `Outcome` of `Json<T>`.
    pub(crate) fn json_outcome(&self) -> TokenStream {
        self.call_site(&["http", "JsonOutcome"])
    }

    /// `http::JsonResult`: the `Outcome` of `Result<Json<T>, E>`.
    pub(crate) fn json_result(&self) -> TokenStream {
        self.call_site(&["http", "JsonResult"])
    }

    /// `http::StatusJson`: the `Outcome` of `(StatusCode, Json<T>)`.
    pub(crate) fn status_json(&self) -> TokenStream {
        self.call_site(&["http", "StatusJson"])
    }
}

/// What [`Runtime::typed`] probes: the call's `Kind` value, or a wrapper type.
pub(crate) enum TypedOf<'a> {
    Kind(&'a Ident),
    Wrapper(&'a TokenStream),
}
