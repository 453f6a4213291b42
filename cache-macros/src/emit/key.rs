//! The cache key expression: from a whole `key` template, from `key_prefix`
//! + `resource_id`, or a prefix plus a stable hash of every argument.
//!
//! Each template (`key`, `key_prefix`, every `extra` and `patterns` entry) is
//! parsed once, into a [`KeyFormat`] whose placeholders are resolved to the
//! parameters they read; what is wrong with it is reported then.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::LitStr;

use super::here;
use super::names;
use super::runtime::Runtime;
use crate::args::CommonArgs;
use crate::ctxt::Ctxt;
use crate::signature::Params;
use crate::template;
use crate::type_names;
use syn::spanned::Spanned;

/// A template as its literal pieces and the key values between them.
pub(crate) struct KeyFormat {
    /// One more than `values` (see `template::Template::literals`).
    literals: Vec<String>,
    /// One statement per placeholder appending its encoded value to [`names::key_out`].
    values: Vec<TokenStream>,
    /// The parameters the placeholders read (indices into `sig.inputs`).
    params: Vec<usize>,
    /// The placeholders, with the span of the template (the companion
    /// rebuilds `values` from them with its own parameters).
    reads: Vec<(template::Placeholder, Span)>,
    rt: Runtime,
}

impl KeyFormat {
    /// Parses `lit` and resolves each placeholder to a parameter binding;
    /// `None` after reporting what is wrong (every unknown placeholder).
    pub(crate) fn resolve(lit: &LitStr, params: &Params, rt: &Runtime, cx: &Ctxt) -> Option<Self> {
        let tpl = match template::parse(lit) {
            Ok(t) => t,
            Err(msg) => {
                cx.error_spanned_by(lit, msg);
                return None;
            }
        };
        let mut parts = Vec::new();
        let mut read = Vec::new();
        let mut ok = true;
        for ph in &tpl.placeholders {
            match params.find(&ph.root) {
                Some(b) => {
                    read.push(b.param);
                    parts.push(push_value(rt, &ph.expr(), lit.span()));
                }
                None => {
                    ok = false;
                    cx.error_spanned_by(
                        lit,
                        format!(
                            "placeholder `{{{}}}` names no parameter of this function; parameters: {}",
                            ph.root,
                            params.names()
                        ),
                    );
                }
            }
        }
        ok.then_some(KeyFormat {
            literals: tpl.literals,
            values: parts,
            params: read,
            reads: tpl
                .placeholders
                .into_iter()
                .map(|p| (p, lit.span()))
                .collect(),
            rt: rt.clone(),
        })
    }

    /// [`KeyFormat::resolve`] on each template, keeping those without errors.
    pub(crate) fn resolve_all(
        lits: &[LitStr],
        params: &Params,
        rt: &Runtime,
        cx: &Ctxt,
    ) -> Vec<Self> {
        lits.iter()
            .filter_map(|lit| KeyFormat::resolve(lit, params, rt, cx))
            .collect()
    }

    /// The same template with each placeholder that `value` maps read from
    /// another expression (the companion's parameters).
    fn remapped(&self, value: &dyn Fn(&template::Placeholder) -> Option<TokenStream>) -> Self {
        KeyFormat {
            literals: self.literals.clone(),
            values: self
                .reads
                .iter()
                .map(|(ph, span)| {
                    push_value(&self.rt, &value(ph).unwrap_or_else(|| ph.expr()), *span)
                })
                .collect(),
            params: self.params.clone(),
            reads: self.reads.clone(),
            rt: self.rt.clone(),
        }
    }

    /// Statements appending the key to [`names::key_out`].
    fn push(&self) -> TokenStream {
        let out = names::key_out();
        let (first, rest) = (&self.literals[0], &self.literals[1..]);
        let values = &self.values;
        let first = (!first.is_empty()).then(|| quote!(#out.push_str(#first);));
        let rest = rest
            .iter()
            .map(|l| (!l.is_empty()).then(|| quote!(#out.push_str(#l);)));
        quote!(#first #(#values #rest)*)
    }

    /// Roughly the length of the key, to allocate it once.
    fn capacity(&self) -> usize {
        self.literals.iter().map(String::len).sum::<usize>() + 16 * self.values.len()
    }
}

/// One value appended, encoded, to [`names::key_out`]: `Display` checked at the
/// value's span, written by the fastest way its type has (`__private::key`).
fn push_value(rt: &Runtime, value: &TokenStream, span: Span) -> TokenStream {
    let (key_value, key_display, out) = (rt.key_value(), rt.key_display(span), names::key_out());
    let value = respan(value.clone(), span);
    let checked = quote_spanned!(span=> #key_display(&#value));
    quote!((&#key_value(#checked)).__cacheside_push(#out);)
}

/// `tokens` with every span set to `span` (so that an error about the value
/// points at the template or `resource_id` that names it).
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            if let proc_macro2::TokenTree::Group(g) = &tt {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                return proc_macro2::TokenTree::Group(group);
            }
            tt.set_span(span);
            tt
        })
        .collect()
}

/// The key as a `String` expression.
impl ToTokens for KeyFormat {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        tokens.extend(string_of(&self.rt, self.capacity(), &self.push()));
    }
}

/// `{ let mut out = String::with_capacity(n); push; out }`.
fn string_of(rt: &Runtime, capacity: usize, push: &TokenStream) -> TokenStream {
    let (out, buffer, imports) = (names::key_out(), names::key_buffer(), rt.key_push_traits());
    quote!({
        #imports
        let mut #buffer = ::std::string::String::with_capacity(#capacity);
        {
            let #out = &mut #buffer;
            #push
        }
        #buffer
    })
}

/// The key of one call, as an expression of type `String`.
pub(crate) struct Key<'a> {
    shape: Shape,
    /// The parameters the key reads (indices into `sig.inputs`, maybe repeated).
    params: Vec<usize>,
    rt: &'a Runtime,
}

enum Shape {
    /// `key = "…"`: the whole template.
    Template(KeyFormat),
    /// `resource_id = "id"`, after `key_prefix` or the function's path.
    Resource {
        prefix: Option<KeyFormat>,
        id: TokenStream,
        /// The binding `resource_id` names.
        name: String,
    },
    /// No resource id: the prefix (or the function's path) and a hash of
    /// every argument but `self`, `State` and `Method`; each with the span
    /// of its parameter's type (a type that is not `Hash` is reported there).
    Hashed {
        prefix: Option<KeyFormat>,
        args: Vec<(Ident, Span)>,
    },
}

impl<'a> Key<'a> {
    /// The key the arguments describe; `None` after reporting what is wrong.
    pub(crate) fn resolve(
        args: &CommonArgs,
        params: &Params,
        rt: &'a Runtime,
        cx: &Ctxt,
    ) -> Option<Self> {
        if let Some(key) = &args.key {
            let key = KeyFormat::resolve(key, params, rt, cx)?;
            return Some(Key {
                params: key.params.clone(),
                shape: Shape::Template(key),
                rt,
            });
        }
        let prefix = match &args.key_prefix {
            Some(p) => Some(KeyFormat::resolve(p, params, rt, cx)?),
            None => None,
        };
        if let Some(rid) = &args.resource_id {
            let name = rid.value();
            let Some(b) = params.find(&name) else {
                cx.error_spanned_by(
                    rid,
                    format!(
                        "`resource_id = \"{name}\"` names no parameter of this function; parameters: {}",
                        params.names()
                    ),
                );
                return None;
            };
            let mut read = prefix.as_ref().map_or_else(Vec::new, |p| p.params.clone());
            read.push(b.param);
            let id = format_ident!("{}", name);
            return Some(Key {
                shape: Shape::Resource {
                    prefix,
                    id: push_value(rt, &quote!(#id), rid.span()),
                    name,
                },
                params: read,
                rt,
            });
        }
        // `State` and `Method` are left out (`type_names::left_out_of_hash`).
        let hashed: Vec<(usize, Span)> = params
            .typed()
            .filter(|(_, pt)| !type_names::left_out_of_hash(&pt.ty))
            .map(|(i, pt)| (i, pt.ty.span()))
            .collect();
        let args = params
            .bindings()
            .iter()
            .filter_map(|b| {
                let (_, span) = hashed.iter().find(|(i, _)| *i == b.param)?;
                // The binding spanned at its type: a type that is not `Hash` is reported there.
                Some((format_ident!("{}", b.name, span = *span), *span))
            })
            .collect();
        Some(Key {
            shape: Shape::Hashed { prefix, args },
            params: hashed.iter().map(|(i, _)| *i).collect(),
            rt,
        })
    }

    /// The parameters the key reads (indices into `sig.inputs`, maybe repeated).
    pub(crate) fn params(&self) -> &[usize] {
        &self.params
    }

    /// What the key reads, in order: each placeholder, the `resource_id`
    /// binding, the hashed bindings (the last two without fields).
    pub(crate) fn reads(&self) -> Vec<template::Placeholder> {
        let whole = |name: &str| template::Placeholder {
            root: name.to_owned(),
            fields: Vec::new(),
        };
        let of = |k: &Option<KeyFormat>| {
            k.iter()
                .flat_map(|k| k.reads.iter().map(|(p, _)| p.clone()))
                .collect::<Vec<_>>()
        };
        match &self.shape {
            Shape::Template(k) => k.reads.iter().map(|(p, _)| p.clone()).collect(),
            Shape::Resource { prefix, name, .. } => {
                let mut reads = of(prefix);
                reads.push(whole(name));
                reads
            }
            Shape::Hashed { prefix, args } => {
                let mut reads = of(prefix);
                reads.extend(args.iter().map(|(a, _)| whole(&a.to_string())));
                reads
            }
        }
    }

    /// The same key with the placeholders that `value` maps read from
    /// other expressions (the companion's parameters).
    pub(crate) fn remapped(
        &self,
        value: &dyn Fn(&template::Placeholder) -> Option<TokenStream>,
    ) -> Key<'a> {
        let remap = |k: &Option<KeyFormat>| k.as_ref().map(|k| k.remapped(value));
        let shape = match &self.shape {
            Shape::Template(k) => Shape::Template(k.remapped(value)),
            Shape::Resource { prefix, id, name } => Shape::Resource {
                prefix: remap(prefix),
                id: id.clone(),
                name: name.clone(),
            },
            Shape::Hashed { prefix, args } => Shape::Hashed {
                prefix: remap(prefix),
                args: args.clone(),
            },
        };
        Key {
            shape,
            params: self.params.clone(),
            rt: self.rt,
        }
    }
}

impl Key<'_> {
    /// Statements appending the key to [`names::key_out`].
    fn push(&self) -> TokenStream {
        let out = names::key_out();
        match &self.shape {
            Shape::Template(key) => key.push(),
            Shape::Resource {
                prefix: Some(prefix),
                id,
                ..
            } => {
                let prefix = prefix.push();
                quote!(#prefix #out.push(':'); #id)
            }
            // No prefix: `crate::module::Type::function:{id}`, unique like the
            // hashed default (a bare function name would collide between
            // modules, a module path between impl blocks).
            Shape::Resource {
                prefix: None, id, ..
            } => {
                let path = here::fn_path(self.rt);
                quote!(#out.push_str(#path); #out.push(':'); #id)
            }
            Shape::Hashed { prefix, args } => {
                let prefix = match prefix {
                    Some(prefix) => prefix.push(),
                    None => {
                        let path = here::fn_path(self.rt);
                        quote!(#out.push_str(#path);)
                    }
                };
                let push_hash = self.rt.push_hash();
                let args = args.iter().map(|(arg, span)| {
                    let hashed = self.rt.hashed_arg(*span);
                    quote_spanned!(*span=> #hashed(&#arg))
                });
                quote!(#prefix #push_hash(#out, &(#(#args,)*));)
            }
        }
    }

    fn capacity(&self) -> usize {
        match &self.shape {
            Shape::Template(key) => key.capacity(),
            Shape::Resource { prefix, .. } => prefix.as_ref().map_or(64, KeyFormat::capacity) + 17,
            Shape::Hashed { prefix, .. } => prefix.as_ref().map_or(64, KeyFormat::capacity) + 33,
        }
    }

    /// The key appended to a `&mut String` by a closure, for `local_hit`.
    pub(crate) fn closure(&self) -> TokenStream {
        let (out, imports, push) = (names::key_out(), self.rt.key_push_traits(), self.push());
        quote!(|#out: &mut ::std::string::String| {
            #imports
            #push
        })
    }
}

/// The key as a `String` expression.
impl ToTokens for Key<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        tokens.extend(string_of(self.rt, self.capacity(), &self.push()));
    }
}
