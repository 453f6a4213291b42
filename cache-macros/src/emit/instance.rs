//! What names an instantiation of a generic function: its type and const
//! parameters (as one `type_name`), and `Self` when it has a receiver.
//! Emitted before the key, in the wrapper and in the companion alike.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::{GenericParam, Generics};

use super::runtime::Runtime;
use super::{here, names};

/// `let __cacheside_instance = instance(&SPEC, path, type parameters, Self);`
pub(crate) struct Instance<'a> {
    pub generics: &'a Generics,
    pub receiver: bool,
    pub rt: &'a Runtime,
}

impl ToTokens for Instance<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let mut consts = Vec::new();
        let mut parts = Vec::new();
        for (i, param) in self.generics.params.iter().enumerate() {
            match param {
                GenericParam::Type(t) => {
                    let id = &t.ident;
                    parts.push(quote!(#id));
                }
                // A const value names no type: a struct generic over it does.
                GenericParam::Const(c) => {
                    let holder = names::const_holder(i);
                    let (id, ty) = (&c.ident, &c.ty);
                    consts
                        .push(quote!(#[allow(non_camel_case_types)] struct #holder<const V: #ty>;));
                    parts.push(quote!(#holder<#id>));
                }
                GenericParam::Lifetime(_) => {}
            }
        }
        let params = if parts.is_empty() {
            quote!(::core::option::Option::None)
        } else {
            quote!(::core::option::Option::Some(::core::any::type_name::<(#(#parts,)*)>()))
        };
        let self_type = if self.receiver {
            quote!(::core::option::Option::Some(
                ::core::any::type_name::<Self>()
            ))
        } else {
            quote!(::core::option::Option::None)
        };
        let (local, instance, spec) = (names::instance(), self.rt.instance(), names::spec());
        let path = here::fn_path(self.rt);
        tokens.extend(quote! {
            #(#consts)*
            let #local = #instance(&#spec, #path, #params, #self_type);
        });
    }
}
