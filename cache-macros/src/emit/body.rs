//! The function's body as an `async move` block, handed to the runtime.

use proc_macro2::TokenStream;
use quote::{quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::Block;

use super::names;

/// The body as an `async move` block whose output type is pinned to the
/// return type, so that `?` and `return` inside it keep their meaning.
pub(crate) struct Body<'a> {
    pub block: &'a Block,
    /// The return type; `None` for an `impl Trait`, which cannot be named in
    /// a `let`: the block's type is inferred instead.
    pub ret: Option<TokenStream>,
}

impl ToTokens for Body<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let block = self.block;
        // Splice the statements, not the block: `{ { expr } }` would trip `unused_braces`.
        let stmts = &block.stmts;
        let Some(ret) = &self.ret else {
            return tokens.extend(quote_spanned! {block.span()=> async move { #(#stmts)* } });
        };
        let fake_return = names::fake_return();
        tokens.extend(quote_spanned! {block.span()=>
            async move {
                #[allow(
                    unknown_lints, unreachable_code, clippy::diverging_sub_expression,
                    clippy::empty_loop, clippy::let_unit_value, clippy::needless_return
                )]
                if false {
                    let #fake_return: #ret = loop {};
                    return #fake_return;
                }
                #(#stmts)*
            }
        });
    }
}
