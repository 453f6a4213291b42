//! Warnings (as uses of a deprecated item, the one way a proc macro can warn
//! on stable) for parameters that identify the caller but do not reach the
//! key: every caller would share one entry.

use proc_macro2::TokenStream;
use quote::{quote_spanned, ToTokens};
use syn::spanned::Spanned;

use super::names;
use crate::signature::Params;
use crate::type_names;

pub(crate) struct CredentialWarnings<'a> {
    pub params: &'a Params,
    /// The parameters the key reads.
    pub key_params: &'a [usize],
    /// `shared = true`: the response is the same for every caller.
    pub shared: bool,
}

impl ToTokens for CredentialWarnings<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        if self.shared {
            return;
        }
        for (i, pt) in self.params.typed() {
            if self.key_params.contains(&i) {
                continue;
            }
            let Some(marker) = type_names::credential_marker(&pt.ty) else {
                continue;
            };
            let note = format!(
                "cacheside: this handler takes caller credentials (a `{marker}` parameter) but its cache key does not use them, \
                 so every caller shares one entry. Put the caller in the key (e.g. key = \"profile:{{claims.sub}}\"), \
                 or add `shared = true` if the response is the same for every caller."
            );
            let warn = names::credentials_warning(i, pt.ty.span());
            tokens.extend(quote_spanned! {pt.ty.span()=>
                {
                    #[deprecated(note = #note)]
                    #[allow(non_camel_case_types)]
                    struct #warn;
                    let _ = #warn;
                }
            });
        }
    }
}
