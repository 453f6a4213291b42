//! Glob patterns for [`Cache::delete_pattern`](crate::Cache::delete_pattern) and `#[invalidate(patterns = …)]`.
//!
//! One dialect on every backend: `*` matches any run of characters (also
//! none), `?` exactly one character, `\` makes the next character literal.
//! Everything else, `[` and `]` included, is literal. Backends with their own
//! matcher translate from [`tokens`].

/// True when `text` matches the glob `pattern`.
///
/// Runs in `O(pattern × text)` at worst (no backtracking blow-up).
///
/// ```
/// use cache_core::pattern::matches;
/// assert!(matches("widgets:page:*", "widgets:page:3:20"));
/// assert!(matches("user:?", "user:7"));
/// assert!(!matches("user:?", "user:17"));
/// assert!(matches(r"a\*b", "a*b"));
/// assert!(!matches(r"a\*b", "axb"));
/// assert!(matches("[x]", "[x]"));
/// ```
pub fn matches(pattern: &str, text: &str) -> bool {
    let pat = tokens(pattern);
    let txt: Vec<char> = text.chars().collect();
    // Classic two-pointer wildcard match with a single backtrack point.
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < txt.len() {
        match pat.get(p) {
            Some(Token::Any) => {
                star = Some((p, t));
                p += 1;
            }
            Some(Token::One) => {
                p += 1;
                t += 1;
            }
            Some(Token::Lit(c)) if *c == txt[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|tok| matches!(tok, Token::Any))
}

/// True when the pattern has no wildcard (it names exactly one key).
///
/// ```
/// assert!(cache_core::pattern::is_literal(r"a\*b"));
/// assert!(!cache_core::pattern::is_literal("a*"));
/// ```
pub fn is_literal(pattern: &str) -> bool {
    tokens(pattern).iter().all(|t| matches!(t, Token::Lit(_)))
}

/// Escapes `text` so that it matches only itself.
///
/// ```
/// use cache_core::pattern::{escape, matches};
/// let ns = "tenant*1:";
/// assert!(matches(&format!("{}x", escape(ns)), "tenant*1:x"));
/// assert!(!matches(&format!("{}x", escape(ns)), "tenant-1:x"));
/// ```
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One element of a glob, as [`tokens`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// `*`: any run of characters, also none.
    Any,
    /// `?`: exactly one character.
    One,
    /// A character that stands for itself (escapes resolved).
    Lit(char),
}

/// The glob read into [`Token`]s, escapes resolved: what a backend with a
/// matcher of its own translates from (the Redis backend's `MATCH`
/// patterns, for one).
///
/// ```
/// use cache_core::pattern::{tokens, Token};
/// assert_eq!(tokens(r"a\*?"), [Token::Lit('a'), Token::Lit('*'), Token::One]);
/// ```
pub fn tokens(pattern: &str) -> Vec<Token> {
    let mut out = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '*' => Token::Any,
            '?' => Token::One,
            // A trailing backslash stands for itself.
            '\\' => Token::Lit(chars.next().unwrap_or('\\')),
            other => Token::Lit(other),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_matches_empty_and_runs() {
        assert!(matches("*", ""));
        assert!(matches("a*", "a"));
        assert!(matches("a*c", "abbbc"));
        assert!(matches("*:page:*", "widgets:page:2"));
        assert!(!matches("a*c", "abd"));
        assert!(matches("a*b*c", "aXbYbZc"));
    }

    #[test]
    fn question_mark_is_one_char_not_byte() {
        assert!(matches("caf?", "café"));
        assert!(!matches("?", ""));
    }

    #[test]
    fn pathological_pattern_is_fast_enough() {
        let text = "a".repeat(2000);
        let pat = format!("{}b", "*a".repeat(50));
        assert!(!matches(&pat, &text));
    }

    #[test]
    fn escape_round_trips_every_special_char() {
        for s in ["a*b", "q?", r"back\slash", "[x]", "plain"] {
            assert!(matches(&escape(s), s), "{s}");
            assert!(is_literal(&escape(s)));
        }
    }
}
