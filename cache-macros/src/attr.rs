//! Parsing and checking the arguments of `#[cache(…)]` and `#[invalidate(…)]`.
//!
//! Every problem is collected (serde-style) so that one compile shows them all,
//! each with a span on the offending token.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Token};

/// Collects errors; `finish` combines them into one.
#[derive(Default)]
pub(crate) struct Errors(Vec<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, err: syn::Error) {
        self.0.push(err);
    }
    pub(crate) fn spanned<T: quote::ToTokens>(&mut self, tokens: T, msg: impl std::fmt::Display) {
        self.0.push(syn::Error::new_spanned(tokens, msg));
    }
    pub(crate) fn finish(self) -> syn::Result<()> {
        let mut iter = self.0.into_iter();
        match iter.next() {
            None => Ok(()),
            Some(mut first) => {
                for e in iter {
                    first.combine(e);
                }
                Err(first)
            }
        }
    }
}

/// One `name = value` argument (the name may be a keyword, for `crate`).
struct Arg {
    name: Ident,
    value: Expr,
}

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let name = Ident::parse_any(input)?;
        if !input.peek(Token![=]) {
            return Err(syn::Error::new(
                name.span(),
                format!("expected `{name} = …`: every argument takes a value"),
            ));
        }
        input.parse::<Token![=]>()?;
        let value = input.parse()?;
        Ok(Arg { name, value })
    }
}

struct Args(Punctuated<Arg, Token![,]>);

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        Ok(Args(Punctuated::parse_terminated(input)?))
    }
}

/// Which macro is being parsed (they share most arguments).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Cache,
    Invalidate,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Cache => "#[cache]",
            Kind::Invalidate => "#[invalidate]",
        }
    }
    fn allowed(self) -> &'static str {
        match self {
            Kind::Cache => {
                "key_prefix, resource_id, key, expire, version, cache, cache_none, companion, shared, extra, patterns, crate"
            }
            Kind::Invalidate => {
                "key_prefix, resource_id, key, extra, patterns, before, cache, crate"
            }
        }
    }
}

/// The checked arguments of either macro.
#[derive(Default)]
pub(crate) struct MacroArgs {
    pub key_prefix: Option<LitStr>,
    pub resource_id: Option<LitStr>,
    pub key: Option<LitStr>,
    pub expire: Option<u64>,
    /// `version = N`: mixed into the fingerprint of every entry (0: none).
    pub version: u32,
    pub cache: Option<LitStr>,
    pub cache_none: bool,
    pub companion: bool,
    /// `shared = true`: the response is the same for every caller (silences the credentials warning).
    pub shared: bool,
    pub extra: Vec<LitStr>,
    pub patterns: Vec<LitStr>,
    pub before: bool,
    pub krate: Option<syn::Path>,
    /// On `#[cache]`: the `extra`/`patterns` names as written, for errors when
    /// the handler is not method-aware.
    pub invalidation_args: Vec<Ident>,
}

fn lit_str(errors: &mut Errors, name: &Ident, value: &Expr) -> Option<LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Some(s.clone()),
        other => {
            errors.spanned(
                other,
                format!("`{name}` takes a string literal, e.g. {name} = \"…\""),
            );
            None
        }
    }
}

fn lit_bool(errors: &mut Errors, name: &Ident, value: &Expr) -> Option<bool> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(b), ..
        }) => Some(b.value),
        other => {
            errors.spanned(other, format!("`{name}` takes `true` or `false`"));
            None
        }
    }
}

fn lit_strs(errors: &mut Errors, name: &Ident, value: &Expr) -> Vec<LitStr> {
    match value {
        Expr::Array(arr) => arr
            .elems
            .iter()
            .filter_map(|e| lit_str(errors, name, e))
            .collect(),
        other => {
            errors.spanned(
                other,
                format!(
                    "`{name}` takes a list of string literals, e.g. {name} = [\"widgets:count\"]"
                ),
            );
            Vec::new()
        }
    }
}

fn expire(errors: &mut Errors, value: &Expr) -> Option<u64> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => match i.base10_parse::<u64>() {
            Ok(n) => Some(n),
            Err(e) => {
                errors.push(syn::Error::new(
                    i.span(),
                    format!("`expire` must fit in u64 seconds: {e}"),
                ));
                None
            }
        },
        Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)) => {
            errors.spanned(value, "`expire` cannot be negative: give seconds (e.g. 600), or 0 to turn caching off for this function");
            None
        }
        other => {
            errors.spanned(
                other,
                "`expire` takes a whole number of seconds, e.g. expire = 600 (0 turns caching off)",
            );
            None
        }
    }
}

fn version(errors: &mut Errors, value: &Expr) -> Option<u32> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => match i.base10_parse::<u32>() {
            Ok(n) => Some(n),
            Err(e) => {
                errors.push(syn::Error::new(
                    i.span(),
                    format!("`version` must fit in u32: {e}"),
                ));
                None
            }
        },
        other => {
            errors.spanned(
                other,
                "`version` takes a whole number, e.g. version = 2 (bump it when the cached type changes in a way cacheside cannot trace)",
            );
            None
        }
    }
}

/// Parses the attribute arguments for `kind`, collecting every error.
pub(crate) fn parse(
    kind: Kind,
    tokens: proc_macro2::TokenStream,
    errors: &mut Errors,
) -> MacroArgs {
    let args: Args = match syn::parse2(tokens) {
        Ok(a) => a,
        Err(e) => {
            errors.push(e);
            return MacroArgs::default();
        }
    };
    let mut out = MacroArgs {
        companion: true,
        ..MacroArgs::default()
    };
    let mut seen: Vec<String> = Vec::new();
    for Arg { name, value } in args.0 {
        let key = name.to_string();
        if seen.contains(&key) {
            errors.spanned(&name, format!("`{key}` is given twice; keep one"));
            continue;
        }
        seen.push(key.clone());
        match (kind, key.as_str()) {
            (_, "key_prefix") => out.key_prefix = lit_str(errors, &name, &value),
            (_, "resource_id") => out.resource_id = lit_str(errors, &name, &value),
            (_, "key") => out.key = lit_str(errors, &name, &value),
            (_, "cache") => out.cache = lit_str(errors, &name, &value),
            (_, "crate") => {
                if let Some(s) = lit_str(errors, &name, &value) {
                    match s.parse::<syn::Path>() {
                        Ok(p) => out.krate = Some(p),
                        Err(_) => errors.spanned(&s, "`crate` takes a path, e.g. crate = \"::my_reexport::cacheside\""),
                    }
                }
            }
            (Kind::Cache, "expire") => out.expire = expire(errors, &value),
            (Kind::Cache, "version") => out.version = version(errors, &value).unwrap_or(0),
            (Kind::Cache, "cache_none") => out.cache_none = lit_bool(errors, &name, &value).unwrap_or(false),
            (Kind::Cache, "companion") => out.companion = lit_bool(errors, &name, &value).unwrap_or(true),
            (Kind::Cache, "shared") => out.shared = lit_bool(errors, &name, &value).unwrap_or(false),
            (_, "extra") => {
                out.extra = lit_strs(errors, &name, &value);
                out.invalidation_args.push(name.clone());
            }
            (_, "patterns") => {
                out.patterns = lit_strs(errors, &name, &value);
                out.invalidation_args.push(name.clone());
            }
            (Kind::Invalidate, "before") => out.before = lit_bool(errors, &name, &value).unwrap_or(false),
            (Kind::Cache, "before") => errors.spanned(
                &name,
                "`before` belongs to #[invalidate], not #[cache]: put it on the function that changes the data",
            ),
            (Kind::Invalidate, "expire" | "version" | "cache_none" | "companion" | "shared") => errors.spanned(
                &name,
                format!("`{key}` belongs to #[cache], not #[invalidate]"),
            ),
            (_, other) => errors.spanned(
                &name,
                format!("unknown argument `{other}` for {}; expected one of: {}", kind.name(), kind.allowed()),
            ),
        }
    }
    if let (Some(key), Some(_)) = (&out.key, &out.key_prefix) {
        errors.spanned(
            key,
            "give either `key` (the whole template) or `key_prefix`, not both",
        );
    }
    if let (Some(key), Some(_)) = (&out.key, &out.resource_id) {
        errors.spanned(
            key,
            "give either `key` (the whole template) or `resource_id`, not both",
        );
    }
    if let Some(c) = &out.cache {
        if c.value().is_empty() {
            errors.spanned(
                c,
                "`cache` names a cache registered with cacheside::register; it cannot be empty",
            );
        }
    }
    out
}

/// The span of the whole attribute, for errors about missing arguments.
pub(crate) fn call_site() -> Span {
    Span::call_site()
}
