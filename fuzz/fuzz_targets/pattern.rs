//! Glob patterns: `cache_core::pattern` against a reference matcher written
//! here from the documented dialect, and `to_redis` against a model of
//! Redis's own byte-wise glob.
//!
//! Properties:
//! - `matches(p, t)` equals the reference (a DP over the pattern's tokens);
//! - `is_literal(p)` is true exactly when the pattern has no `*` or `?` token;
//! - `matches(&escape(s), t)` is `s == t`, and `is_literal(&escape(s))`;
//! - `to_redis(p)` leaves no unescaped `[`, `]` or `^`, and Redis's matcher
//!   over it agrees with `matches` (exactly, unless the pattern has a `?` and
//!   the text is not ASCII: Redis's `?` is one byte, ours one character, which
//!   is why the Redis backend widens `?` and filters client-side).
#![no_main]

use arbitrary::Arbitrary;
use cache_backends::redis_glob as to_redis;
use cache_core::pattern::{escape, is_literal, matches};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    /// Bytes mapped onto a small alphabet, so that patterns and texts meet.
    pattern: Vec<u8>,
    text: Vec<u8>,
    /// Unmapped text, for escape's properties over any string.
    raw: String,
    small_alphabet: bool,
}

const ALPHABET: [char; 12] = ['a', 'b', ':', '*', '?', '\\', '[', ']', '^', 'é', '🚀', '-'];

fn mapped(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| ALPHABET[b as usize % ALPHABET.len()])
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Any,
    One,
    Lit(char),
}

/// The dialect as documented: `*` any run, `?` one character, `\` makes the
/// next character literal (a trailing `\` stands for itself), all else literal.
fn reference_tokens(pattern: &str) -> Vec<Tok> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => out.push(Tok::Any),
            '?' => out.push(Tok::One),
            '\\' if i + 1 < chars.len() => {
                i += 1;
                out.push(Tok::Lit(chars[i]));
            }
            c => out.push(Tok::Lit(c)),
        }
        i += 1;
    }
    out
}

/// `dp[i][j]`: tokens `i..` match text `j..`.
fn reference_matches(pattern: &str, text: &str) -> bool {
    let toks = reference_tokens(pattern);
    let txt: Vec<char> = text.chars().collect();
    let (n, m) = (toks.len(), txt.len());
    let mut dp = vec![vec![false; m + 1]; n + 1];
    dp[n][m] = true;
    for i in (0..n).rev() {
        for j in (0..=m).rev() {
            dp[i][j] = match toks[i] {
                Tok::Any => dp[i + 1][j] || (j < m && dp[i][j + 1]),
                Tok::One => j < m && dp[i + 1][j + 1],
                Tok::Lit(c) => j < m && txt[j] == c && dp[i + 1][j + 1],
            };
        }
    }
    dp[0][0]
}

/// Redis's `stringmatchlen` for patterns without `[` classes, over bytes:
/// `*` any run of bytes, `?` one byte, `\x` the byte `x` (a trailing `\` is itself).
fn redis_matches(pattern: &[u8], text: &[u8]) -> bool {
    #[derive(Clone, Copy)]
    enum B {
        Any,
        One,
        Lit(u8),
    }
    let mut toks = Vec::new();
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'*' => toks.push(B::Any),
            b'?' => toks.push(B::One),
            b'\\' if i + 1 < pattern.len() => {
                i += 1;
                toks.push(B::Lit(pattern[i]));
            }
            b => toks.push(B::Lit(b)),
        }
        i += 1;
    }
    let (n, m) = (toks.len(), text.len());
    let mut dp = vec![vec![false; m + 1]; n + 1];
    dp[n][m] = true;
    for i in (0..n).rev() {
        for j in (0..=m).rev() {
            dp[i][j] = match toks[i] {
                B::Any => dp[i + 1][j] || (j < m && dp[i][j + 1]),
                B::One => j < m && dp[i + 1][j + 1],
                B::Lit(c) => j < m && text[j] == c && dp[i + 1][j + 1],
            };
        }
    }
    dp[0][0]
}

/// True when `p` (Redis syntax) has a `[`, `]` or `^` that is not escaped.
fn has_unescaped_class_syntax(p: &str) -> bool {
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '[' | ']' | '^' => return true,
            _ => {}
        }
    }
    false
}

fuzz_target!(|input: Input| {
    let (pattern, text) = if input.small_alphabet {
        (mapped(&input.pattern), mapped(&input.text))
    } else {
        (
            String::from_utf8_lossy(&input.pattern).into_owned(),
            String::from_utf8_lossy(&input.text).into_owned(),
        )
    };
    // Keep the reference's DP table small.
    if pattern.chars().count() > 64 || text.chars().count() > 64 {
        return;
    }

    let got = matches(&pattern, &text);
    assert_eq!(
        got,
        reference_matches(&pattern, &text),
        "matches({pattern:?}, {text:?})"
    );

    let toks = reference_tokens(&pattern);
    assert_eq!(
        is_literal(&pattern),
        toks.iter().all(|t| matches!(t, Tok::Lit(_))),
        "is_literal({pattern:?})"
    );

    for s in [&input.raw, &pattern, &text] {
        let e = escape(s);
        assert!(
            matches(&e, s),
            "escape({s:?}) = {e:?} does not match itself"
        );
        assert!(is_literal(&e), "escape({s:?}) = {e:?} is not literal");
        assert_eq!(
            matches(&e, &text),
            *s == text,
            "escape({s:?}) against {text:?}"
        );
    }

    let redis = to_redis(&pattern);
    assert!(
        !has_unescaped_class_syntax(&redis),
        "to_redis({pattern:?}) = {redis:?} leaves class syntax"
    );
    let by_redis = redis_matches(redis.as_bytes(), text.as_bytes());
    if !toks.contains(&Tok::One) || text.is_ascii() {
        assert_eq!(
            by_redis, got,
            "Redis MATCH {redis:?} (from {pattern:?}) against {text:?}"
        );
    }
    // With a `?` and non-ASCII text, Redis's byte-wise `?` can miss (`?`
    // against `é`) or add (`??` against `é`): the Redis backend widens `?` to
    // `*` and filters the scanned keys with `matches`, so it is not compared.
});
