//! What a cached call shows: its `tracing` span (fields as OpenTelemetry's
//! conventions name them where they exist), the event it ends with, and
//! the per-function counters of `cacheside::function_stats`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cacheside::backends::MemoryBackend;
use cacheside::Cache;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

type Fields = HashMap<String, String>;

/// Keeps the fields of every closed `cacheside.call` span, and the messages of events.
#[derive(Clone, Default)]
struct Capture {
    closed: Arc<Mutex<Vec<Fields>>>,
    events: Arc<Mutex<Vec<Fields>>>,
}

struct Collect<'a>(&'a mut Fields);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        attrs.record(&mut Collect(&mut fields));
        fields.insert("name".into(), attrs.metadata().name().into());
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(fields) = span.extensions_mut().get_mut::<Fields>() {
                values.record(&mut Collect(fields));
            }
        }
    }
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        event.record(&mut Collect(&mut fields));
        self.events.lock().unwrap().push(fields);
    }
    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            if let Some(fields) = span.extensions_mut().remove::<Fields>() {
                if fields["name"] == "cacheside.call" {
                    self.closed.lock().unwrap().push(fields);
                }
            }
        }
    }
}

impl Capture {
    /// The closed call spans of `function`, in order.
    fn calls(&self, function: &str) -> Vec<Fields> {
        self.closed
            .lock()
            .unwrap()
            .iter()
            .filter(|f| f.get("code.function.name").map(String::as_str) == Some(function))
            .cloned()
            .collect()
    }
}

#[cacheside::cache(key_prefix = "obs", resource_id = "id", expire = 60)]
async fn observed(id: u64) -> u64 {
    id * 10
}

#[cacheside::invalidate(key_prefix = "obs", resource_id = "id")]
async fn change(id: u64) {
    let _ = id;
}

#[cacheside::cache(key = "slow:{id}", expire = 60)]
async fn slow(id: u64) -> u64 {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    id
}

#[cacheside::cache(
    key_prefix = "secret",
    resource_id = "email",
    cache = "keyed",
    expire = 60
)]
async fn by_email(email: String) -> usize {
    email.len()
}

#[cacheside::cache(key_prefix = "plain-keys", resource_id = "email", expire = 60)]
async fn by_email_unrecorded(email: String) -> usize {
    email.len()
}

#[test]
fn every_call_has_a_span_an_event_and_per_function_counts() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        cacheside::init(Cache::builder(MemoryBackend::new(1_000)).build()).expect("init");
        cacheside::register(
            "keyed",
            Cache::builder(MemoryBackend::new(1_000))
                .record_keys(true)
                .build(),
        );

        // A miss, then a hit from the local tier (the wrapper's synchronous path).
        assert_eq!(observed(7).await, 70);
        assert_eq!(observed(7).await, 70);
        let calls = capture.calls("observed");
        assert_eq!(calls.len(), 2, "{calls:?}");
        let (miss, hit) = (&calls[0], &calls[1]);
        assert_eq!(miss["cacheside.outcome"], "miss");
        assert!(miss.contains_key("cacheside.body_ms"), "{miss:?}");
        assert_eq!(miss["cacheside.key_prefix"], "obs");
        assert_eq!(miss["cacheside.cache"], "global");
        assert_eq!(miss["db.system.name"], "memory");
        assert_eq!(miss["otel.kind"], "internal");
        assert_eq!(hit["cacheside.outcome"], "hit");
        assert_eq!(hit["cacheside.tier"], "local");
        assert!(hit.contains_key("cacheside.age_ms"), "{hit:?}");
        for call in &calls {
            assert!(
                !call.contains_key("cacheside.key"),
                "keys are not recorded by default: {call:?}"
            );
        }
        let events = capture.events.lock().unwrap().clone();
        for outcome in ["miss", "hit"] {
            assert!(
                events
                    .iter()
                    .any(|e| e.get("message").map(String::as_str)
                        == Some(&format!("cache {outcome}"))),
                "no `cache {outcome}` event in {events:?}"
            );
        }

        // Two callers of one missing key: one runs the body, one is coalesced.
        let (a, b) = tokio::join!(slow(3), slow(3));
        assert_eq!((a, b), (3, 3));
        let mut outcomes: Vec<String> = capture
            .calls("slow")
            .iter()
            .map(|c| c["cacheside.outcome"].clone())
            .collect();
        outcomes.sort();
        assert_eq!(outcomes, ["coalesced", "miss"]);

        // A cache built with `record_keys(true)` records them (a key may be an email).
        by_email("ana@example.com".into()).await;
        let keyed = capture.calls("by_email");
        assert_eq!(keyed[0]["cacheside.key"], "secret:ana@example.com");
        assert_eq!(keyed[0]["cacheside.cache"], "keyed");
        by_email_unrecorded("bo@example.com".into()).await;
        assert!(!capture.calls("by_email_unrecorded")[0].contains_key("cacheside.key"));

        // An invalidation is counted and logged.
        change(7).await;
        assert!(capture
            .events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.get("message").map(String::as_str) == Some("cache invalidation")));
        assert_eq!(observed(7).await, 70);

        let stats = cacheside::function_stats();
        let row = |f: &str| *stats.iter().find(|s| s.function == f).expect(f);
        let o = row("observed");
        assert_eq!((o.hits, o.local_hits, o.misses), (1, 1, 2), "{o:?}");
        assert_eq!(o.hit_ratio(), 1.0 / 3.0);
        let s = row("slow");
        assert_eq!((s.misses, s.coalesced), (1, 1), "{s:?}");
        assert_eq!(row("change").invalidations, 1);
        assert_eq!(row("by_email").cache, Some("keyed"));
    });
}
