//! The argument parser: each argument, names given twice or to the wrong
//! macro, values of the wrong type, and what the messages say.

use super::*;
use quote::{quote, ToTokens};

/// The messages `parse` reports for `tokens`, in order.
fn errors<T>(parse: impl FnOnce(&Ctxt) -> T) -> (T, Vec<String>) {
    let cx = Ctxt::new();
    let parsed = parse(&cx);
    let messages = match cx.check() {
        Ok(()) => Vec::new(),
        Err(err) => err.into_iter().map(|e| e.to_string()).collect(),
    };
    (parsed, messages)
}

fn cache(tokens: TokenStream) -> (CacheArgs, Vec<String>) {
    errors(|cx| CacheArgs::parse(tokens, cx))
}

fn invalidate(tokens: TokenStream) -> (InvalidateArgs, Vec<String>) {
    errors(|cx| InvalidateArgs::parse(tokens, cx))
}

fn value(lit: &Option<LitStr>) -> Option<String> {
    lit.as_ref().map(LitStr::value)
}

fn values(lits: &[LitStr]) -> Vec<String> {
    lits.iter().map(LitStr::value).collect()
}

/// A valid value for `name`.
fn sample(name: Name) -> TokenStream {
    match name {
        Name::KeyPrefix | Name::ResourceId | Name::Key | Name::Cache => quote!("x"),
        Name::Crate => quote!("::x"),
        Name::Expire
        | Name::Version
        | Name::LocalTtl
        | Name::FailSafeMax
        | Name::FailSafeThrottle
        | Name::Jitter
        | Name::SoftTimeoutMs
        | Name::HardTimeoutMs
        | Name::LeaseMs
        | Name::EarlyExpiryBeta => quote!(1),
        Name::RefreshAfter => quote!(0.5),
        Name::ExpireWith => quote!(ttl_of),
        Name::CacheNone
        | Name::Companion
        | Name::Shared
        | Name::Handler
        | Name::Local
        | Name::Before => {
            quote!(true)
        }
        Name::Extra | Name::Patterns | Name::Tags => quote!(["x"]),
    }
}

#[test]
fn every_cache_argument_is_read() {
    let (args, errs) = cache(quote! {
        key_prefix = "w", resource_id = "id", expire = 600, version = 2, cache = "c",
        cache_none = true, companion = false, shared = true, handler = false,
        extra = ["a", "b"], patterns = ["p:*"], crate = "::re::cacheside",
    });
    assert_eq!(errs, Vec::<String>::new());
    let c = &args.common;
    assert_eq!(value(&c.key_prefix).as_deref(), Some("w"));
    assert_eq!(value(&c.resource_id).as_deref(), Some("id"));
    assert_eq!(value(&c.key), None);
    assert_eq!(value(&c.cache).as_deref(), Some("c"));
    assert_eq!(args.handler, Some(false));
    assert_eq!(values(&c.extra), ["a", "b"]);
    assert_eq!(values(&c.patterns), ["p:*"]);
    let krate = c.krate.as_ref().map(|p| p.to_token_stream().to_string());
    assert_eq!(krate.as_deref(), Some(":: re :: cacheside"));
    assert_eq!(args.expire, Some(600));
    assert_eq!(args.version, 2);
    assert!(args.cache_none && args.companion == Some(false) && args.shared);
    let written: Vec<Name> = args.invalidation_args.iter().map(|(n, _)| *n).collect();
    assert_eq!(written, [Name::Extra, Name::Patterns]);
}

#[test]
fn fail_safe_arguments_are_read_and_a_zero_throttle_refused() {
    let (args, errs) = cache(quote!(fail_safe_max = 3600, fail_safe_throttle = 10));
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(
        (args.fail_safe_max, args.fail_safe_throttle),
        (Some(3600), Some(10))
    );
    let (args, errs) = cache(quote!(fail_safe_max = 0));
    assert!(
        errs.is_empty() && args.fail_safe_max == Some(0),
        "0 turns it off: {errs:?}"
    );
    let (args, errs) = cache(quote!(fail_safe_throttle = 0));
    assert_eq!(args.fail_safe_throttle, None);
    assert!(errs[0].contains("at least 1 second"), "{errs:?}");
    let (_, errs) = cache(quote!(fail_safe_max = "1h"));
    assert!(errs[0].contains("whole number of seconds"), "{errs:?}");
    let (_, errs) = invalidate(quote!(key = "k", fail_safe_max = 1));
    assert!(errs[0].contains("belongs to #[cache]"), "{errs:?}");
}

#[test]
fn jitter_and_expire_with_are_read_and_checked() {
    let (args, errs) = cache(quote!(jitter = 0.25, expire_with = crate::ttls::of_price));
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(args.jitter, Some(0.25));
    let path = args.expire_with.map(|p| p.to_token_stream().to_string());
    assert_eq!(path.as_deref(), Some("crate :: ttls :: of_price"));
    let (args, _) = cache(quote!(expire_with = "ttls::of_price"));
    assert!(args.expire_with.is_some());
    for bad in [
        quote!(jitter = 1.5),
        quote!(jitter = -0.1),
        quote!(jitter = "0.1"),
    ] {
        let (args, errs) = cache(bad);
        assert_eq!(args.jitter, None);
        assert!(errs[0].contains("fraction from 0 to 1"), "{errs:?}");
    }
    let (_, errs) = cache(quote!(expire_with = 600));
    assert!(
        errs[0].contains("fn(&T) -> std::time::Duration"),
        "{errs:?}"
    );
}

#[test]
fn cache_defaults() {
    let (args, errs) = cache(quote!(key = "k"));
    assert!(errs.is_empty());
    assert_eq!(value(&args.common.key).as_deref(), Some("k"));
    assert_eq!(args.expire, None);
    assert_eq!(args.version, 0);
    assert!(!args.cache_none && args.companion.is_none() && !args.shared);
    assert!(args.invalidation_args.is_empty() && args.common.krate.is_none());
    let (args, errs) = cache(TokenStream::new());
    assert!(errs.is_empty() && args.companion.is_none() && args.common.key.is_none());
}

#[test]
fn every_invalidate_argument_is_read() {
    let (args, errs) = invalidate(quote! {
        key = "k:{id}", extra = ["a"], patterns = ["p:*", "q:*"], before = true,
        cache = "c", crate = "x::y",
    });
    assert_eq!(errs, Vec::<String>::new());
    let c = &args.common;
    assert_eq!(value(&c.key).as_deref(), Some("k:{id}"));
    assert_eq!(values(&c.extra), ["a"]);
    assert_eq!(values(&c.patterns), ["p:*", "q:*"]);
    assert_eq!(value(&c.cache).as_deref(), Some("c"));
    assert!(args.before && c.krate.is_some());
    let (args, errs) = invalidate(quote!(key_prefix = "w", resource_id = "id"));
    assert!(errs.is_empty() && !args.before);
    assert_eq!(value(&args.common.key_prefix).as_deref(), Some("w"));
    assert_eq!(value(&args.common.resource_id).as_deref(), Some("id"));
}

#[test]
fn the_unknown_argument_message_lists_exactly_what_parses() {
    for which in [Macro::Cache, Macro::Invalidate] {
        let (_, errs) =
            errors(|cx| parse_list(which, quote!(nope = 1), cx, |_, _, _| unreachable!()));
        let [msg] = &errs[..] else { panic!("{errs:?}") };
        let listed = msg.split("expected one of: ").nth(1).expect(msg);
        let accepted: Vec<&str> = which.accepted().iter().map(|n| n.as_str()).collect();
        assert_eq!(listed, accepted.join(", "), "{which}");
        assert!(msg.starts_with(&format!("unknown argument `nope` for {which};")));
        for name in which.accepted() {
            let (ident, sample) = (name.as_str(), sample(*name));
            let tokens: TokenStream = format!("{ident} = {sample}").parse().unwrap();
            let (_, errs) = match which {
                Macro::Cache => (Some(()), cache(tokens).1),
                Macro::Invalidate => (None, invalidate(tokens).1),
            };
            assert!(errs.is_empty(), "{which} {ident}: {errs:?}");
        }
    }
    let (_, errs) = cache(quote!(key = "k", extra = ["a"], patterns = ["b"]));
    assert!(errs.is_empty(), "{errs:?}");
}

#[test]
fn a_name_given_twice_is_reported_and_the_first_kept() {
    let (args, errs) = cache(quote!(expire = 60, expire = 600, nope = 1, nope = 2));
    assert_eq!(args.expire, Some(60));
    assert_eq!(
        errs,
        [
            "`expire` is given twice; keep one",
            "unknown argument `nope` for #[cache]; expected one of: key_prefix, resource_id, key, \
             expire, version, cache, cache_none, companion, shared, handler, local, local_ttl, fail_safe_max, fail_safe_throttle, jitter, expire_with, refresh_after, early_expiry_beta, soft_timeout_ms, hard_timeout_ms, lease_ms, tags, extra, patterns, crate",
            "`nope` is given twice; keep one",
        ]
    );
    let (_, errs) = invalidate(quote!(before = true, before = false, key = "k"));
    assert_eq!(errs, ["`before` is given twice; keep one"]);
}

#[test]
fn an_argument_of_the_other_macro_says_where_it_belongs() {
    let (_, errs) = cache(quote!(key = "k", before = true));
    assert_eq!(
        errs,
        ["`before` belongs to #[invalidate], not #[cache]: put it on the function that changes the data"]
    );
    let (_, errs) = invalidate(quote! {
        key = "k", expire = 1, version = 2, cache_none = true, companion = false, shared = true
    });
    let expected: Vec<String> = ["expire", "version", "cache_none", "companion", "shared"]
        .iter()
        .map(|n| format!("`{n}` belongs to #[cache], not #[invalidate]"))
        .collect();
    assert_eq!(errs, expected);
}

#[test]
fn values_of_the_wrong_type_are_each_reported() {
    let (args, errs) = cache(quote! {
        key = 5, key_prefix = true, resource_id = ["id"], cache = c, crate = "not a path!",
        expire = "600", version = 1.5, cache_none = 1, companion = "no", shared = yes,
        extra = "a", patterns = [1, "p:*"],
    });
    assert_eq!(
        errs,
        [
            "`key` takes a string literal, e.g. key = \"…\"",
            "`key_prefix` takes a string literal, e.g. key_prefix = \"…\"",
            "`resource_id` takes a string literal, e.g. resource_id = \"…\"",
            "`cache` takes a string literal, e.g. cache = \"…\"",
            "`crate` takes a path, e.g. crate = \"::my_reexport::cacheside\"",
            "`expire` takes a whole number of seconds, e.g. expire = 600 (0 turns caching off)",
            "`version` takes a whole number, e.g. version = 2 (bump it when the cached type changes in a way cacheside cannot trace)",
            "`cache_none` takes `true` or `false`",
            "`companion` takes `true` or `false`",
            "`shared` takes `true` or `false`",
            "`extra` takes a list of string literals, e.g. extra = [\"widgets:count\"]",
            "`patterns` takes a string literal, e.g. patterns = \"…\"",
        ]
    );
    // What was wrong keeps its default; the good list entries are kept.
    assert!(args.common.key.is_none() && args.common.krate.is_none());
    assert!(!args.cache_none && args.companion.is_none() && !args.shared);
    assert_eq!(values(&args.common.patterns), ["p:*"]);
    let (_, errs) = invalidate(quote!(key = "k", before = "yes"));
    assert_eq!(errs, ["`before` takes `true` or `false`"]);
}

#[test]
fn numbers_out_of_range() {
    let (args, errs) = cache(quote!(expire = -5, version = 4294967296));
    assert_eq!(
        errs,
        [
            "`expire` cannot be negative: give seconds (e.g. 600), or 0 to turn caching off for this function",
            "`version` must fit in u32: number too large to fit in target type",
        ]
    );
    assert_eq!((args.expire, args.version), (None, 0));
    let (_, errs) = cache(quote!(expire = 18446744073709551616));
    assert_eq!(
        errs,
        ["`expire` must fit in u64 seconds: number too large to fit in target type"]
    );
    let (args, errs) = cache(quote!(expire = 0, version = 4294967295));
    assert!(errs.is_empty());
    assert_eq!((args.expire, args.version), (Some(0), u32::MAX));
}

#[test]
fn conflicting_key_arguments_and_an_empty_cache_name() {
    let (_, errs) = cache(quote!(
        key = "k",
        key_prefix = "p",
        resource_id = "id",
        cache = ""
    ));
    assert_eq!(
        errs,
        [
            "give either `key` (the whole template) or `key_prefix`, not both",
            "give either `key` (the whole template) or `resource_id`, not both",
            "`cache` names a cache registered with cacheside::register; it cannot be empty",
        ]
    );
}

#[test]
fn a_syntax_error_ends_parsing() {
    let (_, errs) = cache(quote!(key = "k", expire));
    assert_eq!(
        errs,
        ["expected `expire = …`: every argument takes a value"]
    );
    let (_, errs) = invalidate(quote!(crate));
    assert_eq!(errs, ["expected `crate = …`: every argument takes a value"]);
    let (_, errs) = cache(quote!(key = "k" expire = 1));
    assert_eq!(errs, ["expected `,`"]);
    let (_, errs) = cache(quote!(= 1));
    assert_eq!(errs, ["expected ident"]);
}

#[test]
fn a_raw_identifier_is_no_keyword() {
    let (_, errs) = invalidate(quote!(r#key = "k"));
    assert_eq!(
        errs,
        ["unknown argument `r#key` for #[invalidate]; expected one of: key_prefix, resource_id, key, \
          extra, patterns, tags, before, cache, crate"]
    );
}
