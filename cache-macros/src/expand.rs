//! Code generation: the wrapper keeps the signature, moves the body into an
//! `async move` block and hands it to one runtime function.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, ItemFn, LitStr, Pat, PathArguments, ReturnType, Type};

use crate::attr::{self, Errors, Kind, MacroArgs};
use crate::template;

/// A parameter binding: its name and the index of the parameter it comes from.
struct Binding {
    name: String,
    param: usize,
}

fn collect_bindings(pat: &Pat, param: usize, out: &mut Vec<Binding>) {
    match pat {
        Pat::Ident(p) => {
            out.push(Binding {
                name: p.ident.to_string(),
                param,
            });
            if let Some((_, sub)) = &p.subpat {
                collect_bindings(sub, param, out);
            }
        }
        Pat::TupleStruct(p) => p.elems.iter().for_each(|e| collect_bindings(e, param, out)),
        Pat::Tuple(p) => p.elems.iter().for_each(|e| collect_bindings(e, param, out)),
        Pat::Struct(p) => p
            .fields
            .iter()
            .for_each(|f| collect_bindings(&f.pat, param, out)),
        Pat::Reference(p) => collect_bindings(&p.pat, param, out),
        Pat::Type(p) => collect_bindings(&p.pat, param, out),
        Pat::Paren(p) => collect_bindings(&p.pat, param, out),
        Pat::Slice(p) => p.elems.iter().for_each(|e| collect_bindings(e, param, out)),
        _ => {}
    }
}

struct FnInfo {
    bindings: Vec<Binding>,
    /// Indices (into `sig.inputs`) of typed, non-receiver parameters.
    typed: Vec<usize>,
}

fn fn_info(item: &ItemFn) -> FnInfo {
    let mut bindings = Vec::new();
    let mut typed = Vec::new();
    for (i, arg) in item.sig.inputs.iter().enumerate() {
        if let FnArg::Typed(pt) = arg {
            typed.push(i);
            collect_bindings(&pt.pat, i, &mut bindings);
        }
    }
    FnInfo { bindings, typed }
}

impl FnInfo {
    fn find(&self, name: &str) -> Option<&Binding> {
        self.bindings.iter().find(|b| b.name == name)
    }
    fn names(&self) -> String {
        let names: Vec<&str> = self.bindings.iter().map(|b| b.name.as_str()).collect();
        if names.is_empty() {
            "(the function has no parameters)".into()
        } else {
            names.join(", ")
        }
    }
}

/// A key expression plus the parameters it reads.
struct KeyExpr {
    tokens: TokenStream,
    params: Vec<usize>,
}

/// Builds `format!(…)` for a template, checking that every placeholder names a binding.
fn template_expr(
    lit: &LitStr,
    info: &FnInfo,
    errors: &mut Errors,
    params: &mut Vec<usize>,
) -> Option<(String, Vec<TokenStream>)> {
    let tpl = match template::parse(lit) {
        Ok(t) => t,
        Err(msg) => {
            errors.spanned(lit, msg);
            return None;
        }
    };
    let mut exprs = Vec::new();
    let mut ok = true;
    for ph in &tpl.placeholders {
        match info.find(&ph.root) {
            Some(b) => {
                params.push(b.param);
                exprs.push(ph.expr());
            }
            None => {
                ok = false;
                errors.spanned(
                    lit,
                    format!(
                        "placeholder `{{{}}}` names no parameter of this function; parameters: {}",
                        ph.root,
                        info.names()
                    ),
                );
            }
        }
    }
    ok.then_some((tpl.format, exprs))
}

fn key_expr(
    args: &MacroArgs,
    info: &FnInfo,
    fn_name: &str,
    krate: &TokenStream,
    errors: &mut Errors,
) -> Option<KeyExpr> {
    let mut params = Vec::new();
    if let Some(key) = &args.key {
        let (format, exprs) = template_expr(key, info, errors, &mut params)?;
        return Some(KeyExpr {
            tokens: quote!(::std::format!(#format, #(#exprs),*)),
            params,
        });
    }
    let prefix = match &args.key_prefix {
        Some(p) => {
            let (format, exprs) = template_expr(p, info, errors, &mut params)?;
            Some((format, exprs))
        }
        None => None,
    };
    if let Some(rid) = &args.resource_id {
        let name = rid.value();
        let Some(b) = info.find(&name) else {
            errors.spanned(rid, format!("`resource_id = \"{name}\"` names no parameter of this function; parameters: {}", info.names()));
            return None;
        };
        params.push(b.param);
        let ident = format_ident!("{}", name);
        let tokens = match prefix {
            Some((f, e)) => {
                let format = format!("{f}:{{}}");
                quote!(::std::format!(#format, #(#e,)* #ident))
            }
            // No prefix: `module::path::function:{id}`, unique like the hashed default
            // (a bare function name would collide between modules).
            None => quote!(::std::format!(
                "{}::{}:{}", ::core::module_path!(), #fn_name, #ident
            )),
        };
        return Some(KeyExpr { tokens, params });
    }
    // No resource id: prefix plus a stable hash of every argument but `self`.
    let prefix_tokens = match prefix {
        Some((format, exprs)) => quote!(&::std::format!(#format, #(#exprs),*)),
        None => quote!(::core::concat!(::core::module_path!(), "::", #fn_name)),
    };
    let all: Vec<TokenStream> = info
        .bindings
        .iter()
        .map(|b| {
            let id = format_ident!("{}", b.name);
            quote!(&#id)
        })
        .collect();
    Some(KeyExpr {
        tokens: quote!(#krate::__private::hashed_key(#prefix_tokens, &(#(#all,)*))),
        params: info.typed.clone(),
    })
}

/// How the return type maps to what is cached.
enum Mode {
    /// Cached as is (runtime wrapper `Plain`).
    Plain,
    /// `Result<T, E>`: `Ok` cached.
    Result,
    /// `Option<T>`: `Some` cached.
    Option,
    /// `Option<T>` with `cache_none = true`; holds `T`.
    CacheNone(Box<Type>),
    /// axum `Json<T>`; holds `T`.
    Json(Box<Type>),
    /// `Result<Json<T>, E>`; holds `T` and `E`.
    JsonResult(Box<Type>, Box<Type>),
    /// `(StatusCode, Json<T>)`; holds `T`. Only `200 OK` is cached.
    StatusJson(Box<Type>),
}

impl Mode {
    /// The runtime wrapper type (implementing `Outcome`), when the return type is not one itself.
    fn wrapper(&self, stored: &Type, krate: &TokenStream) -> Option<TokenStream> {
        Some(match self {
            Mode::Result | Mode::Option => return None,
            Mode::Plain => quote!(#krate::__private::Plain<#stored>),
            Mode::CacheNone(inner) => quote!(#krate::__private::CacheNone<#inner>),
            Mode::Json(t) => quote!(#krate::__private::http::JsonOutcome<#t>),
            Mode::JsonResult(t, e) => quote!(#krate::__private::http::JsonResult<#t, #e>),
            Mode::StatusJson(t) => quote!(#krate::__private::http::StatusJson<#t>),
        })
    }

    /// `fn(&Ret) -> bool`: did the call succeed (for invalidation on mutations)?
    fn succeeded(&self, ret: &TokenStream) -> TokenStream {
        match self {
            Mode::Result | Mode::JsonResult(..) => quote!(|__r: &#ret| __r.is_ok()),
            Mode::StatusJson(_) => quote!(|__r: &#ret| __r.0.is_success()),
            _ => quote!(|_: &#ret| true),
        }
    }
}

/// `Json<T>` → `T`.
fn json_inner(ty: &Type) -> Option<Type> {
    last_segment_args(ty, "Json").and_then(|a| a.first().map(|t| (*t).clone()))
}

fn last_segment_args<'a>(ty: &'a Type, name: &str) -> Option<Vec<&'a Type>> {
    let Type::Path(tp) = ty else { return None };
    let seg = tp.path.segments.last()?;
    if seg.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(ab) = &seg.arguments else {
        return None;
    };
    Some(
        ab.args
            .iter()
            .filter_map(|a| match a {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
    )
}

fn contains_impl_trait_tokens(tokens: &TokenStream) -> bool {
    tokens
        .clone()
        .into_iter()
        .any(|t| matches!(&t, proc_macro2::TokenTree::Ident(i) if i == "impl"))
}

fn contains_impl_trait(ty: &Type) -> bool {
    ty.to_token_stream()
        .into_iter()
        .any(|t| matches!(&t, proc_macro2::TokenTree::Ident(i) if i == "impl"))
}

/// The return type, the stored type and the mode; `None` after reporting an error.
fn output(item: &ItemFn, args: &MacroArgs, errors: &mut Errors) -> Option<(Type, Type, Mode)> {
    let ReturnType::Type(_, ret) = &item.sig.output else {
        errors.spanned(
            &item.sig.ident,
            "#[cache] needs a return value to cache; this function returns ()",
        );
        return None;
    };
    let ret = (**ret).clone();
    if contains_impl_trait(&ret) {
        errors.spanned(&ret, "#[cache] cannot store an `impl Trait` return value: name a concrete type that implements Serialize + DeserializeOwned");
        return None;
    }
    if let Type::Tuple(t) = &ret {
        if t.elems.is_empty() {
            errors.spanned(
                &ret,
                "#[cache] needs a return value to cache; this function returns ()",
            );
            return None;
        }
    }
    if let Some(inner) = json_inner(&ret) {
        return Some((ret, inner.clone(), Mode::Json(Box::new(inner))));
    }
    if let Type::Tuple(t) = &ret {
        let status_first = t.elems.len() == 2
            && matches!(&t.elems[0], Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "StatusCode"));
        if let (true, Some(inner)) = (status_first, t.elems.iter().nth(1).and_then(json_inner)) {
            return Some((ret, inner.clone(), Mode::StatusJson(Box::new(inner))));
        }
    }
    if let Some(targs) = last_segment_args(&ret, "Result") {
        if let (Some(ok), Some(err)) = (targs.first().and_then(|t| json_inner(t)), targs.get(1)) {
            let err = (*err).clone();
            return Some((
                ret,
                ok.clone(),
                Mode::JsonResult(Box::new(ok), Box::new(err)),
            ));
        }
        if args.cache_none {
            errors.spanned(
                &ret,
                "`cache_none` applies to functions returning Option<T>",
            );
        }
        let stored = targs.first().map(|t| (*t).clone())?;
        return Some((ret, stored, Mode::Result));
    }
    if let Some(targs) = last_segment_args(&ret, "Option") {
        let inner = targs.first().map(|t| (*t).clone())?;
        if args.cache_none {
            let stored: Type = syn::parse_quote!(::core::option::Option<#inner>);
            return Some((ret, stored, Mode::CacheNone(Box::new(inner))));
        }
        return Some((ret, inner, Mode::Option));
    }
    if args.cache_none {
        errors.spanned(
            &ret,
            "`cache_none` applies to functions returning Option<T>",
        );
    }
    Some((ret.clone(), ret, Mode::Plain))
}

fn krate(args: &MacroArgs) -> TokenStream {
    match &args.krate {
        Some(p) => p.to_token_stream(),
        None => quote!(::cacheside),
    }
}

fn check_async(item: &ItemFn, kind: &str, errors: &mut Errors) {
    if item.sig.asyncness.is_none() {
        errors.spanned(
            item.sig.fn_token,
            format!("{kind} works on `async fn` only: make the function async (its callers then `.await` it)"),
        );
    }
}

/// A local variable of the generated code, invisible to the user's code
/// (mixed-site hygiene): a parameter named like it cannot collide.
fn local(name: &str) -> proc_macro2::Ident {
    proc_macro2::Ident::new(name, proc_macro2::Span::mixed_site())
}

/// The body as an `async move` block whose output type is pinned to `ret`
/// (so `?` and `return` inside the body keep their meaning).
fn body_block(item: &ItemFn, ret: &TokenStream) -> TokenStream {
    let local_fake_return = local("__cacheside_fake_return");
    let block = &item.block;
    // Splice the statements, not the block: `{ { expr } }` would trip `unused_braces`.
    let stmts = &block.stmts;
    if contains_impl_trait_tokens(ret) {
        // `impl Trait` cannot be named in a `let`: the block's type is inferred instead.
        return quote_spanned! {block.span()=> async move { #(#stmts)* } };
    }
    quote_spanned! {block.span()=>
        async move {
            #[allow(
                unknown_lints, unreachable_code, clippy::diverging_sub_expression,
                clippy::empty_loop, clippy::let_unit_value, clippy::needless_return
            )]
            if false {
                let #local_fake_return: #ret = loop {};
                return #local_fake_return;
            }
            #(#stmts)*
        }
    }
}

fn option_lit(s: &Option<LitStr>) -> TokenStream {
    match s {
        Some(s) => quote!(::core::option::Option::Some(#s)),
        None => quote!(::core::option::Option::None),
    }
}

fn spec_static(args: &MacroArgs, fn_name: &str, krate: &TokenStream) -> TokenStream {
    let cache = option_lit(&args.cache);
    let expire = match args.expire {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    quote! {
        static __CACHESIDE_SPEC: #krate::__private::Spec = #krate::__private::Spec {
            function: #fn_name,
            cache: #cache,
            expire: #expire,
            auto_init: #krate::__private::auto_init,
        };
    }
}

/// The expression giving the request method, when the handler takes a
/// `Method` (`method: Method`) or the whole request (`req: Request`).
fn method_param(item: &ItemFn) -> Option<TokenStream> {
    item.sig.inputs.iter().find_map(|arg| {
        let FnArg::Typed(pt) = arg else { return None };
        let Pat::Ident(id) = &*pt.pat else {
            return None;
        };
        let Type::Path(tp) = &*pt.ty else { return None };
        let last = tp.path.segments.last()?;
        let ident = &id.ident;
        if last.ident == "Method" {
            Some(quote!(&#ident))
        } else if last.ident == "Request" {
            Some(quote!(#ident.method()))
        } else {
            None
        }
    })
}

/// Type names that say "this parameter identifies the caller".
const CREDENTIAL_MARKERS: &[&str] = &[
    "Claims",
    "Auth",
    "Session",
    "Cookie",
    "Token",
    "Identity",
    "CurrentUser",
    "Caller",
];

/// Warnings (as uses of a deprecated item, the one way a proc macro can warn
/// on stable) for parameters that identify the caller but do not reach the key:
/// every caller would share one entry.
fn credential_warnings(item: &ItemFn, key_params: &[usize], shared: bool) -> TokenStream {
    if shared {
        return TokenStream::new();
    }
    let mut out = TokenStream::new();
    for (i, arg) in item.sig.inputs.iter().enumerate() {
        let FnArg::Typed(pt) = arg else { continue };
        if key_params.contains(&i) {
            continue;
        }
        let ty = pt.ty.to_token_stream().to_string();
        let Some(marker) = CREDENTIAL_MARKERS.iter().find(|m| ty.contains(*m)) else {
            continue;
        };
        let note = format!(
            "cacheside: this handler takes caller credentials (a `{marker}` parameter) but its cache key does not use them, \
             so every caller shares one entry. Put the caller in the key (e.g. key = \"profile:{{claims.sub}}\"), \
             or add `shared = true` if the response is the same for every caller."
        );
        let warn = format_ident!(
            "__cacheside_key_ignores_credentials_{}",
            i,
            span = pt.ty.span()
        );
        out.extend(quote_spanned! {pt.ty.span()=>
            {
                #[deprecated(note = #note)]
                #[allow(non_camel_case_types)]
                struct #warn;
                let _ = #warn;
            }
        });
    }
    out
}

/// `format!` expressions for `extra` / `patterns` templates.
fn invalidation_templates(lits: &[LitStr], info: &FnInfo, errors: &mut Errors) -> Vec<TokenStream> {
    let mut scratch = Vec::new();
    lits.iter()
        .filter_map(|lit| {
            template_expr(lit, info, errors, &mut scratch)
                .map(|(format, exprs)| quote!(::std::format!(#format, #(#exprs),*)))
        })
        .collect()
}

/// What both macros start from: checked arguments, parameters, names.
struct Prepared {
    errors: Errors,
    args: MacroArgs,
    info: FnInfo,
    fn_name: String,
    krate: TokenStream,
}

fn prepare(kind: Kind, attr_tokens: TokenStream, item: &ItemFn) -> Prepared {
    let mut errors = Errors::default();
    let args = attr::parse(kind, attr_tokens, &mut errors);
    let name = match kind {
        Kind::Cache => "#[cache]",
        Kind::Invalidate => "#[invalidate]",
    };
    check_async(item, name, &mut errors);
    let krate = krate(&args);
    Prepared {
        errors,
        args,
        info: fn_info(item),
        fn_name: item.sig.ident.to_string(),
        krate,
    }
}

/// `#[cache]`.
pub(crate) fn cache(attr_tokens: TokenStream, item: ItemFn) -> syn::Result<TokenStream> {
    let (local_key, local_body, local_read, local_targets) = (
        local("__cacheside_key"),
        local("__cacheside_body"),
        local("__cacheside_read"),
        local("__cacheside_targets"),
    );
    let Prepared {
        mut errors,
        args,
        info,
        fn_name,
        krate,
    } = prepare(Kind::Cache, attr_tokens, &item);
    let key = key_expr(&args, &info, &fn_name, &krate, &mut errors);
    let out = output(&item, &args, &mut errors);
    let method = method_param(&item);
    if method.is_none() {
        for name in &args.invalidation_args {
            errors.spanned(
                name,
                format!(
                    "`{name}` on #[cache] needs a method-aware handler (a `Method` or `Request` parameter, \
                     so that mutations invalidate); otherwise put it on the #[invalidate] function that changes the data"
                ),
            );
        }
    }
    // Check the templates now so that their errors are reported with the rest.
    invalidation_templates(&args.extra, &info, &mut errors);
    invalidation_templates(&args.patterns, &info, &mut errors);
    errors.finish()?;
    let (Some(key), Some((ret, stored, mode))) = (key, out) else {
        return Err(syn::Error::new(
            attr::call_site(),
            "invalid #[cache] arguments",
        ));
    };

    let spec = spec_static(&args, &fn_name, &krate);
    let key_tokens = &key.tokens;
    let ret_tokens = ret.to_token_stream();
    let body = body_block(&item, &ret_tokens);
    let read = match mode.wrapper(&stored, &krate) {
        None => {
            quote!(#krate::__private::cached::<#ret, _>(&__CACHESIDE_SPEC, #local_key, #local_body).await)
        }
        Some(wrapper) => quote!(#krate::__private::cached::<#wrapper, _>(
            &__CACHESIDE_SPEC, #local_key, async move { <#wrapper>::from(#local_body.await) }
        ).await.0),
    };
    let call = match &method {
        None => quote! {
            let #local_body = #body;
            #read
        },
        Some(method_expr) => {
            // Method-aware handler: GET/HEAD read through the cache; other
            // methods run the handler and, on success, invalidate.
            let succeeded = mode.succeeded(&ret_tokens);
            let extra = invalidation_templates(&args.extra, &info, &mut Errors::default());
            let patterns = invalidation_templates(&args.patterns, &info, &mut Errors::default());
            quote! {
                let #local_read = #krate::__private::http::is_read_method(#method_expr);
                // Mutations invalidate whenever caching is on, also with
                // `expire = 0` (extra/patterns belong to other functions' entries).
                let #local_targets = if !#local_read && #krate::__private::invalidation_active() {
                    ::core::option::Option::Some(#krate::__private::Targets {
                        keys: ::std::vec![#key_tokens, #(#extra),*],
                        patterns: ::std::vec![#(#patterns),*],
                    })
                } else {
                    ::core::option::Option::None
                };
                let #local_body = #body;
                if #local_read {
                    #read
                } else {
                    static __CACHESIDE_INVALIDATE: #krate::__private::InvalidateSpec = #krate::__private::InvalidateSpec {
                        function: #fn_name,
                        cache: __CACHESIDE_SPEC.cache,
                        before: false,
                        auto_init: #krate::__private::auto_init,
                    };
                    #krate::__private::invalidating::<#ret, _>(&__CACHESIDE_INVALIDATE, #local_targets, #succeeded, #local_body).await
                }
            }
        }
    };
    let credential_warnings = credential_warnings(&item, &key.params, args.shared);
    let assert_cacheable = quote_spanned! {stored.span()=>
        #krate::__private::assert_cacheable::<#stored>();
    };
    let ItemFn {
        attrs, vis, sig, ..
    } = &item;
    let wrapper = quote! {
        #(#attrs)*
        #vis #sig {
            #assert_cacheable
            #credential_warnings
            #spec
            let #local_key: ::core::option::Option<::std::string::String> =
                if __CACHESIDE_SPEC.active() {
                    ::core::option::Option::Some(#key_tokens)
                } else {
                    ::core::option::Option::None
                };
            #call
        }
    };
    if !args.companion {
        return Ok(wrapper);
    }

    // The typed companion: same key, from the parameters the key reads.
    let companion_name = format_ident!("{}_cache_entry", item.sig.ident);
    let mut used = key.params.clone();
    used.sort_unstable();
    used.dedup();
    let params = used.iter().filter_map(|&i| match &item.sig.inputs[i] {
        FnArg::Typed(pt) => {
            let mut pt = pt.clone();
            pt.attrs.clear();
            strip_mut(&mut pt.pat);
            Some(pt)
        }
        FnArg::Receiver(_) => None,
    });
    let generics = &item.sig.generics;
    let where_clause = &generics.where_clause;
    let doc = format!(
        "Typed handle on the cache entry of `{fn_name}` for these arguments: its key, \
         `invalidate()`, `get()` and `set()`. Generated by `#[cache]`."
    );
    let companion = quote! {
        #[doc = #doc]
        #[allow(dead_code, clippy::needless_lifetimes)]
        #vis fn #companion_name #generics (#(#params),*) -> #krate::__private::Entry<#stored> #where_clause {
            #spec
            #krate::__private::Entry::new(&__CACHESIDE_SPEC, #key_tokens)
        }
    };
    Ok(quote!(#wrapper #companion))
}

fn strip_mut(pat: &mut Pat) {
    match pat {
        Pat::Ident(p) => p.mutability = None,
        Pat::TupleStruct(p) => p.elems.iter_mut().for_each(strip_mut),
        Pat::Tuple(p) => p.elems.iter_mut().for_each(strip_mut),
        Pat::Struct(p) => p.fields.iter_mut().for_each(|f| strip_mut(&mut f.pat)),
        Pat::Reference(p) => strip_mut(&mut p.pat),
        Pat::Type(p) => strip_mut(&mut p.pat),
        Pat::Paren(p) => strip_mut(&mut p.pat),
        Pat::Slice(p) => p.elems.iter_mut().for_each(strip_mut),
        _ => {}
    }
}

/// `#[invalidate]`.
pub(crate) fn invalidate(attr_tokens: TokenStream, item: ItemFn) -> syn::Result<TokenStream> {
    let local_targets = local("__cacheside_targets");
    let Prepared {
        mut errors,
        args,
        info,
        fn_name,
        krate,
    } = prepare(Kind::Invalidate, attr_tokens, &item);

    let mut keys = Vec::new();
    if let (Some(rid), None) = (&args.resource_id, &args.key_prefix) {
        errors.spanned(
            rid,
            "#[invalidate] with `resource_id` also needs the `key_prefix` of the #[cache] function \
             whose entry it deletes (or give the whole `key`)",
        );
    }
    if args.key.is_some() || args.resource_id.is_some() {
        if let Some(k) = key_expr(&args, &info, &fn_name, &krate, &mut errors) {
            keys.push(k.tokens);
        }
    } else if let Some(p) = &args.key_prefix {
        errors.spanned(
            p,
            format!(
                "#[invalidate] with `key_prefix` also needs `resource_id` (or a whole `key`) to know which entry to delete; \
                 to drop every entry under the prefix use patterns = [\"{}:*\"]",
                p.value()
            ),
        );
    }
    keys.extend(invalidation_templates(&args.extra, &info, &mut errors));
    let patterns = invalidation_templates(&args.patterns, &info, &mut errors);
    if keys.is_empty()
        && patterns.is_empty()
        && args.key.is_none()
        && args.resource_id.is_none()
        && args.key_prefix.is_none()
    {
        errors.push(syn::Error::new(
            attr::call_site(),
            "#[invalidate] needs something to delete: `key_prefix` + `resource_id`, `key`, `extra` or `patterns`",
        ));
    }
    errors.finish()?;

    let ret: TokenStream = match &item.sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, t) => t.to_token_stream(),
    };
    let opaque = contains_impl_trait_tokens(&ret);
    let succeeded = match &item.sig.output {
        ReturnType::Type(_, t) if last_segment_args(t, "Result").is_some() => {
            quote!(|__r: &#ret| __r.is_ok())
        }
        // An `impl Trait` return cannot be named: let inference fill it in.
        _ if opaque => quote!(|_: &_| true),
        _ => quote!(|_: &#ret| true),
    };
    let ret_arg = if opaque { quote!(_) } else { ret.clone() };
    let cache = option_lit(&args.cache);
    let before = args.before;
    let body = body_block(&item, &ret);
    let ItemFn {
        attrs, vis, sig, ..
    } = &item;
    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            static __CACHESIDE_INVALIDATE: #krate::__private::InvalidateSpec = #krate::__private::InvalidateSpec {
                function: #fn_name,
                cache: #cache,
                before: #before,
                auto_init: #krate::__private::auto_init,
            };
            let #local_targets = if #krate::__private::invalidation_active() {
                ::core::option::Option::Some(#krate::__private::Targets {
                    keys: ::std::vec![#(#keys),*],
                    patterns: ::std::vec![#(#patterns),*],
                })
            } else {
                ::core::option::Option::None
            };
            #krate::__private::invalidating::<#ret_arg, _>(&__CACHESIDE_INVALIDATE, #local_targets, #succeeded, #body).await
        }
    })
}
