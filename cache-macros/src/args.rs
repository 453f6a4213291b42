//! The arguments of `#[cache(…)]` and `#[invalidate(…)]`, parsed into typed
//! [`CacheArgs`] / [`InvalidateArgs`] (as tracing-attributes' `attr.rs` does,
//! with a `syn` keyword per argument name).
//!
//! Every argument is `name = value`. A value of the wrong type, a name given
//! twice, one that belongs to the other macro and an unknown one are each
//! reported (into the [`Ctxt`]) and parsing goes on, so one compile shows them
//! all. Only a syntax error in the list itself ends it.

use std::fmt;

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Token};

use crate::ctxt::Ctxt;

/// Which of the two macros; its `Display` is how messages name it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Macro {
    Cache,
    Invalidate,
}

impl fmt::Display for Macro {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Macro::Cache => "#[cache]",
            Macro::Invalidate => "#[invalidate]",
        })
    }
}

impl Macro {
    /// The arguments this macro takes, in the order its "unknown argument"
    /// message lists them.
    fn accepted(self) -> &'static [Name] {
        use Name::*;
        match self {
            Macro::Cache => &[
                KeyPrefix,
                ResourceId,
                Key,
                Expire,
                Version,
                Cache,
                CacheNone,
                Companion,
                Shared,
                Handler,
                Local,
                LocalTtl,
                FailSafeMax,
                FailSafeThrottle,
                Jitter,
                ExpireWith,
                RefreshAfter,
                EarlyExpiryBeta,
                SoftTimeoutMs,
                HardTimeoutMs,
                LeaseMs,
                Tags,
                Extra,
                Patterns,
                Crate,
            ],
            Macro::Invalidate => &[
                KeyPrefix, ResourceId, Key, Extra, Patterns, Tags, Before, Cache, Crate,
            ],
        }
    }

    fn other(self) -> Macro {
        match self {
            Macro::Cache => Macro::Invalidate,
            Macro::Invalidate => Macro::Cache,
        }
    }

    /// Why this macro does not take `name`: it belongs to the other one, or to neither.
    fn rejection(self, name: &ArgName) -> String {
        let owner = self.other();
        match name {
            ArgName::Known(known, _) if owner.accepted().contains(known) => {
                let hint = match owner {
                    Macro::Invalidate => ": put it on the function that changes the data",
                    Macro::Cache => "",
                };
                format!("`{known}` belongs to {owner}, not {self}{hint}")
            }
            _ => {
                let accepted: Vec<&str> = self.accepted().iter().map(|n| n.as_str()).collect();
                format!(
                    "unknown argument `{name}` for {self}; expected one of: {}",
                    accepted.join(", ")
                )
            }
        }
    }
}

/// Declares each argument name once: its `syn` keyword (in `kw`), its
/// [`Name`] variant and its spelling. `crate` is Rust's own keyword.
macro_rules! argument_names {
    ($($variant:ident: $keyword:ident,)*) => {
        /// The `syn` keywords of the argument names.
        mod kw {
            $(syn::custom_keyword!($keyword);)*
        }

        /// An argument name either macro takes.
        #[derive(Clone, Copy, PartialEq, Eq, Debug)]
        pub(crate) enum Name {
            $($variant,)*
            Crate,
        }

        impl Name {
            /// Parses a known name, if the next token is one.
            fn parse_known(input: ParseStream<'_>) -> syn::Result<Option<(Name, Span)>> {
                $(if input.peek(kw::$keyword) {
                    return Ok(Some((Name::$variant, input.parse::<kw::$keyword>()?.span)));
                })*
                if input.peek(Token![crate]) {
                    return Ok(Some((Name::Crate, input.parse::<Token![crate]>()?.span)));
                }
                Ok(None)
            }

            fn as_str(self) -> &'static str {
                match self {
                    $(Name::$variant => stringify!($keyword),)*
                    Name::Crate => "crate",
                }
            }
        }
    };
}

argument_names! {
    KeyPrefix: key_prefix,
    ResourceId: resource_id,
    Key: key,
    Expire: expire,
    Version: version,
    Cache: cache,
    CacheNone: cache_none,
    Companion: companion,
    Shared: shared,
    Handler: handler,
    Local: local,
    LocalTtl: local_ttl,
    FailSafeMax: fail_safe_max,
    FailSafeThrottle: fail_safe_throttle,
    Jitter: jitter,
    ExpireWith: expire_with,
    RefreshAfter: refresh_after,
    EarlyExpiryBeta: early_expiry_beta,
    SoftTimeoutMs: soft_timeout_ms,
    HardTimeoutMs: hard_timeout_ms,
    LeaseMs: lease_ms,
    Tags: tags,
    Extra: extra,
    Patterns: patterns,
    Before: before,
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An argument name as written: a known one, or any identifier (reported).
enum ArgName {
    Known(Name, Span),
    Unknown(Ident),
}

impl ArgName {
    fn span(&self) -> Span {
        match self {
            ArgName::Known(_, span) => *span,
            ArgName::Unknown(ident) => ident.span(),
        }
    }
}

impl fmt::Display for ArgName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgName::Known(name, _) => name.fmt(f),
            ArgName::Unknown(ident) => ident.fmt(f),
        }
    }
}

/// One `name = value` argument.
struct Arg {
    name: ArgName,
    value: Expr,
}

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let name = match Name::parse_known(input)? {
            Some((name, span)) => ArgName::Known(name, span),
            None => ArgName::Unknown(Ident::parse_any(input)?),
        };
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

/// Parses the list and hands each argument that `which` takes to `take`,
/// reporting the others and the names given twice.
fn parse_list(
    which: Macro,
    tokens: TokenStream,
    cx: &Ctxt,
    mut take: impl FnMut(Name, Span, &Expr),
) {
    let parser = Punctuated::<Arg, Token![,]>::parse_terminated;
    let args = match syn::parse::Parser::parse2(parser, tokens) {
        Ok(args) => args,
        Err(err) => return cx.syn_error(err),
    };
    let mut seen: Vec<String> = Vec::new();
    for Arg { name, value } in args {
        let written = name.to_string();
        if seen.contains(&written) {
            cx.error_at(name.span(), format!("`{written}` is given twice; keep one"));
            continue;
        }
        seen.push(written);
        match name {
            ArgName::Known(known, span) if which.accepted().contains(&known) => {
                take(known, span, &value)
            }
            other => cx.error_at(other.span(), which.rejection(&other)),
        }
    }
}

/// The arguments of one macro: [`CacheArgs`] or [`InvalidateArgs`].
pub(crate) trait MacroArgs: Default {
    /// The macro they are the arguments of.
    const MACRO: Macro;

    /// The arguments both macros take.
    fn common(&self) -> &CommonArgs;

    /// Takes one argument that [`Self::MACRO`] accepts.
    fn take(&mut self, name: Name, span: Span, value: &Expr, cx: &Ctxt);

    /// Parses the attribute's arguments, reporting every problem into `cx`.
    fn parse(tokens: TokenStream, cx: &Ctxt) -> Self {
        let mut args = Self::default();
        parse_list(Self::MACRO, tokens, cx, |name, span, value| {
            args.take(name, span, value, cx)
        });
        args.common().check(cx);
        args
    }
}

/// What both macros take: where the key comes from, the further keys and
/// patterns, the cache, and the path of the runtime crate.
#[derive(Default)]
pub(crate) struct CommonArgs {
    pub key_prefix: Option<LitStr>,
    pub resource_id: Option<LitStr>,
    pub key: Option<LitStr>,
    pub extra: Vec<LitStr>,
    pub patterns: Vec<LitStr>,
    /// `tags = [...]`: on `#[cache]` the tags its entries carry, on
    /// `#[invalidate]` the tags it invalidates (templates, as keys).
    pub tags: Vec<LitStr>,
    pub cache: Option<LitStr>,
    /// `crate = "path"`: where to find cacheside when it is re-exported.
    pub krate: Option<syn::Path>,
}

impl CommonArgs {
    /// Takes `name` if it is common to both macros; `false` if it is not.
    fn take(&mut self, name: Name, value: &Expr, cx: &Ctxt) -> bool {
        match name {
            Name::KeyPrefix => self.key_prefix = lit_str(cx, name, value),
            Name::ResourceId => self.resource_id = lit_str(cx, name, value),
            Name::Key => self.key = lit_str(cx, name, value),
            Name::Cache => self.cache = lit_str(cx, name, value),
            Name::Crate => self.krate = crate_path(cx, value),
            Name::Extra => self.extra = lit_strs(cx, name, value),
            Name::Patterns => self.patterns = lit_strs(cx, name, value),
            Name::Tags => self.tags = lit_strs(cx, name, value),
            _ => return false,
        }
        true
    }

    /// What no single argument shows: conflicting key arguments, an empty cache name.
    fn check(&self, cx: &Ctxt) {
        if let (Some(key), Some(_)) = (&self.key, &self.key_prefix) {
            cx.error_spanned_by(
                key,
                "give either `key` (the whole template) or `key_prefix`, not both",
            );
        }
        if let (Some(key), Some(_)) = (&self.key, &self.resource_id) {
            cx.error_spanned_by(
                key,
                "give either `key` (the whole template) or `resource_id`, not both",
            );
        }
        if let Some(cache) = &self.cache {
            if cache.value().is_empty() {
                cx.error_spanned_by(
                    cache,
                    "`cache` names a cache registered with cacheside::register; it cannot be empty",
                );
            }
        }
    }
}

/// The arguments of `#[cache(…)]`.
pub(crate) struct CacheArgs {
    pub common: CommonArgs,
    /// `expire = N` seconds; `None`: the cache's default; `Some(0)`: not cached.
    pub expire: Option<u64>,
    /// `version = N`: mixed into the fingerprint of every entry (0: none).
    pub version: u32,
    pub cache_none: bool,
    /// `companion = true/false`; `None`: generated for free functions and
    /// for methods with a visibility (`pub`, `pub(crate)`), not for private
    /// methods, which a trait impl's are (a trait impl cannot hold an item
    /// of its own).
    pub companion: Option<bool>,
    /// `shared = true`: the response is the same for every caller (silences the credentials warning).
    pub shared: bool,
    /// `handler = false`: not an axum handler, whatever its parameters are
    /// called (no request method parameter added); `true`: one, whatever
    /// they are called. `None`: read from the signature (`type_names::axum_handler`).
    pub handler: Option<bool>,
    /// `local = false`: values are not kept decoded in this process's local tier.
    pub local: bool,
    /// `local_ttl = N` seconds: caps how long the local tier keeps this function's values.
    pub local_ttl: Option<u64>,
    /// `fail_safe_max = N` seconds: keep entries N s past `expire` and serve
    /// them when the body fails (`Some(0)`: off, whatever the cache's default).
    pub fail_safe_max: Option<u64>,
    /// `fail_safe_throttle = N` seconds: how long a fallback value counts as fresh.
    pub fail_safe_throttle: Option<u64>,
    /// `jitter = 0.1`: each stored entry lives `expire × (1 ± 0.1)`.
    pub jitter: Option<f64>,
    /// `expire_with = path::to::fn`: `fn(&T) -> Duration` gives the TTL from the value.
    pub expire_with: Option<syn::Path>,
    /// `refresh_after = 0.8`: a hit past 80 % of the TTL refreshes in the background.
    pub refresh_after: Option<f64>,
    /// `early_expiry_beta = 1.0`: XFetch's β.
    pub early_expiry_beta: Option<f64>,
    /// `soft_timeout_ms = N`: a miss with a stale fallback waits at most N ms for the body.
    pub soft_timeout_ms: Option<u64>,
    /// `hard_timeout_ms = N`: bounds a body running in the background.
    pub hard_timeout_ms: Option<u64>,
    /// `lease_ms = N`: single-flight across processes with an N ms lease (0: off).
    pub lease_ms: Option<u64>,
    /// Where `extra` / `patterns` were written, in order: they need a
    /// method-aware handler, which only the signature tells.
    pub invalidation_args: Vec<(Name, Span)>,
}

impl Default for CacheArgs {
    fn default() -> Self {
        CacheArgs {
            common: CommonArgs::default(),
            expire: None,
            version: 0,
            cache_none: false,
            companion: None,
            shared: false,
            handler: None,
            local: true,
            local_ttl: None,
            fail_safe_max: None,
            fail_safe_throttle: None,
            jitter: None,
            expire_with: None,
            refresh_after: None,
            early_expiry_beta: None,
            soft_timeout_ms: None,
            hard_timeout_ms: None,
            lease_ms: None,
            invalidation_args: Vec::new(),
        }
    }
}

impl MacroArgs for CacheArgs {
    const MACRO: Macro = Macro::Cache;

    fn common(&self) -> &CommonArgs {
        &self.common
    }

    fn take(&mut self, name: Name, span: Span, value: &Expr, cx: &Ctxt) {
        if matches!(name, Name::Extra | Name::Patterns) {
            self.invalidation_args.push((name, span));
        }
        if self.common.take(name, value, cx) {
            return;
        }
        match name {
            Name::Expire => self.expire = expire(cx, value),
            Name::Version => self.version = version(cx, value).unwrap_or(0),
            Name::CacheNone => self.cache_none = lit_bool(cx, name, value).unwrap_or(false),
            Name::Companion => self.companion = lit_bool(cx, name, value),
            Name::Shared => self.shared = lit_bool(cx, name, value).unwrap_or(false),
            Name::Handler => self.handler = lit_bool(cx, name, value),
            Name::Local => self.local = lit_bool(cx, name, value).unwrap_or(true),
            Name::LocalTtl => self.local_ttl = local_ttl(cx, value),
            Name::FailSafeMax => {
                self.fail_safe_max = whole_number(
                    cx,
                    name,
                    value,
                    "u64 seconds",
                    "`fail_safe_max` takes a whole number of seconds, e.g. fail_safe_max = 3600 (how long past `expire` an entry is kept to fall back on; 0 turns fail-safe off)",
                )
            }
            Name::FailSafeThrottle => {
                self.fail_safe_throttle = whole_number(
                    cx,
                    name,
                    value,
                    "u64 seconds",
                    "`fail_safe_throttle` takes a whole number of seconds, e.g. fail_safe_throttle = 30 (how long a fallback value is served before the body is tried again)",
                )
                .filter(|&secs| {
                    if secs == 0 {
                        cx.error_spanned_by(value, "`fail_safe_throttle = 0` would run a failing body on every call: give at least 1 second");
                    }
                    secs > 0
                })
            }
            Name::Jitter => self.jitter = jitter(cx, value),
            Name::RefreshAfter => {
                self.refresh_after = fraction(
                    cx,
                    value,
                    |f| f > 0.0 && f < 1.0,
                    "`refresh_after` takes a fraction of the TTL between 0 and 1, e.g. refresh_after = 0.8 (the first hit after 80 % of the TTL refreshes the entry in the background)",
                )
            }
            Name::EarlyExpiryBeta => {
                self.early_expiry_beta = fraction(
                    cx,
                    value,
                    |f| f > 0.0 && f.is_finite(),
                    "`early_expiry_beta` takes a number above 0, e.g. early_expiry_beta = 1.0 (XFetch: higher refreshes earlier)",
                )
            }
            Name::LeaseMs => {
                self.lease_ms = whole_number(
                    cx,
                    name,
                    value,
                    "u64 milliseconds",
                    "`lease_ms` takes a whole number of milliseconds, e.g. lease_ms = 5000 (single-flight across processes; longer than the body takes; 0 turns a cache-wide default off)",
                )
            }
            Name::SoftTimeoutMs | Name::HardTimeoutMs => {
                let ms = whole_number::<u64>(
                    cx,
                    name,
                    value,
                    "u64 milliseconds",
                    &format!("`{name}` takes a whole number of milliseconds, e.g. {name} = 100"),
                )
                .filter(|&ms| {
                    if ms == 0 {
                        cx.error_spanned_by(value, format!("`{name} = 0` would never wait: give at least 1 ms"));
                    }
                    ms > 0
                });
                match name {
                    Name::SoftTimeoutMs => self.soft_timeout_ms = ms,
                    _ => self.hard_timeout_ms = ms,
                }
            }
            Name::ExpireWith => self.expire_with = expire_with(cx, value),
            other => unreachable!("{} does not take `{other}`", Self::MACRO),
        }
    }
}

/// A float literal (or an integer one) that `ok` accepts, else `how`.
fn fraction(cx: &Ctxt, value: &Expr, ok: impl Fn(f64) -> bool, how: &str) -> Option<f64> {
    let parsed = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Float(f), ..
        }) => f.base10_parse::<f64>().ok(),
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i.base10_parse::<u32>().ok().map(f64::from),
        _ => None,
    };
    match parsed {
        Some(f) if ok(f) => Some(f),
        _ => {
            cx.error_spanned_by(value, how);
            None
        }
    }
}

/// `jitter = 0.1`: a fraction in `[0, 1]`.
fn jitter(cx: &Ctxt, value: &Expr) -> Option<f64> {
    fraction(
        cx,
        value,
        |f| (0.0..=1.0).contains(&f),
        "`jitter` takes a fraction from 0 to 1, e.g. jitter = 0.1 (each entry lives expire × (1 ± 0.1))",
    )
}

/// `expire_with = path::to::fn` (a path, bare or in a string).
fn expire_with(cx: &Ctxt, value: &Expr) -> Option<syn::Path> {
    const HOW: &str = "`expire_with` names a function `fn(&T) -> std::time::Duration` that gives the TTL from the cached value, e.g. expire_with = price_ttl";
    match value {
        Expr::Path(p) if p.qself.is_none() => Some(p.path.clone()),
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => match s.parse::<syn::Path>() {
            Ok(path) => Some(path),
            Err(_) => {
                cx.error_spanned_by(value, HOW);
                None
            }
        },
        other => {
            cx.error_spanned_by(other, HOW);
            None
        }
    }
}

/// The arguments of `#[invalidate(…)]`.
#[derive(Default)]
pub(crate) struct InvalidateArgs {
    pub common: CommonArgs,
    /// `before = true`: delete before the body runs too.
    pub before: bool,
}

impl MacroArgs for InvalidateArgs {
    const MACRO: Macro = Macro::Invalidate;

    fn common(&self) -> &CommonArgs {
        &self.common
    }

    fn take(&mut self, name: Name, _: Span, value: &Expr, cx: &Ctxt) {
        if self.common.take(name, value, cx) {
            return;
        }
        match name {
            Name::Before => self.before = lit_bool(cx, name, value).unwrap_or(false),
            other => unreachable!("{} does not take `{other}`", Self::MACRO),
        }
    }
}

fn lit_str(cx: &Ctxt, name: Name, value: &Expr) -> Option<LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Some(s.clone()),
        other => {
            cx.error_spanned_by(
                other,
                format!("`{name}` takes a string literal, e.g. {name} = \"…\""),
            );
            None
        }
    }
}

fn lit_bool(cx: &Ctxt, name: Name, value: &Expr) -> Option<bool> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(b), ..
        }) => Some(b.value),
        other => {
            cx.error_spanned_by(other, format!("`{name}` takes `true` or `false`"));
            None
        }
    }
}

fn lit_strs(cx: &Ctxt, name: Name, value: &Expr) -> Vec<LitStr> {
    match value {
        Expr::Array(arr) => arr
            .elems
            .iter()
            .filter_map(|e| lit_str(cx, name, e))
            .collect(),
        other => {
            cx.error_spanned_by(
                other,
                format!(
                    "`{name}` takes a list of string literals, e.g. {name} = [\"widgets:count\"]"
                ),
            );
            Vec::new()
        }
    }
}

fn crate_path(cx: &Ctxt, value: &Expr) -> Option<syn::Path> {
    let path = lit_str(cx, Name::Crate, value)?;
    match path.parse::<syn::Path>() {
        Ok(p) => Some(p),
        Err(_) => {
            cx.error_spanned_by(
                &path,
                "`crate` takes a path, e.g. crate = \"::my_reexport::cacheside\"",
            );
            None
        }
    }
}

fn expire(cx: &Ctxt, value: &Expr) -> Option<u64> {
    if matches!(value, Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_))) {
        cx.error_spanned_by(
            value,
            "`expire` cannot be negative: give seconds (e.g. 600), or 0 to turn caching off for this function",
        );
        return None;
    }
    whole_number(
        cx,
        Name::Expire,
        value,
        "u64 seconds",
        "`expire` takes a whole number of seconds, e.g. expire = 600 (0 turns caching off)",
    )
}

fn local_ttl(cx: &Ctxt, value: &Expr) -> Option<u64> {
    let secs = whole_number(
        cx,
        Name::LocalTtl,
        value,
        "u64 seconds",
        "`local_ttl` takes a whole number of seconds, e.g. local_ttl = 5 (local = false keeps values out of the local tier)",
    )?;
    if secs == 0 {
        cx.error_spanned_by(
            value,
            "`local_ttl = 0` would keep nothing: write `local = false` to keep this function's values out of the local tier",
        );
        return None;
    }
    Some(secs)
}

fn version(cx: &Ctxt, value: &Expr) -> Option<u32> {
    whole_number(
        cx,
        Name::Version,
        value,
        "u32",
        "`version` takes a whole number, e.g. version = 2 (bump it when the cached type changes in a way cacheside cannot trace)",
    )
}

/// An integer literal that fits in `N` (`range` names it in the message);
/// `otherwise` is the message for any other value.
fn whole_number<N>(cx: &Ctxt, name: Name, value: &Expr, range: &str, otherwise: &str) -> Option<N>
where
    N: std::str::FromStr,
    N::Err: fmt::Display,
{
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => match i.base10_parse::<N>() {
            Ok(n) => Some(n),
            Err(e) => {
                cx.error_at(i.span(), format!("`{name}` must fit in {range}: {e}"));
                None
            }
        },
        other => {
            cx.error_spanned_by(other, otherwise);
            None
        }
    }
}

#[cfg(test)]
mod tests;
