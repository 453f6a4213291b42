//! Everything the macros recognise by the *names* written in a signature.
//!
//! A proc macro sees tokens, not types: it cannot ask whether a type is
//! axum's `Json`, a `Result` or a `Method`. Wherever the type system can
//! decide in the generated code, it does, and nothing here repeats it: the
//! runtime's autoref `Probe` (`cache-core/src/runtime.rs`) picks "an
//! `Outcome`" (`Result`, `Option`, their aliases) vs "cached whole", and
//! `Result::is_ok` vs "always succeeded" for invalidation. What is left has no
//! type-level equivalent, and lives in this one module:
//! - the axum outcome shapes `Json<T>`, `Result<Json<T>, E>` and
//!   `(StatusCode, Json<T>)`: neither `Outcome` nor `Json` is cacheside's, so
//!   no impl can make the probe see them; the runtime has a wrapper for each;
//! - the stored type that the companion names in `Entry<T>`: a type position,
//!   where no probe runs. The wrapper's type-based choice is compared with it
//!   (`same_stored`), so a wrong guess (behind an alias) is a compile error
//!   that says what to do;
//! - `cache_none` on a written `Result`: the runtime's `OptionLike` bound
//!   rejects it too, but only after expansion; this reports it with the other
//!   argument errors;
//! - which parameter carries the request method (`Method`, `Request`);
//! - parameters that look like caller credentials (a heuristic on the
//!   spelling of their type, for a warning only).

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::{GenericArgument, Pat, PathArguments, Type};

use crate::signature::Params;

/// A return type as its written name classifies it.
pub(crate) enum Written<'a> {
    /// axum `Json<T>`: holds `T`.
    Json(&'a Type),
    /// `Result<Json<T>, E>`: holds `T` and `E`.
    JsonResult(&'a Type, &'a Type),
    /// `(StatusCode, Json<T>)`: holds `T`.
    StatusJson(&'a Type),
    /// Any other `Result<T, …>`: holds `T` (`None` for `Result<>`).
    Result(Option<&'a Type>),
    /// `Option<T>`: holds `T` (`None` for `Option<>`).
    Option(Option<&'a Type>),
    Other,
}

pub(crate) fn written(ret: &Type) -> Written<'_> {
    if let Some(inner) = json_inner(ret) {
        return Written::Json(inner);
    }
    if let Type::Tuple(t) = ret {
        let status_first = t.elems.len() == 2
            && matches!(&t.elems[0], Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "StatusCode"));
        if let (true, Some(inner)) = (status_first, t.elems.iter().nth(1).and_then(json_inner)) {
            return Written::StatusJson(inner);
        }
    }
    if let Some(targs) = last_segment_args(ret, "Result") {
        if let (Some(ok), Some(err)) = (targs.first().and_then(|t| json_inner(t)), targs.get(1)) {
            return Written::JsonResult(ok, err);
        }
        return Written::Result(targs.first().copied());
    }
    if let Some(targs) = last_segment_args(ret, "Option") {
        return Written::Option(targs.first().copied());
    }
    Written::Other
}

/// `Json<T>` → `T`.
fn json_inner(ty: &Type) -> Option<&Type> {
    last_segment_args(ty, "Json")?.first().copied()
}

/// The type arguments of `…::name<…>`.
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

/// The expression giving the request method, when the handler takes a
/// `Method` (`method: Method`) or the whole request (`req: Request`).
pub(crate) fn method_param(params: &Params) -> Option<TokenStream> {
    params.typed().find_map(|(_, pt)| {
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

/// The credential marker that the spelling of `ty` contains, if any.
pub(crate) fn credential_marker(ty: &Type) -> Option<&'static str> {
    let ty = ty.to_token_stream().to_string();
    CREDENTIAL_MARKERS.iter().find(|m| ty.contains(*m)).copied()
}
