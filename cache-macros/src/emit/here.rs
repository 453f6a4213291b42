//! The path of the annotated function (`crate::module::Type::method`), at run
//! time: the `type_name` of a function item nested in it, less the item's own
//! name. Unlike `module_path!()` it names the `Self` type of a method, so two
//! `impl` blocks with one method name get two default keys.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};

use super::names::{self, COMPANION_SUFFIX, HERE};
use super::runtime::Runtime;

/// The function item whose `type_name` gives the path, and the suffix to
/// strip from it: the wrapper and the companion each define their own (the
/// companion strips its own name down to the function's).
pub(crate) enum Here {
    InWrapper,
    InCompanion,
}

impl ToTokens for Here {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let here = names::here();
        let suffix_const = names::suffix();
        let suffix = match self {
            Here::InWrapper => format!("::{HERE}"),
            Here::InCompanion => format!("{COMPANION_SUFFIX}::{HERE}"),
        };
        tokens.extend(quote! {
            #[allow(dead_code)]
            fn #here() {}
            #[allow(dead_code)]
            const #suffix_const: &str = #suffix;
        });
    }
}

/// The expression giving the path, where a [`Here`] is in scope.
pub(crate) fn fn_path(rt: &Runtime) -> TokenStream {
    let (fn_path, here, suffix) = (rt.fn_path(), names::here(), names::suffix());
    quote!(#fn_path(#here, #suffix))
}
