//! The one place a macro run collects its errors (as serde_derive's `Ctxt`).
//!
//! Every check pushes into the context instead of returning early, so that one
//! compile shows every independent mistake, each with a span on the offending
//! tokens. The context must be consumed by [`Ctxt::check`]: dropping it
//! unchecked panics, so no error can be collected and then forgotten.

use std::cell::RefCell;
use std::fmt::Display;

use proc_macro2::Span;
use quote::ToTokens;

/// Collects the errors of one macro run; [`Ctxt::check`] combines them.
pub(crate) struct Ctxt {
    /// `None` once checked: [`Drop`] tells a forgotten check from a done one.
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    pub(crate) fn new() -> Self {
        Ctxt {
            errors: RefCell::new(Some(Vec::new())),
        }
    }

    /// An error spanning `tokens` (the first to the last of them).
    pub(crate) fn error_spanned_by<T: ToTokens>(&self, tokens: T, msg: impl Display) {
        // One monomorphic call below: `into_token_stream` here, not in `new_spanned`.
        self.syn_error(syn::Error::new_spanned(tokens.into_token_stream(), msg));
    }

    /// An error at `span` (e.g. the whole attribute, for what is missing from it).
    pub(crate) fn error_at(&self, span: Span, msg: impl Display) {
        self.syn_error(syn::Error::new(span, msg));
    }

    /// An error `syn` built (a parse error).
    pub(crate) fn syn_error(&self, err: syn::Error) {
        self.errors
            .borrow_mut()
            .as_mut()
            .expect("no error is pushed after `check`")
            .push(err);
    }

    /// Consumes the context: every collected error, combined in the order pushed.
    pub(crate) fn check(self) -> syn::Result<()> {
        let errors = self.errors.borrow_mut().take().expect("checked once");
        let mut errors = errors.into_iter();
        match errors.next() {
            None => Ok(()),
            Some(mut first) => {
                first.extend(errors);
                Err(first)
            }
        }
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if !std::thread::panicking() && self.errors.borrow().is_some() {
            panic!("cache-macros: a Ctxt was dropped without `check()`: its errors would be lost");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_combines_in_order_and_is_ok_when_empty() {
        assert!(Ctxt::new().check().is_ok());
        let cx = Ctxt::new();
        cx.error_at(Span::call_site(), "first");
        cx.error_spanned_by(quote::quote!(a b), "second");
        let messages: Vec<String> = cx
            .check()
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(messages, ["first", "second"]);
    }

    #[test]
    #[should_panic(expected = "without `check()`")]
    fn dropping_unchecked_panics() {
        let _cx = Ctxt::new();
    }
}
