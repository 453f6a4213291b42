//! TEMPORARY pass-through while the real macros are written (same session).
use proc_macro::TokenStream;
/// placeholder
#[proc_macro_attribute]
pub fn cache(_args: TokenStream, item: TokenStream) -> TokenStream { item }
/// placeholder
#[proc_macro_attribute]
pub fn invalidate(_args: TokenStream, item: TokenStream) -> TokenStream { item }
