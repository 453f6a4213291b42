//! How the return value maps to what is cached, and when a call succeeded.
//!
//! Whether a return type is a `Result` or an `Option` is decided by the type
//! system (the runtime's `Probe`), never by its written name, so an alias of
//! either behaves like the real one. Only the axum shapes, and the stored
//! type the companion names, come from the written names (`type_names.rs`).

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{ReturnType, Signature, Type};

use super::names;
use super::runtime::{Runtime, TypedOf};
use crate::args::Macro;
use crate::ctxt::Ctxt;
use crate::signature::returns_impl_trait;
use crate::type_names::{self, Written};

/// What the messages about an uncacheable return type list.
const SUPPORTED: &str = "Supported return types: any `T: Serialize + DeserializeOwned`, \
     `Option<T>` (`None` not cached unless `cache_none = true`), `Result<T, E>` (`Ok` cached), \
     and for axum handlers `Json<T>`, `Result<Json<T>, E>` and `(StatusCode, Json<T>)` (200 cached)";

/// The return type of a `#[cache]` function and how it is cached.
pub(crate) struct ReturnValue {
    pub ret: Type,
    /// The stored type as written, for the companion's `Entry<T>`.
    pub stored: Type,
    shape: Shape,
}

enum Shape {
    /// The type system picks: an `Outcome` (`Result`, `Option`, aliases) or cached whole.
    Probe,
    /// `cache_none = true`: an `Option` (or alias) whose `None` is cached too.
    CacheNone,
    /// axum `Json<T>`; holds `T`.
    Json(Box<Type>),
    /// `Result<Json<T>, E>`; holds `T` and `E`.
    JsonResult(Box<Type>, Box<Type>),
    /// `(StatusCode, Json<T>)`; holds `T`. Only `200 OK` is cached.
    StatusJson(Box<Type>),
}

impl ReturnValue {
    /// `None` after reporting why the return value cannot be cached.
    pub(crate) fn classify(sig: &Signature, cache_none: bool, cx: &Ctxt) -> Option<Self> {
        let nothing = format!(
            "{} needs a return value to cache; this function returns ()",
            Macro::Cache
        );
        let ReturnType::Type(_, ret) = &sig.output else {
            cx.error_spanned_by(&sig.ident, nothing);
            return None;
        };
        let ret = (**ret).clone();
        if returns_impl_trait(&sig.output) {
            cx.error_spanned_by(
                &ret,
                format!(
                    "{} cannot store an `impl Trait` return value: name a concrete type. {SUPPORTED}",
                    Macro::Cache
                ),
            );
            return None;
        }
        if let Some(what) = type_names::response_shape(&ret) {
            cx.error_spanned_by(
                &ret,
                format!(
                    "{} caches data, not HTTP responses, and `{what}` is one. {SUPPORTED}. \
                     To cache whole responses (headers, ETag, 304), use `cacheside::http::ResponseCacheLayer`",
                    Macro::Cache
                ),
            );
            return None;
        }
        if matches!(&ret, Type::Tuple(t) if t.elems.is_empty()) {
            cx.error_spanned_by(&ret, nothing);
            return None;
        }
        let (stored, shape) = match type_names::written(&ret) {
            Written::Json(t) => (t.clone(), Shape::Json(Box::new(t.clone()))),
            Written::StatusJson(t) => (t.clone(), Shape::StatusJson(Box::new(t.clone()))),
            Written::JsonResult(t, e) => (
                t.clone(),
                Shape::JsonResult(Box::new(t.clone()), Box::new(e.clone())),
            ),
            Written::Result(ok) => {
                if cache_none {
                    cx.error_spanned_by(
                        &ret,
                        "`cache_none` applies to functions returning Option<T>",
                    );
                }
                (ok?.clone(), Shape::Probe)
            }
            // `Option<T>` stores `Option<T>`; an alias is checked by the type
            // system (`OptionLike`), which also rejects what is no Option.
            _ if cache_none => (ret.clone(), Shape::CacheNone),
            Written::Option(inner) => (inner?.clone(), Shape::Probe),
            Written::Other => (ret.clone(), Shape::Probe),
        };
        Some(ReturnValue { ret, stored, shape })
    }

    /// How the runtime caches the return value.
    fn cached_as(&self, rt: &Runtime) -> CachedAs {
        let (ret, span) = (&self.ret, self.ret.span());
        let wrapper =
            |wrapper: TokenStream, args: TokenStream| CachedAs::Wrapper(quote!(#wrapper<#args>));
        match &self.shape {
            Shape::Probe => CachedAs::Kind(self.probe_kind(rt)),
            Shape::CacheNone => {
                let none_cached_kind = rt.none_cached_kind(span);
                CachedAs::Kind(quote_spanned! {span=>
                    #none_cached_kind::<#ret>()
                })
            }
            Shape::Json(t) => wrapper(rt.json_outcome(), quote!(#t)),
            Shape::JsonResult(t, e) => wrapper(rt.json_result(), quote!(#t, #e)),
            Shape::StatusJson(t) => wrapper(rt.status_json(), quote!(#t)),
        }
    }

    /// The `Kind` the runtime's probe picks for the return type, as an expression.
    fn probe_kind(&self, rt: &Runtime) -> TokenStream {
        let (ret, span) = (&self.ret, self.ret.span());
        let private = rt.private(span);
        let [via_outcome, via_plain] = rt.kind_probes(span);
        let (probe, kind) = (rt.probe(span), rt.probe_kind(span));
        quote_spanned! {span=> {
            #[allow(unused_imports)]
            use #private::{#via_outcome as _, #via_plain as _};
            (&#probe::<#ret>::new()).#kind()
        }}
    }

    /// `let <kind> = …;` when the return value travels through a `Kind`, and
    /// `let <typed> = …;`: bound once, first, for [`LocalHit`] and [`CachedRead`].
    pub(crate) fn value_bindings(&self, rt: &Runtime) -> TokenStream {
        let local_typed = names::typed();
        match self.cached_as(rt) {
            CachedAs::Kind(kind) => {
                let local_kind = names::kind();
                let typed = rt.typed(TypedOf::Kind(&local_kind));
                quote!(let #local_kind = #kind; let #local_typed = #typed;)
            }
            CachedAs::Wrapper(wrapper) => {
                let typed = rt.typed(TypedOf::Wrapper(&wrapper));
                quote!(let #local_typed = #typed;)
            }
        }
    }

    /// The call through the cache, reading the key, instance, kind and body locals.
    /// `ttl_of` is `expire_with`'s function, if any; `background`: the
    /// body may outlive the call.
    pub(crate) fn read<'a>(
        &'a self,
        rt: &'a Runtime,
        ttl_of: Option<&'a syn::Path>,
        background: bool,
        tags: &'a [super::key::KeyFormat],
    ) -> CachedRead<'a> {
        CachedRead {
            outcome: self,
            rt,
            ttl_of,
            background,
            tags,
        }
    }

    /// What tells a successful call (for invalidation on mutations).
    pub(crate) fn succeeded<'a>(&self, rt: &'a Runtime) -> Succeeded<'a> {
        let ret = self.ret.to_token_stream();
        match self.shape {
            Shape::StatusJson(_) => Succeeded {
                test: Test::StatusOk(ret),
                rt,
            },
            _ => Succeeded::by_type(ret, rt),
        }
    }

    /// The axum shapes are recognised by name: check their payload where it is written.
    pub(crate) fn assert_cacheable(&self, rt: &Runtime) -> Option<TokenStream> {
        match self.shape {
            Shape::Json(_) | Shape::JsonResult(..) | Shape::StatusJson(_) => {
                let stored = &self.stored;
                let assert_cacheable = rt.assert_cacheable(stored.span());
                Some(quote_spanned! {stored.span()=>
                    #assert_cacheable::<#stored>();
                })
            }
            Shape::Probe | Shape::CacheNone => None,
        }
    }

    /// The companion names the stored type as written; the wrapper's comes
    /// from the type system. They differ only behind an alias, which this
    /// check turns into a compile error that says what to do.
    /// (`cache_none` stores the return type itself: nothing to check.)
    pub(crate) fn same_stored(&self, rt: &Runtime) -> Option<TokenStream> {
        match self.shape {
            Shape::Probe => {
                let (same_stored, stored, ret) = (rt.same_stored(), &self.stored, &self.ret);
                let kind = self.probe_kind(rt);
                Some(quote!(#same_stored::<#stored, _, #ret>(#kind);))
            }
            _ => None,
        }
    }
}

/// The call through the cache: `cached(…)` with the return value wrapped
/// into what is cached and unwrapped back.
pub(crate) struct CachedRead<'a> {
    outcome: &'a ReturnValue,
    rt: &'a Runtime,
    ttl_of: Option<&'a syn::Path>,
    background: bool,
    tags: &'a [super::key::KeyFormat],
}

/// How the runtime caches a return value: through a `Kind` (an expression)
/// or the `Outcome` wrapper type of an axum shape.
enum CachedAs {
    Kind(TokenStream),
    Wrapper(TokenStream),
}

impl ToTokens for CachedRead<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let rt = self.rt;
        let (spec, key, instance, body) = (
            names::spec(),
            names::key(),
            names::instance(),
            names::body(),
        );
        let cached = if self.background {
            rt.cached_background()
        } else {
            rt.cached()
        };
        // A fn item coerces to the `fn(&Stored) -> Duration` the runtime
        // expects; a wrong signature is reported at the path.
        let ttl_of = super::option(self.ttl_of);
        // Built here, on the way to the store: a local hit never gets this far.
        let tags = match self.tags {
            [] => quote!(::core::option::Option::None),
            tags => quote!(::core::option::Option::Some(::std::vec![#(#tags),*])),
        };
        tokens.extend(match self.outcome.cached_as(rt) {
            CachedAs::Kind(_) => {
                // Bound by `ReturnValue::value_bindings`.
                let local_kind = names::kind();
                let (unwrap, wrap) = (rt.kind_unwrap(), rt.kind_wrap());
                let typed = names::typed();
                quote! {{
                    #unwrap(
                        #local_kind,
                        #cached(
                            &#spec, #key, #instance, #typed, #ttl_of, #tags,
                            async move { #wrap(#local_kind, #body.await) },
                        ).await,
                    )
                }}
            }
            CachedAs::Wrapper(wrapper) => {
                let typed = names::typed();
                quote!(#cached::<#wrapper, _>(
                    &#spec, #key, #instance, #typed, #ttl_of, #tags, async move { <#wrapper>::from(#body.await) }
                ).await.0)
            }
        });
    }
}

/// The wrapper's first step once caching is active: `local_hit` builds the
/// key and returns from the function on a hit in the local tier; otherwise
/// the expression is the key (`Option<String>`) for [`CachedRead`].
pub(crate) struct LocalHit<'a> {
    pub outcome: &'a ReturnValue,
    pub rt: &'a Runtime,
    /// `|out: &mut String| { … }`, appending the key.
    pub key: TokenStream,
}

impl ToTokens for LocalHit<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let rt = self.rt;
        let (spec, instance, lookup) = (names::spec(), names::instance(), names::lookup());
        let (local_hit, found, key) = (rt.local_hit(), rt.lookup(), &self.key);
        // The kind and typed locals are bound by `ReturnValue::value_bindings`.
        let typed = names::typed();
        let hit = match self.outcome.cached_as(rt) {
            CachedAs::Kind(_) => {
                let (local_kind, hit_value) = (names::kind(), rt.hit_value());
                quote!(#hit_value(#local_kind, __cacheside_value))
            }
            CachedAs::Wrapper(wrapper) => {
                let outcome = rt.outcome();
                quote!(<#wrapper as #outcome>::from_cached(__cacheside_value).0)
            }
        };
        tokens.extend(quote! {{
            let #lookup = #local_hit(&#spec, #instance, #typed, #key);
            match #lookup {
                #found::Hit(__cacheside_value) => return #hit,
                #found::Miss(__cacheside_key) => ::core::option::Option::Some(__cacheside_key),
            }
        }});
    }
}

/// `fn(&Ret) -> bool`: did the call succeed (for invalidation on mutations)?
pub(crate) struct Succeeded<'a> {
    test: Test,
    rt: &'a Runtime,
}

enum Test {
    /// `Result::is_ok` when the return type (here) is a `Result`, also behind
    /// an alias, else always true: decided by the type system.
    ByType(TokenStream),
    /// `(StatusCode, Json<T>)` (the return type here): a 2xx status.
    StatusOk(TokenStream),
    /// An `impl Trait` return cannot be named: always true, inference fills it in.
    Always,
}

impl<'a> Succeeded<'a> {
    /// Decided by the type system, for the return type `ret`.
    pub(crate) fn by_type(ret: TokenStream, rt: &'a Runtime) -> Self {
        Succeeded {
            test: Test::ByType(ret),
            rt,
        }
    }

    /// Always true (for an `impl Trait` return).
    pub(crate) fn always(rt: &'a Runtime) -> Self {
        Succeeded {
            test: Test::Always,
            rt,
        }
    }
}

impl ToTokens for Succeeded<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        tokens.extend(match &self.test {
            Test::ByType(ret) => {
                let (rt, span) = (self.rt, Span::call_site());
                let private = rt.private(span);
                let [via_anything, via_result] = rt.succeeded_probes(span);
                let (probe, succeeded) = (rt.probe(span), rt.probe_succeeded(span));
                quote! {{
                    #[allow(unused_imports)]
                    use #private::{#via_anything as _, #via_result as _};
                    (&#probe::<#ret>::new()).#succeeded()
                }}
            }
            Test::StatusOk(ret) => quote!(|__r: &#ret| __r.0.is_success()),
            Test::Always => quote!(|_: &_| true),
        });
    }
}
