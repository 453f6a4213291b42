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

/// A key value as the runtime encodes it (`cache_core::keys::Part`).
fn key_part(krate: &TokenStream, expr: TokenStream) -> TokenStream {
    quote!(#krate::__private::keys::Part(&#expr))
}

/// The path of the annotated function (`crate::module::Type::method`), at run
/// time: the `type_name` of a function item nested in it, less the item's own
/// name. Unlike `module_path!()` it names the `Self` type of a method, so two
/// `impl` blocks with one method name get two default keys. `suffix` is what
/// to strip: `__CACHESIDE_SUFFIX`, a const the wrapper and the companion each
/// define (the companion strips its own name down to the function's).
fn fn_path(krate: &TokenStream) -> TokenStream {
    quote!(#krate::__private::fn_path(__cacheside_here, __CACHESIDE_SUFFIX))
}

/// The function item whose `type_name` gives the path, and the suffix to strip.
fn here_item(suffix: &str) -> TokenStream {
    quote! {
        #[allow(dead_code)]
        fn __cacheside_here() {}
        #[allow(dead_code)]
        const __CACHESIDE_SUFFIX: &str = #suffix;
    }
}

/// Builds `format!(…)` for a template, checking that every placeholder names a binding.
fn template_expr(
    lit: &LitStr,
    info: &FnInfo,
    krate: &TokenStream,
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
                exprs.push(key_part(krate, ph.expr()));
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
    krate: &TokenStream,
    errors: &mut Errors,
) -> Option<KeyExpr> {
    let mut params = Vec::new();
    if let Some(key) = &args.key {
        let (format, exprs) = template_expr(key, info, krate, errors, &mut params)?;
        return Some(KeyExpr {
            tokens: quote!(::std::format!(#format, #(#exprs),*)),
            params,
        });
    }
    let prefix = match &args.key_prefix {
        Some(p) => {
            let (format, exprs) = template_expr(p, info, krate, errors, &mut params)?;
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
        let id = key_part(krate, format_ident!("{}", name).into_token_stream());
        let tokens = match prefix {
            Some((f, e)) => {
                let format = format!("{f}:{{}}");
                quote!(::std::format!(#format, #(#e,)* #id))
            }
            // No prefix: `crate::module::Type::function:{id}`, unique like the
            // hashed default (a bare function name would collide between
            // modules, a module path between impl blocks).
            None => {
                let path = fn_path(krate);
                quote!(::std::format!("{}:{}", #path, #id))
            }
        };
        return Some(KeyExpr { tokens, params });
    }
    // No resource id: prefix plus a stable hash of every argument but `self`.
    let prefix_tokens = match prefix {
        Some((format, exprs)) => quote!(&::std::format!(#format, #(#exprs),*)),
        None => fn_path(krate),
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
///
/// Whether a return type is a `Result` or an `Option` is decided by the type
/// system (`__private::Probe`), never by its written name, so an alias of
/// either behaves like the real one. Only the axum shapes are recognised by
/// name (`Json<T>` is a concrete type of one crate).
enum Mode {
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

impl Mode {
    /// The runtime wrapper type of an axum shape (implementing `Outcome`).
    fn wrapper(&self, krate: &TokenStream) -> Option<TokenStream> {
        Some(match self {
            Mode::Probe | Mode::CacheNone => return None,
            Mode::Json(t) => quote!(#krate::__private::http::JsonOutcome<#t>),
            Mode::JsonResult(t, e) => quote!(#krate::__private::http::JsonResult<#t, #e>),
            Mode::StatusJson(t) => quote!(#krate::__private::http::StatusJson<#t>),
        })
    }

    /// The `Kind` of the probe modes, as an expression (`None` for the axum shapes).
    fn kind(&self, ret: &Type, krate: &TokenStream) -> Option<TokenStream> {
        match self {
            Mode::Probe => Some(quote_spanned! {ret.span()=> {
                #[allow(unused_imports)]
                use #krate::__private::{ViaOutcome as _, ViaPlain as _};
                (&#krate::__private::Probe::<#ret>::new()).__cacheside_kind()
            }}),
            Mode::CacheNone => Some(quote_spanned! {ret.span()=>
                #krate::__private::cache_none_kind::<#ret>()
            }),
            _ => None,
        }
    }

    /// `fn(&Ret) -> bool`: did the call succeed (for invalidation on mutations)?
    fn succeeded(&self, ret: &TokenStream, krate: &TokenStream) -> TokenStream {
        match self {
            Mode::StatusJson(_) => quote!(|__r: &#ret| __r.0.is_success()),
            _ => succeeded_by_type(ret, krate),
        }
    }
}

/// `Result::is_ok` when the return type is a `Result` (also behind an alias),
/// else always true: decided by the type system.
fn succeeded_by_type(ret: &TokenStream, krate: &TokenStream) -> TokenStream {
    quote! {{
        #[allow(unused_imports)]
        use #krate::__private::{ViaAnything as _, ViaResult as _};
        (&#krate::__private::Probe::<#ret>::new()).__cacheside_succeeded()
    }}
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

/// The return type, the stored type as written (for the companion) and the
/// mode; `None` after reporting an error.
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
        return Some((ret, stored, Mode::Probe));
    }
    if args.cache_none {
        // `Option<T>` stores `Option<T>`; an alias is checked by the type
        // system (`OptionLike`), which also rejects what is no Option.
        return Some((ret.clone(), ret, Mode::CacheNone));
    }
    if let Some(targs) = last_segment_args(&ret, "Option") {
        let inner = targs.first().map(|t| (*t).clone())?;
        return Some((ret, inner, Mode::Probe));
    }
    Some((ret.clone(), ret, Mode::Probe))
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
    let version = args.version;
    quote! {
        static __CACHESIDE_SPEC: #krate::__private::Spec = #krate::__private::Spec {
            function: #fn_name,
            cache: #cache,
            expire: #expire,
            auto_init: #krate::__private::auto_init,
            version: #version,
            crate_version: ::core::env!("CARGO_PKG_VERSION"),
            salt: #krate::__private::OnceLock::new(),
            generic_impl: #krate::__private::OnceLock::new(),
        };
    }
}

/// What names an instantiation of a generic function: its type and const
/// parameters (as one `type_name`), and `Self` when it has a receiver.
/// Emitted before the key, in the wrapper and in the companion alike.
fn instance_tokens(item: &ItemFn, krate: &TokenStream, has_receiver: bool) -> TokenStream {
    let local_instance = local("__cacheside_instance");
    let mut consts = Vec::new();
    let mut parts = Vec::new();
    for (i, param) in item.sig.generics.params.iter().enumerate() {
        match param {
            syn::GenericParam::Type(t) => {
                let id = &t.ident;
                parts.push(quote!(#id));
            }
            syn::GenericParam::Const(c) => {
                let holder = format_ident!("__CachesideConst{}", i);
                let (id, ty) = (&c.ident, &c.ty);
                consts.push(quote!(#[allow(non_camel_case_types)] struct #holder<const V: #ty>;));
                parts.push(quote!(#holder<#id>));
            }
            syn::GenericParam::Lifetime(_) => {}
        }
    }
    let params = if parts.is_empty() {
        quote!(::core::option::Option::None)
    } else {
        quote!(::core::option::Option::Some(::core::any::type_name::<(#(#parts,)*)>()))
    };
    let self_type = if has_receiver {
        quote!(::core::option::Option::Some(
            ::core::any::type_name::<Self>()
        ))
    } else {
        quote!(::core::option::Option::None)
    };
    let path = fn_path(krate);
    quote! {
        #(#consts)*
        let #local_instance = #krate::__private::instance(&__CACHESIDE_SPEC, #path, #params, #self_type);
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
fn invalidation_templates(
    lits: &[LitStr],
    info: &FnInfo,
    krate: &TokenStream,
    errors: &mut Errors,
) -> Vec<TokenStream> {
    let mut scratch = Vec::new();
    lits.iter()
        .filter_map(|lit| {
            template_expr(lit, info, krate, errors, &mut scratch)
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
    let key = key_expr(&args, &info, &krate, &mut errors);
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
    invalidation_templates(&args.extra, &info, &krate, &mut errors);
    invalidation_templates(&args.patterns, &info, &krate, &mut errors);
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
    let has_receiver = matches!(item.sig.inputs.first(), Some(FnArg::Receiver(_)));
    let local_instance = local("__cacheside_instance");
    let local_kind = local("__cacheside_kind");
    let read = match (mode.kind(&ret, &krate), mode.wrapper(&krate)) {
        (Some(kind), _) => quote! {{
            let #local_kind = #kind;
            #krate::__private::Kind::unwrap(
                #local_kind,
                #krate::__private::cached(
                    &__CACHESIDE_SPEC, #local_key, #local_instance,
                    async move { #krate::__private::Kind::wrap(#local_kind, #local_body.await) },
                ).await,
            )
        }},
        (None, Some(wrapper)) => quote!(#krate::__private::cached::<#wrapper, _>(
            &__CACHESIDE_SPEC, #local_key, #local_instance, async move { <#wrapper>::from(#local_body.await) }
        ).await.0),
        (None, None) => unreachable!("every mode has a kind or a wrapper"),
    };
    let call = match &method {
        None => quote! {
            let #local_body = #body;
            #read
        },
        Some(method_expr) => {
            // Method-aware handler: GET/HEAD read through the cache; other
            // methods run the handler and, on success, invalidate.
            let succeeded = mode.succeeded(&ret_tokens, &krate);
            let extra = invalidation_templates(&args.extra, &info, &krate, &mut Errors::default());
            let patterns =
                invalidation_templates(&args.patterns, &info, &krate, &mut Errors::default());
            quote! {
                let #local_read = #krate::__private::http::is_read_method(#method_expr);
                // Mutations invalidate whenever invalidation is on, also with
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
    // The axum shapes are recognised by name: check their payload where it is written.
    let assert_cacheable = match mode {
        Mode::Json(_) | Mode::JsonResult(..) | Mode::StatusJson(_) => {
            quote_spanned! {stored.span()=>
                #krate::__private::assert_cacheable::<#stored>();
            }
        }
        Mode::Probe | Mode::CacheNone => TokenStream::new(),
    };
    let here = here_item("::__cacheside_here");
    let instance = instance_tokens(&item, &krate, has_receiver);
    let ItemFn {
        attrs, vis, sig, ..
    } = &item;
    let wrapper = quote! {
        #(#attrs)*
        #vis #sig {
            #assert_cacheable
            #credential_warnings
            #spec
            #here
            let (#local_key, #local_instance): (
                ::core::option::Option<::std::string::String>,
                ::core::option::Option<&'static str>,
            ) = if __CACHESIDE_SPEC.active() {
                #instance
                match #local_instance {
                    ::core::result::Result::Ok(__i) => (::core::option::Option::Some(#key_tokens), __i),
                    ::core::result::Result::Err(()) => {
                        #krate::__private::uncached_generic_impl(&__CACHESIDE_SPEC, #krate::__private::fn_path(__cacheside_here, __CACHESIDE_SUFFIX));
                        (::core::option::Option::None, ::core::option::Option::None)
                    }
                }
            } else {
                (::core::option::Option::None, ::core::option::Option::None)
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
    // The companion names the stored type as written; the wrapper's comes
    // from the type system. They differ only behind an alias, which this
    // check turns into a compile error that says what to do.
    // (`cache_none` stores the return type itself: nothing to check.)
    let same_stored = match mode {
        Mode::Probe => mode
            .kind(&ret, &krate)
            .map(|kind| quote!(#krate::__private::same_stored::<#stored, _, #ret>(#kind);)),
        _ => None,
    };
    let companion_here = here_item("_cache_entry::__cacheside_here");
    let companion = quote! {
        #[doc = #doc]
        #[allow(dead_code, clippy::needless_lifetimes)]
        #vis fn #companion_name #generics (#(#params),*) -> #krate::__private::Entry<#stored> #where_clause {
            #same_stored
            #spec
            #companion_here
            #instance
            let #local_instance = #local_instance.unwrap_or(::core::option::Option::Some("uncached: generic impl"));
            #krate::__private::Entry::new(&__CACHESIDE_SPEC, #key_tokens, #local_instance)
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
        if let Some(k) = key_expr(&args, &info, &krate, &mut errors) {
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
    keys.extend(invalidation_templates(
        &args.extra,
        &info,
        &krate,
        &mut errors,
    ));
    let patterns = invalidation_templates(&args.patterns, &info, &krate, &mut errors);
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
    let succeeded = if opaque {
        // An `impl Trait` return cannot be named: let inference fill it in.
        quote!(|_: &_| true)
    } else {
        succeeded_by_type(&ret, &krate)
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
