//! The conformance suite, and connection details, against a real `redis-server`.

use std::time::Duration;

use cacheside::backends::{RedisBackend, RedisOptions};
use cacheside::testing::conformance::{self, Capabilities};
use cacheside::testing::{RedisServer, Reply};
use cacheside::{BackendKind, Cache, Config, Error};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backend_conforms() {
    let server = RedisServer::start();
    // A key of someone else's, outside every namespace the suite uses.
    server
        .command(&[b"SET", b"outside:the:suite", b"kept"])
        .unwrap();
    // One connection shared by every namespace, as in a real service.
    let redis = RedisBackend::connect(&server.url())
        .await
        .expect("connect to the test server");
    conformance::fenced_fills(&conformance::shared_store(
        redis.clone(),
        Duration::from_secs(5),
    ))
    .await;
    conformance::run(
        conformance::shared_store(redis, Duration::from_secs(5)),
        Capabilities {
            patterns: true,
            counters: true,
        },
    )
    .await;
    // The suite's pattern deletes and clears stay in their namespaces: the other key is still there.
    assert_eq!(
        server
            .command(&[b"GET", b"outside:the:suite"])
            .unwrap()
            .as_text()
            .as_deref(),
        Some("kept")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_are_plain_redis_strings_with_px_expiry() {
    let server = RedisServer::start();
    let cache = Cache::builder(RedisBackend::connect(&server.url()).await.unwrap())
        .namespace("app")
        .build();
    cache
        .set("widget:7", "spanner", Some(Duration::from_secs(100)))
        .await
        .unwrap();
    match server.command(&[b"PTTL", b"app:widget:7"]).unwrap() {
        Reply::Int(ms) => assert!((1..=100_000).contains(&ms), "PTTL {ms}"),
        other => panic!("PTTL answered {other:?}"),
    }
    assert_eq!(
        server.command(&[b"TYPE", b"app:widget:7"]).unwrap(),
        Reply::Status("string".into())
    );
    // A key without expiry (written by someone else) reports no TTL.
    server.command(&[b"SET", b"app:forever", b"x"]).unwrap();
    assert_eq!(cache.ttl("forever").await.unwrap(), None);
    assert!(cache.exists("forever").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_and_database_come_from_the_url() {
    let server = RedisServer::start_with_args(&["--requirepass", "s3cret"]);
    let port = server.port();
    let cache = |url: String| async move {
        let config = Config::from_lookup(|name| match name {
            "CACHE_BACKEND" => Some("redis".into()),
            "CACHE_REDIS_URL" => Some(url.clone()),
            "CACHE_OP_TIMEOUT_MS" => Some("2000".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.backend, BackendKind::Redis);
        cacheside::backends::connect(&config).await
    };
    let wrong = cache(format!("redis://:wrong@127.0.0.1:{port}/0")).await;
    // A refused password fails startup at once, naming the variable (README, "Startup and misconfiguration").
    assert!(
        matches!(
            &wrong,
            Err(Error::Misconfigured {
                backend: "redis",
                var,
                ..
            }) if var.contains("CACHE_REDIS_PASSWORD")
        ),
        "{wrong:?}"
    );
    let c = cache(format!("redis://:s3cret@127.0.0.1:{port}/3"))
        .await
        .expect("connect with password");
    assert_eq!(c.backend_name(), "redis");
    c.set("in-db-3", &1u8, None).await.unwrap();
    // Only database 3 holds it.
    let raw = |args: &[&[u8]]| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut req = Vec::new();
        for a in [
            &[b"AUTH".as_slice(), b"s3cret"][..],
            &[b"SELECT", b"3"],
            args,
        ] {
            req.extend(format!("*{}\r\n", a.len()).bytes());
            for x in a {
                req.extend(format!("${}\r\n", x.len()).bytes());
                req.extend_from_slice(x);
                req.extend(b"\r\n");
            }
        }
        s.write_all(&req).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert_eq!(raw(&[b"EXISTS", b"in-db-3"]), "+OK\r\n+OK\r\n:1\r\n");
    assert_eq!(raw(&[b"DBSIZE"]), "+OK\r\n+OK\r\n:1\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_a_backend_error_not_a_hang() {
    let port = cacheside::testing::free_port(); // nothing listens there
    let options = RedisOptions {
        connect_timeout: Duration::from_millis(200),
        max_reconnect_delay: Duration::from_millis(50),
        reconnect_attempts: 1,
        ..RedisOptions::default()
    };
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        RedisBackend::connect_with(&format!("redis://127.0.0.1:{port}/0"), options),
    )
    .await
    .expect("connect must give up on its own");
    let err = result.expect_err("nothing listens on the port");
    assert!(
        matches!(
            err,
            Error::Backend {
                backend: "redis",
                op: "connect",
                ..
            }
        ),
        "{err}"
    );
    let bad = RedisBackend::connect("not a url at all")
        .await
        .expect_err("malformed URL");
    assert!(
        matches!(
            bad,
            Error::Config {
                var: "CACHE_REDIS_URL",
                ..
            }
        ),
        "{bad}"
    );
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca_conforms() {
    let server = RedisServer::start_tls();
    assert!(server.url().starts_with("rediss://"));
    let ca = server.tls_ca_pem().expect("a TLS server has a CA").to_vec();
    let redis = RedisBackend::connect_with(
        &server.url(),
        RedisOptions {
            tls_root_cert: Some(ca),
            ..RedisOptions::default()
        },
    )
    .await
    .expect("connect over TLS, trusting the test CA");
    conformance::run(
        conformance::shared_store(redis, Duration::from_secs(5)),
        Capabilities {
            patterns: true,
            counters: true,
        },
    )
    .await;

    // Without the CA the server's certificate is not trusted: a clear connect error.
    let untrusted = RedisBackend::connect_with(
        &server.url(),
        RedisOptions {
            reconnect_attempts: 0,
            ..RedisOptions::default()
        },
    )
    .await
    .expect_err("the test CA is not a system root");
    assert!(
        matches!(
            untrusted,
            Error::Backend {
                backend: "redis",
                op: "connect",
                ..
            }
        ),
        "{untrusted}"
    );
    assert!(
        untrusted.to_string().to_lowercase().contains("certificate"),
        "the error must say the certificate is the problem: {untrusted}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_at_startup_does_not_stop_the_service() {
    // A port with nothing listening: the service starts, calls fail open.
    let port = cacheside::testing::free_port();
    let config = Config::from_lookup(|name| match name {
        "CACHE_BACKEND" => Some("redis".into()),
        "CACHE_REDIS_URL" => Some(format!("redis://127.0.0.1:{port}/0")),
        "CACHE_OP_TIMEOUT_MS" => Some("100".into()),
        _ => None,
    })
    .unwrap();
    let cache = cacheside::backends::connect(&config)
        .await
        .expect("startup must not fail when Redis is down");
    let v: u32 = cache.get_or_set("k", None, || async { 7 }).await.unwrap();
    assert_eq!(v, 7);
    assert!(cache.stats().errors >= 1, "{:?}", cache.stats());
    assert!(
        cache.get::<u32>("k").await.is_err(),
        "the store is still down"
    );
}
