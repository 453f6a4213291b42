//! Key templates (`cache-macros/src/template.rs`, included by path: a
//! proc-macro crate cannot be a library dependency).
//!
//! Properties of `parse_str`:
//! - it never panics, and neither does building the expression of a
//!   placeholder it accepted (the macro calls `Placeholder::expr` on each);
//! - every placeholder root is a Rust identifier (not a keyword, not `self`),
//!   every field an identifier or a tuple index, and the expression parses
//!   back as `root.field…`;
//! - the literal pieces are one more than the placeholders, and joining
//!   them with the values gives the template's text with `{{`/`}}` as
//!   single braces and each placeholder replaced by its value;
//! - a template whose braces are all doubled is accepted as it is.
#![no_main]

#[allow(dead_code)]
#[path = "../../cache-macros/src/template.rs"]
mod template;

use libfuzzer_sys::fuzz_target;

const ALPHABET: [char; 14] = [
    '{', '}', 'a', 'b', '_', '.', '0', '1', ' ', ':', 'é', '9', 'f', 'n',
];

/// The template's text with `{{`/`}}` undoubled and the `i`-th `{…}` replaced by `values[i]`.
fn expected(text: &str, values: &[String]) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    let mut next = values.iter();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                for d in chars.by_ref() {
                    if d == '}' {
                        break;
                    }
                }
                out.push_str(next.next().expect("placeholder"));
            }
            _ => out.push(c),
        }
    }
    out
}

fn check(text: &str) {
    let Ok(tpl) = template::parse_str(text) else {
        return;
    };
    let mut values = Vec::new();
    for (i, ph) in tpl.placeholders.iter().enumerate() {
        let root: syn::Ident = syn::parse_str(&ph.root)
            .unwrap_or_else(|e| panic!("root {:?} of {text:?} is not an identifier: {e}", ph.root));
        assert_eq!(root.to_string(), ph.root, "root {:?} of {text:?}", ph.root);
        assert_ne!(ph.root, "self");
        for f in &ph.fields {
            let member: syn::Member = syn::parse_str(f)
                .unwrap_or_else(|e| panic!("field {f:?} of {text:?} is not a field name: {e}"));
            if let syn::Member::Named(id) = &member {
                assert_eq!(id.to_string(), *f, "field {f:?} of {text:?}");
            }
        }
        let expr = ph.expr();
        let parsed: syn::Expr = syn::parse2(expr.clone())
            .unwrap_or_else(|e| panic!("expression `{expr}` of {text:?} does not parse: {e}"));
        let mut depth = 0;
        let mut e = &parsed;
        while let syn::Expr::Field(f) = e {
            depth += 1;
            e = &f.base;
        }
        assert_eq!(depth, ph.fields.len(), "`{expr}` of {text:?}");
        assert!(matches!(e, syn::Expr::Path(_)), "`{expr}` of {text:?}");
        values.push(format!("<{i}>"));
    }
    assert_eq!(tpl.literals.len(), values.len() + 1, "{text:?}");
    let mut pieces = tpl.literals[0].clone();
    for (value, literal) in values.iter().zip(&tpl.literals[1..]) {
        pieces.push_str(value);
        pieces.push_str(literal);
    }
    assert_eq!(
        pieces,
        expected(text, &values),
        "literals {:?} of {text:?}",
        tpl.literals
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text: String = if mode & 1 == 0 {
        rest.iter()
            .map(|&b| ALPHABET[b as usize % ALPHABET.len()])
            .collect()
    } else {
        String::from_utf8_lossy(rest).into_owned()
    };
    check(&text);

    // Doubled braces only: no placeholders, and the one literal is the text itself.
    let doubled = text.replace('{', "{{").replace('}', "}}");
    let tpl = template::parse_str(&doubled)
        .unwrap_or_else(|e| panic!("{doubled:?} (all braces doubled) rejected: {e}"));
    assert!(tpl.placeholders.is_empty(), "{doubled:?}");
    assert_eq!(tpl.literals, [text.as_str()]);
    check(&doubled);
});
