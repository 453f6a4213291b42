//! The cache key expression: from a whole `key` template, from `key_prefix`
//! + `resource_id`, or a prefix plus a stable hash of every argument.
//!
//! Each template (`key`, `key_prefix`, every `extra` and `patterns` entry) is
//! parsed once, into a [`KeyFormat`] whose placeholders are resolved to the
//! parameters they read; what is wrong with it is reported then.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote, ToTokens};
use syn::LitStr;

use super::here;
use super::runtime::Runtime;
use crate::args::CommonArgs;
use crate::ctxt::Ctxt;
use crate::signature::Params;
use crate::template;

/// A template as a `format!` string and the key values it formats.
pub(crate) struct KeyFormat {
    format: String,
    /// One `keys::Part(&value)` per placeholder.
    parts: Vec<TokenStream>,
    /// The parameters the placeholders read (indices into `sig.inputs`).
    params: Vec<usize>,
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
        let part = rt.key_part();
        let mut parts = Vec::new();
        let mut read = Vec::new();
        let mut ok = true;
        for ph in &tpl.placeholders {
            match params.find(&ph.root) {
                Some(b) => {
                    read.push(b.param);
                    let value = ph.expr();
                    parts.push(quote!(#part(&#value)));
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
            format: tpl.format,
            parts,
            params: read,
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
}

/// `::std::format!(template, values…)`.
impl ToTokens for KeyFormat {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let (format, parts) = (&self.format, &self.parts);
        tokens.extend(quote!(::std::format!(#format, #(#parts),*)));
    }
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
    },
    /// No resource id: the prefix (or the function's path) and a hash of
    /// every argument but `self`.
    Hashed {
        prefix: Option<KeyFormat>,
        args: Vec<Ident>,
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
            let (part, id) = (rt.key_part(), format_ident!("{}", name));
            return Some(Key {
                shape: Shape::Resource {
                    prefix,
                    id: quote!(#part(&#id)),
                },
                params: read,
                rt,
            });
        }
        let args = params
            .bindings()
            .iter()
            .map(|b| format_ident!("{}", b.name))
            .collect();
        Some(Key {
            shape: Shape::Hashed { prefix, args },
            params: params.typed_indices(),
            rt,
        })
    }

    /// The parameters the key reads (indices into `sig.inputs`, maybe repeated).
    pub(crate) fn params(&self) -> &[usize] {
        &self.params
    }
}

impl ToTokens for Key<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        tokens.extend(match &self.shape {
            Shape::Template(key) => key.to_token_stream(),
            Shape::Resource {
                prefix: Some(prefix),
                id,
            } => {
                let format = format!("{}:{{}}", prefix.format);
                let parts = &prefix.parts;
                quote!(::std::format!(#format, #(#parts,)* #id))
            }
            // No prefix: `crate::module::Type::function:{id}`, unique like the
            // hashed default (a bare function name would collide between
            // modules, a module path between impl blocks).
            Shape::Resource { prefix: None, id } => {
                let path = here::fn_path(self.rt);
                quote!(::std::format!("{}:{}", #path, #id))
            }
            Shape::Hashed { prefix, args } => {
                let prefix = match prefix {
                    Some(prefix) => quote!(&#prefix),
                    None => here::fn_path(self.rt),
                };
                let hashed_key = self.rt.hashed_key();
                quote!(#hashed_key(#prefix, &(#(&#args,)*)))
            }
        });
    }
}
