//! Reading configuration variables, by the rules every part of cacheside
//! follows: a blank value is unset; a malformed one is an
//! [`Error::Config`] naming the variable, the value and what is allowed.
//!
//! The facade's `Config` reads the variables common to every store; each
//! backend reads its own (`CACHE_REDIS_*`, `CACHE_MEMCACHED_*`, …) through
//! the same [`Vars`], so a store added later follows the same rules.
//!
//! ```
//! use std::time::Duration;
//! use cache_core::env::Vars;
//!
//! let lookup = |name: &str| match name {
//!     "CACHE_OP_TIMEOUT_MS" => Some("80".to_string()),
//!     "CACHE_NAMESPACE" => Some("   ".to_string()),
//!     "CACHE_POOL" => Some("lots".to_string()),
//!     _ => None,
//! };
//! let vars = Vars::new(&lookup);
//! assert_eq!(vars.millis_above_zero("CACHE_OP_TIMEOUT_MS", "e.g. 250")?, Some(Duration::from_millis(80)));
//! assert_eq!(vars.get("CACHE_NAMESPACE"), None, "blank is unset");
//! let err = vars.num::<u32>("CACHE_POOL", "a whole number, e.g. 4").unwrap_err();
//! assert!(err.to_string().contains("CACHE_POOL"));
//! # Ok::<(), cache_core::Error>(())
//! ```

use std::str::FromStr;
use std::time::Duration;

use crate::Error;

/// The variables of one configuration source: the process environment, or
/// any `lookup` (tests, a config file).
#[derive(Clone, Copy)]
pub struct Vars<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl std::fmt::Debug for Vars<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vars { .. }") // values may be secrets
    }
}

impl<'a> Vars<'a> {
    /// Reads variables through `lookup`.
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Vars { lookup }
    }

    /// The value of `name`, trimmed; `None` when unset or blank.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A number; `allowed` says what a valid value looks like (`"a whole number of seconds, e.g. 3600"`).
    pub fn num<T: FromStr>(
        &self,
        var: &'static str,
        allowed: &'static str,
    ) -> Result<Option<T>, Error> {
        self.get(var)
            .map(|v| parse_num(var, &v, allowed))
            .transpose()
    }

    /// Whole seconds.
    pub fn seconds(
        &self,
        var: &'static str,
        allowed: &'static str,
    ) -> Result<Option<Duration>, Error> {
        Ok(self.num(var, allowed)?.map(Duration::from_secs))
    }

    /// Whole milliseconds, 0 allowed.
    pub fn millis(
        &self,
        var: &'static str,
        allowed: &'static str,
    ) -> Result<Option<Duration>, Error> {
        Ok(self.num(var, allowed)?.map(Duration::from_millis))
    }

    /// Whole milliseconds above 0 (a bound of 0 would fail every operation).
    pub fn millis_above_zero(
        &self,
        var: &'static str,
        allowed: &'static str,
    ) -> Result<Option<Duration>, Error> {
        let Some(v) = self.get(var) else {
            return Ok(None);
        };
        match parse_num::<u64>(var, &v, allowed)? {
            0 => Err(Error::config(var, &v, allowed)),
            ms => Ok(Some(Duration::from_millis(ms))),
        }
    }

    /// A boolean, spelled as the Python frameworks accept it (see [`parse_bool`]).
    pub fn bool(&self, var: &'static str) -> Result<Option<bool>, Error> {
        self.get(var).map(|v| parse_bool(var, &v)).transpose()
    }

    /// A comma-separated list, items trimmed, empty items dropped.
    pub fn list(&self, var: &str) -> Option<Vec<String>> {
        self.get(var).map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
    }
}

/// Parses a boolean the way the Python frameworks do: `true`/`1`/`yes`/`on`
/// (and empty) or `false`/`0`/`no`/`off`, in any case.
///
/// ```
/// assert!(!cache_core::env::parse_bool("CACHE_ENABLED", "Off")?);
/// assert!(cache_core::env::parse_bool("CACHE_ENABLED", "maybe").is_err());
/// # Ok::<(), cache_core::Error>(())
/// ```
pub fn parse_bool(var: &'static str, value: &str) -> Result<bool, Error> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(Error::Config {
            var,
            value: value.to_owned(),
            allowed: "true/false (also 1/0, yes/no, on/off)",
        }),
    }
}

fn parse_num<T: FromStr>(
    var: &'static str,
    value: &str,
    allowed: &'static str,
) -> Result<T, Error> {
    value
        .trim()
        .parse()
        .map_err(|_| Error::config(var, value, allowed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn zero_is_refused_where_a_bound_must_be_positive() {
        let lookup = vars(&[("ZERO_MS", "0"), ("U", " 12 ")]);
        let v = Vars::new(&lookup);
        let err = v
            .millis_above_zero("ZERO_MS", "above 0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ZERO_MS") && err.contains("above 0"), "{err}");
        assert_eq!(v.millis("ZERO_MS", "ms").unwrap(), Some(Duration::ZERO));
        assert_eq!(
            v.millis_above_zero("U", "ms").unwrap(),
            Some(Duration::from_millis(12))
        );
        assert_eq!(v.seconds("missing", "s").unwrap(), None);
    }

    #[test]
    fn lists_drop_empty_items() {
        let lookup = vars(&[("L", " a, ,b ,"), ("E", " , ")]);
        let v = Vars::new(&lookup);
        assert_eq!(v.list("L"), Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(v.list("E"), Some(vec![]));
        assert_eq!(v.list("missing"), None);
    }
}
