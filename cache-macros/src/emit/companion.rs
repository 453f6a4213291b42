//! The typed companion `{fn}_cache_entry(…)`: the entry of the same key,
//! from the values the key reads, as an `Entry<T>` (`key()`,
//! `invalidate()`, `get()`, `set()`).
//!
//! It takes plain values, not the extractors that carry them: for
//! `Path(id): Path<u64>` it takes `id: u64` (newtype patterns and tuples are
//! unwrapped along their types), and for a field placeholder `{q.page}` the
//! field's value, as any `Display` (the key holds its text). A parameter
//! whose bindings cannot be unwrapped so (a struct pattern, say) is taken
//! as written.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote, ToTokens};
use syn::{GenericArgument, Pat, PathArguments, Type};

use super::here::Here;
use super::names::{self, COMPANION_SUFFIX};
use super::CachedFn;
use crate::args::Macro;
use crate::template::Placeholder;

/// The companion function of one `#[cache]` function.
pub(crate) struct Companion<'a>(pub &'a CachedFn<'a>);

/// The companion's parameters, and the names its field placeholders read.
struct Params {
    params: Vec<TokenStream>,
    /// `(written placeholder, parameter)` for each field placeholder taken
    /// as its own value.
    fields: Vec<(String, Ident)>,
}

impl Params {
    fn of(cached: &CachedFn<'_>) -> Self {
        let reads = cached.key.reads();
        let whole: Vec<&str> = reads
            .iter()
            .filter(|r| r.fields.is_empty())
            .map(|r| r.root.as_str())
            .collect();
        let mut field_reads: Vec<&Placeholder> = Vec::new();
        for r in reads.iter().filter(|r| !r.fields.is_empty()) {
            if !whole.contains(&r.root.as_str())
                && !field_reads.iter().any(|f| f.written() == r.written())
            {
                field_reads.push(r);
            }
        }
        let bindings = cached.params.bindings();
        let mut params = Vec::new();
        let mut fields = Vec::new();
        let mut taken: Vec<String> = whole.iter().map(|w| (*w).to_owned()).collect();
        for (index, pt) in cached.params.typed() {
            let mine: Vec<&str> = bindings
                .iter()
                .filter(|b| b.param == index)
                .map(|b| b.name.as_str())
                .collect();
            let mut wanted: Vec<&str> =
                mine.iter().copied().filter(|m| whole.contains(m)).collect();
            wanted.dedup();
            if !wanted.is_empty() {
                let plain: Option<Vec<(Ident, Type)>> = wanted
                    .iter()
                    .map(|w| unwrap_binding(&pt.pat, &pt.ty, w))
                    .collect();
                match plain {
                    Some(plain) => {
                        params.extend(plain.into_iter().map(|(id, ty)| quote!(#id: #ty)))
                    }
                    None => params.push(pt.to_token_stream()),
                }
            }
            for f in field_reads
                .iter()
                .filter(|f| mine.contains(&f.root.as_str()))
            {
                let name = field_param_name(f, &field_reads, &taken);
                taken.push(name.to_string());
                params.push(quote!(#name: impl ::core::fmt::Display));
                fields.push((f.written(), name));
            }
        }
        Params { params, fields }
    }
}

/// `id` of `Path(id): Path<u64>` as `(id, u64)`: through newtype patterns
/// over one type argument, tuples and parentheses.
fn unwrap_binding(pat: &Pat, ty: &Type, name: &str) -> Option<(Ident, Type)> {
    let ty = match ty {
        Type::Group(g) => &*g.elem,
        Type::Paren(p) => &*p.elem,
        ty => ty,
    };
    match pat {
        Pat::Ident(p) if p.subpat.is_none() => {
            (p.ident == name).then(|| (p.ident.clone(), ty.clone()))
        }
        Pat::Paren(p) => unwrap_binding(&p.pat, ty, name),
        Pat::TupleStruct(ts) if ts.elems.len() == 1 => {
            let Type::Path(tp) = ty else { return None };
            let PathArguments::AngleBracketed(ab) = &tp.path.segments.last()?.arguments else {
                return None;
            };
            let mut types = ab.args.iter().filter_map(|a| match a {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            });
            let (Some(inner), None) = (types.next(), types.next()) else {
                return None;
            };
            unwrap_binding(&ts.elems[0], inner, name)
        }
        Pat::Tuple(t) => {
            let Type::Tuple(tt) = ty else { return None };
            if t.elems.len() != tt.elems.len() {
                return None;
            }
            t.elems
                .iter()
                .zip(&tt.elems)
                .find_map(|(p, ty)| unwrap_binding(p, ty, name))
        }
        _ => None,
    }
}

/// `page` for `{q.page}`, or `q_page` when that name is taken (by a
/// binding, another field placeholder's last field) or not an identifier.
fn field_param_name(f: &Placeholder, all: &[&Placeholder], taken: &[String]) -> Ident {
    let last = f.fields.last().map(String::as_str).unwrap_or_default();
    let shared = all
        .iter()
        .filter(|o| o.fields.last().map(String::as_str) == Some(last))
        .count()
        > 1;
    let is_ident = syn::parse_str::<Ident>(last).is_ok_and(|id| id == last);
    if is_ident && !shared && !taken.iter().any(|t| t == last) {
        return format_ident!("{}", last);
    }
    let joined = std::iter::once(f.root.as_str())
        .chain(f.fields.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("_");
    format_ident!("{}", joined)
}

impl ToTokens for Companion<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let cached = self.0;
        let (item, rt, outcome) = (cached.item, cached.rt, &cached.outcome);
        let name = format_ident!("{}{}", item.sig.ident, COMPANION_SUFFIX);
        let Params { params, fields } = Params::of(cached);
        let key = cached.key.remapped(&|ph: &Placeholder| {
            let written = ph.written();
            fields
                .iter()
                .find(|(w, _)| *w == written)
                .map(|(_, id)| id.to_token_stream())
        });
        let generics = &item.sig.generics;
        let where_clause = &generics.where_clause;
        let doc = format!(
            "Typed handle on the cache entry of `{}` for these key values: its key, \
             `invalidate()`, `get()` and `set()`. Generated by `{}`.",
            item.sig.ident,
            Macro::Cache,
        );
        let vis = &item.vis;
        let stored = &outcome.stored;
        let same_stored = outcome.same_stored(rt);
        let (spec, here, instance) = (&cached.spec, Here::InCompanion, &cached.instance);
        let (entry, entry_new) = (rt.entry(), rt.entry_new());
        let (local_instance, spec_static) = (names::instance(), names::spec());
        // A trait impl holds no item of its own, and its methods are
        // written without `pub`: rustc's "is not a member of trait" error
        // about the companion then comes with a second one whose name is
        // the fix. (Harmless elsewhere: a hidden, empty function, named in
        // snake case so that no naming lint needs allowing.)
        let hint = matches!(vis, syn::Visibility::Inherited).then(|| {
            let hint = format_ident!(
                "{}{}_cannot_be_in_a_trait_impl_set_companion_false",
                item.sig.ident,
                COMPANION_SUFFIX
            );
            quote! {
                /// Names the fix when this companion lands in a trait impl.
                #[doc(hidden)]
                #[allow(dead_code)]
                fn #hint() {}
            }
        });
        tokens.extend(quote! {
            #hint
            #[doc = #doc]
            #[allow(dead_code, clippy::needless_lifetimes)]
            #vis fn #name #generics (#(#params),*) -> #entry<#stored> #where_clause {
                #same_stored
                #spec
                #here
                #instance
                let #local_instance = #local_instance.unwrap_or(::core::option::Option::Some("uncached: generic impl"));
                #entry_new(&#spec_static, #key, #local_instance)
            }
        });
    }
}
