//! `Vary`: which request headers select a variant of a response, and the
//! key each variant is stored under (`{base}#v={hash of their values}`).

use http::header::{self, HeaderMap, HeaderValue};

use super::StoredResponse;

/// The key of the variant of `base` selected by the request headers `names`.
pub(super) fn variant_key(base: &str, names: &[String], request: &HeaderMap) -> String {
    if names.is_empty() {
        return base.to_owned();
    }
    let mut material = Vec::new();
    // One line per name: `name` alone when the request has no such header,
    // `name:` + its values when it has (even empty ones). Names hold no `:`
    // and values no newline, so distinct requests give distinct material.
    for name in names {
        material.extend_from_slice(name.as_bytes());
        if !request.contains_key(name.as_str()) {
            material.push(b'\n');
            continue;
        }
        material.push(b':');
        for (i, v) in request.get_all(name.as_str()).iter().enumerate() {
            if i > 0 {
                material.push(b',');
            }
            material.extend_from_slice(v.as_bytes());
        }
        material.push(b'\n');
    }
    format!(
        "{base}#v={:032x}",
        crate::backend::hash::bytes128(&material)
    )
}

/// The `Vary` names of a response, lower-cased, sorted, deduplicated; `None` for `Vary: *`.
pub(super) fn vary_names(headers: &HeaderMap) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for v in headers.get_all(header::VARY) {
        let Ok(v) = v.to_str() else { return None };
        for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return None;
            }
            names.push(name.to_ascii_lowercase());
        }
    }
    names.sort();
    names.dedup();
    Some(names)
}

pub(super) fn stored_vary_names(entry: &StoredResponse) -> Vec<String> {
    let mut map = HeaderMap::new();
    for (n, v) in &entry.headers {
        if n == "vary" {
            if let Ok(v) = HeaderValue::from_bytes(v) {
                map.append(header::VARY, v);
            }
        }
    }
    vary_names(&map).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_header_and_an_empty_one_are_different_variants() {
        let names = vec!["x-flag".to_owned()];
        let mut empty = HeaderMap::new();
        empty.insert("x-flag", HeaderValue::from_static(""));
        let absent = variant_key("b", &names, &HeaderMap::new());
        assert_ne!(absent, variant_key("b", &names, &empty));
        let mut set = HeaderMap::new();
        set.insert("x-flag", HeaderValue::from_static("1"));
        assert_ne!(absent, variant_key("b", &names, &set));
    }
}
