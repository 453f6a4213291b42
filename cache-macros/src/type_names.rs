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

/// The HTTP response types a handler may return, which `#[cache]` cannot
/// store (neither is `Serialize`); their serde error would point at the type.
const RESPONSES: &[&str] = &[
    "Response",
    "Html",
    "Redirect",
    "Sse",
    "StatusCode",
    "Body",
    "HeaderMap",
];

/// How a return type that is an HTTP response (not data) is written, for
/// the message: `Response`, `Result<(StatusCode, Json<T>), E>`.
pub(crate) fn response_shape(ret: &Type) -> Option<String> {
    let by_name = |ty: &Type| last_ident(ty).is_some_and(|id| RESPONSES.iter().any(|r| id == r));
    let response_elem = |ty: &Type| by_name(ty) || json_inner(ty).is_some();
    let tuple_of_responses =
        |ty: &Type| matches!(ty, Type::Tuple(t) if t.elems.iter().any(response_elem));
    let flagged = if let Some(ok) = last_segment_args(ret, "Result") {
        // `Result<Json<T>, E>` is supported; `Result<(StatusCode, Json<T>), E>` is not.
        ok.first()
            .is_some_and(|ok| by_name(ok) || tuple_of_responses(ok))
    } else if let Some(some) = last_segment_args(ret, "Option") {
        some.first()
            .is_some_and(|t| response_elem(t) || tuple_of_responses(t))
    } else {
        by_name(ret) || (tuple_of_responses(ret) && !matches!(written(ret), Written::StatusJson(_)))
    };
    flagged.then(|| {
        ret.to_token_stream()
            .to_string()
            .replace(" < ", "<")
            .replace("< ", "<")
            .replace(" >", ">")
            .replace(" ,", ",")
            .replace(" :: ", "::")
    })
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

/// axum's extractors, by the last segment of their path: a function taking
/// one of them (or returning an axum outcome) is an axum handler, which may
/// be mounted on any method.
const AXUM_EXTRACTORS: &[&str] = &[
    "Path",
    "Query",
    "Json",
    "Form",
    "State",
    "Extension",
    "ConnectInfo",
    "OriginalUri",
    "MatchedPath",
    "RawQuery",
    "RawForm",
    "NestedPath",
    "TypedHeader",
    "Host",
];

/// Whether the function reads like an axum handler: no receiver, and a
/// parameter typed with an axum extractor or an axum outcome returned.
pub(crate) fn axum_handler(params: &Params, ret: &Written<'_>) -> bool {
    if params.receiver {
        return false;
    }
    matches!(
        ret,
        Written::Json(_) | Written::JsonResult(..) | Written::StatusJson(_)
    ) || params
        .typed()
        .any(|(_, pt)| last_ident(&pt.ty).is_some_and(|id| AXUM_EXTRACTORS.iter().any(|e| id == e)))
}

/// Parameters whose values are left out of the hashed default key: the
/// application's `State` (shared by every request, and seldom `Hash`) and
/// the request `Method` (a GET and the PUT that invalidates it must build
/// one key).
pub(crate) fn left_out_of_hash(ty: &Type) -> bool {
    last_ident(ty).is_some_and(|id| id == "State" || id == "Method")
}

/// Extractors of the request body.
pub(crate) fn request_body(ty: &Type) -> bool {
    last_ident(ty).is_some_and(|id| ["Json", "Form", "RawForm", "Bytes"].iter().any(|b| id == b))
}

fn last_ident(ty: &Type) -> Option<&syn::Ident> {
    let Type::Path(tp) = ty else { return None };
    tp.path.segments.last().map(|s| &s.ident)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_told_from_data() {
        let shape = |t: &str| response_shape(&syn::parse_str::<Type>(t).expect("type"));
        for response in [
            "Response",
            "axum::response::Response",
            "Result<(StatusCode, Json<W>), E>",
            "Result<Response, E>",
            "Option<Json<W>>",
            "(HeaderMap, Json<W>)",
            "Html<String>",
        ] {
            assert!(shape(response).is_some(), "{response}");
        }
        for data in [
            "Json<W>",
            "Result<Json<W>, E>",
            "(StatusCode, Json<W>)",
            "(u32, String)",
            "Result<(u32, String), E>",
            "Option<W>",
            "Vec<u8>",
        ] {
            assert!(shape(data).is_none(), "{data}");
        }
        assert_eq!(
            shape("Result<(StatusCode, Json<W>), E>").as_deref(),
            Some("Result<(StatusCode, Json<W>), E>")
        );
    }
}
