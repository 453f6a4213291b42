//! What both macros read from the annotated function's signature: the
//! bindings its parameters introduce (one pattern walk serves the key
//! templates and the companion's parameters), the receiver, whether it is
//! `async`, and whether it returns an `impl Trait`.

use proc_macro2::TokenTree;
use quote::ToTokens;
use syn::{FnArg, Pat, PatIdent, PatType, ReturnType, Signature, Type};

use crate::args::Macro;
use crate::ctxt::Ctxt;

/// A name a parameter pattern binds, and the parameter it comes from.
pub(crate) struct Binding {
    pub name: String,
    /// Index into `sig.inputs`.
    pub param: usize,
}

/// The parameters of the annotated function.
pub(crate) struct Params {
    bindings: Vec<Binding>,
    /// The typed (non-receiver) parameters with their index into
    /// `sig.inputs`, as the companion takes them: without attributes, and
    /// without `mut` on their bindings (the companion only reads them).
    typed: Vec<(usize, PatType)>,
    /// Whether the first parameter is `self` in some form.
    pub receiver: bool,
}

impl Params {
    pub(crate) fn of(sig: &Signature) -> Self {
        let mut bindings = Vec::new();
        let mut typed = Vec::new();
        for (param, arg) in sig.inputs.iter().enumerate() {
            let FnArg::Typed(pt) = arg else { continue };
            let mut pt = pt.clone();
            pt.attrs.clear();
            for_each_binding(&mut pt.pat, &mut |id| {
                bindings.push(Binding {
                    name: id.ident.to_string(),
                    param,
                });
                id.mutability = None;
            });
            typed.push((param, pt));
        }
        Params {
            bindings,
            typed,
            receiver: matches!(sig.inputs.first(), Some(FnArg::Receiver(_))),
        }
    }

    /// Every binding, in the order the parameters introduce them.
    pub(crate) fn bindings(&self) -> &[Binding] {
        &self.bindings
    }

    pub(crate) fn find(&self, name: &str) -> Option<&Binding> {
        self.bindings.iter().find(|b| b.name == name)
    }

    /// The binding names, for messages.
    pub(crate) fn names(&self) -> String {
        let names: Vec<&str> = self.bindings.iter().map(|b| b.name.as_str()).collect();
        if names.is_empty() {
            "(the function has no parameters)".into()
        } else {
            names.join(", ")
        }
    }

    /// The typed parameters (see the field), in order.
    pub(crate) fn typed(&self) -> impl Iterator<Item = (usize, &PatType)> {
        self.typed.iter().map(|(i, pt)| (*i, pt))
    }
}

/// Calls `f` on every binding of `pat`, in source order: `x`, `mut x`,
/// `ref x`, and both sides of `x @ subpattern`.
fn for_each_binding(pat: &mut Pat, f: &mut impl FnMut(&mut PatIdent)) {
    match pat {
        Pat::Ident(p) => {
            f(p);
            if let Some((_, sub)) = &mut p.subpat {
                for_each_binding(sub, f);
            }
        }
        Pat::TupleStruct(p) => p.elems.iter_mut().for_each(|e| for_each_binding(e, f)),
        Pat::Tuple(p) => p.elems.iter_mut().for_each(|e| for_each_binding(e, f)),
        Pat::Struct(p) => p
            .fields
            .iter_mut()
            .for_each(|fp| for_each_binding(&mut fp.pat, f)),
        Pat::Reference(p) => for_each_binding(&mut p.pat, f),
        Pat::Type(p) => for_each_binding(&mut p.pat, f),
        Pat::Paren(p) => for_each_binding(&mut p.pat, f),
        Pat::Slice(p) => p.elems.iter_mut().for_each(|e| for_each_binding(e, f)),
        _ => {}
    }
}

/// Whether the function returns an `impl Trait` (written at the top level
/// of the return type, as in `impl IntoResponse` or `Vec<impl Display>`):
/// such a type cannot be named in the generated code.
pub(crate) fn returns_impl_trait(output: &ReturnType) -> bool {
    match output {
        ReturnType::Default => false,
        ReturnType::Type(_, ty) => is_impl_trait(ty),
    }
}

fn is_impl_trait(ty: &Type) -> bool {
    ty.to_token_stream()
        .into_iter()
        .any(|t| matches!(&t, TokenTree::Ident(i) if i == "impl"))
}

/// Both macros wrap the body in an `async move` block: the function must be async.
pub(crate) fn check_async(sig: &Signature, which: Macro, cx: &Ctxt) {
    if sig.asyncness.is_none() {
        cx.error_spanned_by(
            sig.fn_token,
            format!("{which} works on `async fn` only: make the function async (its callers then `.await` it)"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_walk_finds_every_binding_and_strips_mut_for_the_companion() {
        let sig: Signature = syn::parse_quote! {
            fn f(&self, (a, mut b): (u8, u8), Path(id): Path<u64>, w @ (mut v, _): (u8, u8), _: u8)
        };
        let params = Params::of(&sig);
        let names: Vec<&str> = params.bindings().iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "id", "w", "v"]);
        assert!(params.receiver);
        assert_eq!(
            params.typed().map(|(i, _)| i).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        let companion: Vec<String> = params
            .typed()
            .map(|(_, pt)| pt.to_token_stream().to_string())
            .collect();
        assert_eq!(companion[0], "(a , b) : (u8 , u8)");
        assert_eq!(companion[2], "w @ (v , _) : (u8 , u8)");
    }

    #[test]
    fn impl_trait_is_seen_in_the_return_type() {
        let returns = |sig: Signature| returns_impl_trait(&sig.output);
        assert!(returns(syn::parse_quote!(fn f() -> impl std::fmt::Display)));
        assert!(returns(syn::parse_quote!(fn f() -> Vec<impl Clone>)));
        assert!(!returns(syn::parse_quote!(fn f() -> Result<u8, String>)));
        assert!(!returns(syn::parse_quote!(fn f())));
    }
}
