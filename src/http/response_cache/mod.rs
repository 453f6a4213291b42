//! [`ResponseCacheLayer`]: a tower layer that caches whole HTTP responses
//! (status, headers, body) in a [`Cache`](crate::Cache).
//!
//! It needs nothing of axum: any tower stack whose services answer
//! [`http::Response`]s with a `Bytes` body takes it.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use cacheside::{backends::MemoryBackend, http::ResponseCacheLayer, Cache};
//! use cacheside::backend::{Bytes};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let cache = Cache::builder(MemoryBackend::new(1_000)).build();
//! let svc = ServiceBuilder::new()
//!     .layer(ResponseCacheLayer::new(cache))
//!     .service(service_fn(|_req: Request<Full<Bytes>>| async {
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("[1, 2, 3]"))))
//!     }));
//! let get = || Request::get("http://example.com/items").body(Full::new(Bytes::new())).unwrap();
//! assert_eq!(svc.clone().oneshot(get()).await.unwrap().headers()["x-cache"], "MISS");
//! assert_eq!(svc.oneshot(get()).await.unwrap().headers()["x-cache"], "HIT");
//! # }
//! ```
//!
//! The files: `layer.rs` (the configuration), `service.rs` (what it does per
//! request), `future.rs`, `key.rs` (which key a request reads), `vary.rs`
//! (variants of a `Vary` response), `stored.rs` (what is stored), `serve.rs`
//! (how a stored response is served), `cache_control.rs`.

mod cache_control;
mod future;
mod key;
mod layer;
mod serve;
mod service;
mod stored;
mod vary;

use http::header::HeaderName;

pub use future::ResponseFuture;
pub use layer::{default_cache_status, ResponseCacheLayer, DEFAULT_MAX_BODY_BYTES};
pub use service::ResponseCache;
pub use stored::{ResponseEntry, StoredResponse};

/// The name of the header that says how a response was served: `HIT`, `MISS` or `BYPASS`.
///
/// ```
/// assert_eq!(cacheside::http::X_CACHE.as_str(), "x-cache");
/// ```
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// Fuzzing hook (`fuzz/`), not API: what a hit makes of the bytes a store holds.
#[doc(hidden)]
pub mod __fuzz {
    use http::header::HeaderMap;
    use http::Response;
    use http_body_util::Full;

    use super::serve::{render, Served, View};
    use super::vary::variant_key;
    use super::{ResponseEntry, StoredResponse};
    use crate::backend::Bytes;

    /// Opens `stored` with `codec` as a base key's [`ResponseEntry`] (or, with
    /// `variant`, a variant's [`StoredResponse`]) and renders the hit for a
    /// request with `request` headers; `None` when it does not open, and for a
    /// vary index (whose variant key is computed).
    pub fn serve_stored(
        codec: &dyn cache_core::codec::Codec,
        stored: &[u8],
        variant: bool,
        request: &HeaderMap,
        head: bool,
        private: bool,
    ) -> Option<Response<Full<Bytes>>> {
        let entry = if variant {
            cache_core::codec::open::<StoredResponse>(codec, stored).ok()?
        } else {
            match cache_core::codec::open::<ResponseEntry>(codec, stored).ok()? {
                ResponseEntry::Response(entry) => entry,
                ResponseEntry::Vary(names) => {
                    let _ = variant_key("http:GET:/", &names, request);
                    return None;
                }
            }
        };
        let view = View {
            headers: request.clone(),
            private,
        };
        Some(render(entry, Served::Hit, head, &view))
    }
}
