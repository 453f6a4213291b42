//! The startup check both Redis backends run, and redis-rs errors with credentials removed.
//!
//! One rule for every store: a server that answers and refuses the
//! configuration (a wrong or missing password, a database it does not have,
//! a node that is not in a cluster, something that does not speak Redis) is
//! [`Error::Misconfigured`] at once, without retries; a server that does not
//! answer within the connect timeout is *unreachable*: the service starts,
//! logs a warning and fails open until it answers.

use ::redis::{Cmd, ConnectionInfo, RedisError};
use cache_core::Error;

use super::RedisOptions;

/// A redis-rs error as text, with the credentials of any URL in it masked
/// ([`cache_core::redact_url`]). Every redis-rs error cacheside returns or
/// logs is wrapped in one: its `Display` and `Debug` show only the cleaned text.
#[derive(Debug)]
pub(crate) struct RedisFailure {
    message: String,
    /// The server could not be reached (down, refused, timed out, dropped),
    /// as opposed to a server that answered with an error.
    pub(crate) unreachable: bool,
}

impl std::fmt::Display for RedisFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RedisFailure {}

impl From<RedisError> for RedisFailure {
    fn from(e: RedisError) -> Self {
        RedisFailure {
            message: cache_core::redact_url(&e.to_string()),
            unreachable: e.is_io_error()
                || e.is_connection_refusal()
                || e.is_timeout()
                || e.is_connection_dropped(),
        }
    }
}

/// [`Error::Backend`] for a redis-rs error, its text cleaned of credentials.
pub(crate) fn redis_error(backend: &'static str, op: &'static str, e: RedisError) -> Error {
    Error::backend(backend, op, RedisFailure::from(e))
}

/// True when `e` says the server could not be reached (down, refused, timed
/// out), as opposed to a server that answered and refused us.
pub(crate) fn is_unreachable(e: &Error) -> bool {
    match e {
        Error::Timeout { .. } => true,
        Error::Backend { source, .. } => source
            .downcast_ref::<RedisFailure>()
            .is_some_and(|r| r.unreachable),
        _ => false,
    }
}

/// Which variables a refusal names.
#[derive(Clone, Copy)]
pub(crate) struct Vars {
    pub(crate) password: &'static str,
    pub(crate) db: &'static str,
    pub(crate) address: &'static str,
}

/// For `CACHE_BACKEND=redis`.
pub(crate) const SINGLE: Vars = Vars {
    password: "CACHE_REDIS_PASSWORD (or the password in CACHE_REDIS_URL)",
    db: "CACHE_REDIS_DB (or the /db at the end of CACHE_REDIS_URL)",
    address: "CACHE_REDIS_URL (or CACHE_REDIS_HOST / CACHE_REDIS_PORT)",
};

/// For `CACHE_BACKEND=redis-cluster`.
#[cfg(feature = "redis-cluster")]
pub(crate) const CLUSTER: Vars = Vars {
    password: "CACHE_REDIS_CLUSTER_NODES (the password in the node URLs)",
    db:
        "CACHE_REDIS_CLUSTER_NODES (a cluster has only database 0: drop the /db from the node URLs)",
    address: "CACHE_REDIS_CLUSTER_NODES (or use CACHE_BACKEND=redis for a single server)",
};

/// What the startup check of one server found.
#[derive(Debug)]
pub(crate) enum Probe {
    /// It answered `check`.
    Ready,
    /// It did not answer (in time): start anyway, fail open. Why, for the log.
    Unreachable(Error),
}

/// Connects once to `info` (no retries) and sends `check`, all within
/// `options.connect_timeout`. A refusal of the configuration is an
/// [`Error::Misconfigured`] naming `vars`.
pub(crate) async fn probe(
    backend: &'static str,
    info: &ConnectionInfo,
    options: &RedisOptions,
    check: &Cmd,
    vars: Vars,
) -> Result<Probe, Error> {
    let server = super::describe(info);
    let client = super::client(backend, info.clone(), options)?;
    let limit = options.connect_timeout;
    let config = ::redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(limit))
        .set_response_timeout(Some(limit));
    let attempt = async {
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        check.query_async::<::redis::Value>(&mut conn).await
    };
    match tokio::time::timeout(limit, attempt).await {
        Err(_) => Ok(Probe::Unreachable(Error::Timeout {
            backend,
            op: "connect",
            after: limit,
        })),
        Ok(Ok(::redis::Value::ServerError(e))) => {
            classify(backend, &server, RedisError::from(e), vars)
        }
        Ok(Ok(_)) => Ok(Probe::Ready),
        Ok(Err(e)) => classify(backend, &server, e, vars),
    }
}

/// A refusal → [`Error::Misconfigured`]; anything else → unreachable.
pub(crate) fn classify(
    backend: &'static str,
    server: &str,
    e: RedisError,
    vars: Vars,
) -> Result<Probe, Error> {
    let text = e.to_string();
    let code = e.code().unwrap_or_default().to_owned();
    let has = |needle: &str| text.contains(needle) || code == needle;
    let refused = |problem: String, var: &'static str| {
        Err(Error::Misconfigured {
            backend,
            server: server.to_owned(),
            problem: cache_core::redact_url(&problem),
            var,
        })
    };
    if has("NOAUTH") {
        return refused(
            format!("the server requires a password and none was given ({text})"),
            vars.password,
        );
    }
    if e.kind() == ::redis::ErrorKind::AuthenticationFailed
        || has("WRONGPASS")
        || text.contains("invalid password")
        || text.contains("without any password configured")
    {
        return refused(
            format!("the server refused the password ({text})"),
            vars.password,
        );
    }
    if text.contains("switch database") || text.contains("DB index") || text.contains("SELECT") {
        return refused(
            format!("the server refused the database number ({text})"),
            vars.db,
        );
    }
    if text.contains("cluster support disabled") {
        return refused(
            format!("the node is not part of a Redis Cluster ({text})"),
            vars.address,
        );
    }
    if matches!(
        e.kind(),
        ::redis::ErrorKind::Parse | ::redis::ErrorKind::InvalidClientConfig
    ) {
        return refused(
            format!("the server did not answer as Redis does ({text})"),
            vars.address,
        );
    }
    Ok(Probe::Unreachable(redis_error(backend, "connect", e)))
}
