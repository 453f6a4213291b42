//! Key templates: `"widget:{widget_id}"`, `"page:{q.page}:{q.size}"`.
//!
//! A placeholder names a parameter binding, optionally followed by fields
//! (`{q.page}`, `{t.0}`); `{{` and `}}` are literal braces. Each placeholder's
//! value is formatted with `Display` and encoded at run time
//! (`cache_core::keys`): the characters in [`RESERVED`] never occur in an
//! encoded value, so two placeholders must be separated by literal text that
//! holds one of them (in practice `:`); then a key splits back into its
//! values and distinct argument tuples give distinct keys.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::LitStr;

/// The characters the runtime encodes in values: a copy of
/// `cache_core::keys::RESERVED` (a test in `tests/macros.rs` pins that they agree).
pub(crate) const RESERVED: &[char] = &['%', ':', '*', '?', '[', ']', '\\'];

/// A placeholder as written.
#[derive(Clone)]
pub(crate) struct Placeholder {
    pub root: String,
    pub fields: Vec<String>,
}

/// A parsed template: literal pieces and placeholders, in order.
pub(crate) struct Template {
    pub placeholders: Vec<Placeholder>,
    /// The literal text around the placeholders, braces single: one more
    /// piece than placeholders (`"a:{x}:b"` gives `["a:", ":b"]`).
    pub literals: Vec<String>,
}

/// Parses a template, or says what is wrong with it.
pub(crate) fn parse(lit: &LitStr) -> Result<Template, String> {
    parse_str(&lit.value())
}

/// [`parse`] on the template's text (the fuzz target includes this file).
pub(crate) fn parse_str(text: &str) -> Result<Template, String> {
    let mut placeholders: Vec<Placeholder> = Vec::new();
    let mut literals = Vec::new();
    // Literal text since the previous placeholder.
    let mut literal = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                literal.push('}');
            }
            '}' => {
                return Err("unmatched `}` in key template (write `}}` for a literal brace)".into())
            }
            '{' => {
                let mut inner = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(ch) => inner.push(ch),
                        None => {
                            return Err(
                                "unclosed `{` in key template (write `{{` for a literal brace)"
                                    .into(),
                            )
                        }
                    }
                }
                let inner = inner.trim();
                let mut parts = inner.split('.');
                let root = parts.next().unwrap_or_default().to_owned();
                let fields: Vec<String> = parts.map(str::to_owned).collect();
                // A Rust identifier as `syn` reads one (XID rules, no keyword,
                // no `_`), spelled exactly so: `Placeholder::expr` builds
                // idents from these strings and would panic on anything else.
                let ident_ok = |s: &str| syn::parse_str::<syn::Ident>(s).is_ok_and(|id| id == s);
                if root == "self" {
                    return Err("placeholders cannot read `self`; pass the value as a parameter and name it".into());
                }
                if !ident_ok(&root) {
                    return Err(format!("`{{{inner}}}` is not a placeholder: write `{{parameter}}` or `{{parameter.field}}`"));
                }
                for f in &fields {
                    // A tuple index is a `u32` below `u32::MAX` (`syn::Index` asserts it).
                    let index_ok = !f.is_empty()
                        && f.chars().all(|c| c.is_ascii_digit())
                        && f.parse::<u32>().is_ok_and(|n| n < u32::MAX);
                    if !(ident_ok(f) || index_ok) {
                        return Err(format!("`{{{inner}}}`: `{f}` is not a field name"));
                    }
                }
                if let Some(previous) = placeholders.last() {
                    if !literal.contains(RESERVED) {
                        return Err(format!(
                            "placeholders `{{{}}}` and `{{{inner}}}` must be separated by text holding `:` \
                             (e.g. \"{{{}}}:{{{inner}}}\"): values are encoded so that `:` never occurs in them, \
                             but with {} between them two different argument tuples could build one key",
                            previous.written(),
                            previous.written(),
                            if literal.is_empty() { "nothing".to_owned() } else { format!("`{literal}`") },
                        ));
                    }
                }
                literals.push(std::mem::take(&mut literal));
                placeholders.push(Placeholder { root, fields });
            }
            other => {
                literal.push(other);
            }
        }
    }
    literals.push(literal);
    Ok(Template {
        placeholders,
        literals,
    })
}

impl Placeholder {
    /// `root.field` as written in the template.
    pub(crate) fn written(&self) -> String {
        std::iter::once(self.root.as_str())
            .chain(self.fields.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(".")
    }

    /// `root.field.0` as an expression.
    pub(crate) fn expr(&self) -> TokenStream {
        let root = format_ident!("{}", self.root);
        let fields = self.fields.iter().map(|f| match f.parse::<usize>() {
            Ok(i) => {
                let idx = syn::Index::from(i);
                quote!(.#idx)
            }
            Err(_) => {
                let id = format_ident!("{}", f);
                quote!(.#id)
            }
        });
        quote!(#root #(#fields)*)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs the `fuzz/` target `key_template` found: `_` and keywords were
    /// taken for parameter names, and a tuple index past `u32` (or a field that
    /// is not an identifier) made `Placeholder::expr` panic inside the macro.
    #[test]
    fn placeholders_are_identifiers_and_their_expressions_build() {
        for bad in [
            "{_}",
            "{fn}",
            "{n.999999999999999}",
            "é{n.999999999999999}",
            "{t.4294967295}",
            "{q.\u{345}}",
            "{q.type}",
        ] {
            assert!(parse_str(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_str("{self.id}")
            .err()
            .is_some_and(|e| e.contains("cannot read `self`")));
        let tpl = parse_str("{{w}}:{t.0}:{q.page}:{r#type}:{é}").expect("valid template");
        assert_eq!(tpl.literals, ["{w}:", ":", ":", ":", ""]);
        let exprs: Vec<String> = tpl
            .placeholders
            .iter()
            .map(|p| p.expr().to_string())
            .collect();
        assert_eq!(exprs, ["t . 0", "q . page", "r#type", "é"]);
        assert!(parse_str("{t.4294967294}").is_ok());
    }
}
