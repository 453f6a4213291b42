//! The two macros, start to end: parse the arguments, read the signature and
//! check everything into one [`Ctxt`]; when it holds no error, assemble the
//! pieces of [`crate::emit`].

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::{ItemFn, ReturnType};

use crate::args::{CacheArgs, InvalidateArgs, Macro, MacroArgs};
use crate::ctxt::Ctxt;
use crate::emit::body::Body;
use crate::emit::companion::Companion;
use crate::emit::instance::Instance;
use crate::emit::invalidate::{InvalidateStatic, InvalidatingCall, Invalidator, TargetsLet};
use crate::emit::key::{Key, KeyFormat};
use crate::emit::outcome::{ReturnValue, Succeeded};
use crate::emit::runtime::Runtime;
use crate::emit::wrapper::{Mutations, Wrapper};
use crate::emit::{self, names, CachedFn};
use crate::signature::{self, Params};
use crate::type_names;

/// What both macros start from: the error context, the checked arguments,
/// the path of the runtime and the parameters.
struct Start<A> {
    cx: Ctxt,
    args: A,
    rt: Runtime,
    params: Params,
}

impl<A: MacroArgs> Start<A> {
    fn new(attr: TokenStream, item: &ItemFn) -> Self {
        let cx = Ctxt::new();
        let args = A::parse(attr, &cx);
        signature::check_async(&item.sig, A::MACRO, &cx);
        let rt = Runtime::new(args.common().krate.as_ref());
        Start {
            cx,
            args,
            rt,
            params: Params::of(&item.sig),
        }
    }
}

/// `#[cache]`.
pub(crate) fn cache(attr: TokenStream, item: ItemFn) -> syn::Result<TokenStream> {
    let Start {
        cx,
        args,
        rt,
        params,
    } = Start::<CacheArgs>::new(attr, &item);
    let key = Key::resolve(&args.common, &params, &rt, &cx);
    let outcome = ReturnValue::classify(&item.sig, args.cache_none, &cx);
    // A handler without a `Method` of its own is given one (`names::method`):
    // mounted on PUT or DELETE too, it must never answer from the cache.
    let written_ret = match &item.sig.output {
        ReturnType::Type(_, ret) => type_names::written(ret),
        ReturnType::Default => type_names::Written::Other,
    };
    let added_method = type_names::method_param(&params).is_none()
        && args
            .handler
            .unwrap_or_else(|| type_names::axum_handler(&params, &written_ret));
    let method = type_names::method_param(&params).or_else(|| {
        added_method.then(|| {
            let method = names::method();
            quote!(#method.get())
        })
    });
    if let (Some(true), true) = (args.handler, params.receiver) {
        cx.error_at(
            Span::call_site(),
            "`handler = true` on a method: an axum handler takes no `self`; drop the argument",
        );
    }
    if method.is_some() && args.common.key.is_none() && args.common.resource_id.is_none() {
        if let Some((_, pt)) = params
            .typed()
            .find(|(_, pt)| type_names::request_body(&pt.ty))
        {
            cx.error_spanned_by(
                &pt.ty,
                format!(
                    "{} on a handler that takes the request body needs `resource_id` or `key`: \
                     a hashed key would hash the body, so a PUT/PATCH/DELETE would delete an entry no GET wrote",
                    Macro::Cache,
                ),
            );
        }
    }
    if method.is_none() {
        for (name, span) in &args.invalidation_args {
            cx.error_at(
                *span,
                format!(
                    "`{name}` on {} needs a method-aware handler (a `Method` or `Request` parameter, \
                     so that mutations invalidate); otherwise put it on the {} function that changes the data",
                    Macro::Cache,
                    Macro::Invalidate,
                ),
            );
        }
    }
    // Resolved now so that their errors are reported with the rest.
    let extra = KeyFormat::resolve_all(&args.common.extra, &params, &rt, &cx);
    let patterns = KeyFormat::resolve_all(&args.common.patterns, &params, &rt, &cx);
    let tags = KeyFormat::resolve_all(&args.common.tags, &params, &rt, &cx);
    cx.check()?;
    let (Some(key), Some(outcome)) = (key, outcome) else {
        return Err(syn::Error::new(
            Span::call_site(),
            format!("invalid {} arguments", Macro::Cache),
        ));
    };

    let function = item.sig.ident.to_string();
    let cached = CachedFn {
        item: &item,
        rt: &rt,
        params: &params,
        spec: rt.spec_static(&names::spec(), &function, &args),
        instance: Instance {
            generics: &item.sig.generics,
            receiver: params.receiver,
            rt: &rt,
        },
        key,
        outcome,
        expire_with: args.expire_with.as_ref(),
        background: args.refresh_after.is_some()
            || args.early_expiry_beta.is_some()
            || args.soft_timeout_ms.is_some(),
        refreshes: args.refresh_after.is_some() || args.early_expiry_beta.is_some(),
        tags,
    };
    let wrapper = Wrapper {
        cached: &cached,
        shared: args.shared,
        added_method: added_method.then(|| {
            let (method, extractor) = (names::method(), rt.request_method());
            quote!(#method: #extractor)
        }),
        mutations: method.map(|method| Mutations {
            method,
            function: &function,
            extra,
            patterns,
            tags: &cached.tags,
        }),
    };
    let companion = args
        .companion
        .unwrap_or(!params.receiver || !matches!(item.vis, syn::Visibility::Inherited))
        .then_some(Companion(&cached));
    Ok(quote!(#wrapper #companion))
}

/// `#[invalidate]`.
pub(crate) fn invalidate(attr: TokenStream, item: ItemFn) -> syn::Result<TokenStream> {
    let Start {
        cx,
        args,
        rt,
        params,
    } = Start::<InvalidateArgs>::new(attr, &item);
    let common = &args.common;

    let mut keys = Vec::new();
    if let (Some(rid), None) = (&common.resource_id, &common.key_prefix) {
        cx.error_spanned_by(
            rid,
            format!(
                "{} with `resource_id` also needs the `key_prefix` of the {} function \
                 whose entry it deletes (or give the whole `key`)",
                Macro::Invalidate,
                Macro::Cache,
            ),
        );
    }
    if common.key.is_some() || common.resource_id.is_some() {
        if let Some(key) = Key::resolve(common, &params, &rt, &cx) {
            keys.push(key.to_token_stream());
        }
    } else if let Some(prefix) = &common.key_prefix {
        cx.error_spanned_by(
            prefix,
            format!(
                "{} with `key_prefix` also needs `resource_id` (or a whole `key`) to know which entry to delete; \
                 to drop every entry under the prefix use patterns = [\"{}:*\"]",
                Macro::Invalidate,
                prefix.value()
            ),
        );
    }
    let extra = KeyFormat::resolve_all(&common.extra, &params, &rt, &cx);
    keys.extend(extra.iter().map(ToTokens::to_token_stream));
    let patterns = KeyFormat::resolve_all(&common.patterns, &params, &rt, &cx);
    let tags = KeyFormat::resolve_all(&common.tags, &params, &rt, &cx);
    if keys.is_empty()
        && patterns.is_empty()
        && tags.is_empty()
        && common.key.is_none()
        && common.resource_id.is_none()
        && common.key_prefix.is_none()
    {
        cx.error_at(
            Span::call_site(),
            format!(
                "{} needs something to delete: `key_prefix` + `resource_id`, `key`, `extra`, `patterns` or `tags`",
                Macro::Invalidate
            ),
        );
    }
    cx.check()?;

    let ret = match &item.sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, t) => t.to_token_stream(),
    };
    // An `impl Trait` return cannot be named: inference fills it in.
    let opaque = signature::returns_impl_trait(&item.sig.output);
    let (ret_arg, succeeded) = if opaque {
        (quote!(_), Succeeded::always(&rt))
    } else {
        (ret.clone(), Succeeded::by_type(ret.clone(), &rt))
    };
    let body = Body {
        block: &item.block,
        ret: (!opaque).then_some(ret),
    };
    let function = item.sig.ident.to_string();
    Ok(Invalidator {
        item: &item,
        spec: InvalidateStatic {
            rt: &rt,
            function: &function,
            cache: emit::option(common.cache.as_ref()),
            before: args.before,
        },
        targets: TargetsLet {
            rt: &rt,
            unless_read: false,
            keys: quote!(#(#keys),*),
            patterns: &patterns,
            tags: &tags,
        },
        call: InvalidatingCall {
            rt: &rt,
            ret: &ret_arg,
            succeeded,
            body: &body,
        },
    }
    .into_token_stream())
}
