//! The hook pipeline: who hears which event, in what order, and on which task.
//!
//! Two paths, chosen by the event:
//! - **observing** events (every event but `provider.request.prepared`) are put
//!   on a bounded queue and delivered by one background task, so a slow hook
//!   never adds latency to a request. When the queue is full the event is
//!   dropped and counted (`/plugins/status` shows the count).
//! - **mutating** events run inline, in priority order (lower first, then
//!   registration order); each hook sees the previous one's changes.
//!
//! Building an event's data costs something, so callers ask
//! [`HookBus::wants`] first and skip the work when nobody listens.
//!
//! Since plugin API 1.2 a subscription may ask for bodies and stream chunks
//! (`HookSpec::bodies`); an event carries its body only to the subscribers
//! that asked, and callers ask [`HookBus::wants_body`] before copying one, so
//! a proxy without such subscribers pays nothing. Observing hooks run in
//! priority order too, and an answer that modifies the data (the `pricing`
//! plugin adding `cost_usd`) is what the later hooks of that event see.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use ccproxy_plugin_abi::{
    HookBody, HookEvent,
    protocol::{InputOf, OutputOf, ops},
};
use serde::Serialize;
use serde_json::{Value, value::RawValue};
use tokio::sync::mpsc;

use crate::plugins::registry::ActivePlugin;

/// How long one hook call may take before it is abandoned.
const HOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// The most body bytes observed events may hold while they wait in the
/// queue: the queue bounds events by count, and one event may carry a
/// request body of many megabytes. An event whose body would pass this is
/// dropped and counted like one that found the queue full.
const QUEUED_BODY_BUDGET: u64 = 64 << 20;

/// One subscription of one plugin hook to one event.
#[derive(Clone)]
struct Subscriber {
    plugin: Arc<ActivePlugin>,
    hook: String,
    priority: i32,
    /// The plugin reads the data from the front of the body (plugin API 1.1
    /// and later), so it need not scan it to read the call.
    data_in_body: bool,
    /// The bodies the subscription asked for ([`body_bit`]s).
    bodies: u8,
}

/// The bit of `kind` in a subscription's body mask.
fn body_bit(kind: HookBody) -> u8 {
    match kind {
        HookBody::RequestBody => 1,
        HookBody::UpstreamRequestBody => 2,
        HookBody::UpstreamResponseBody => 4,
        HookBody::UpstreamChunks => 8,
        HookBody::ClientChunks => 16,
        _ => 0,
    }
}

/// A body an observed event carries to the subscribers that asked for it.
struct EventBody {
    kind: u8,
    bytes: Bytes,
    /// The event exists only for these subscribers (client-side chunks).
    only_for_askers: bool,
}

/// The first plugin API version whose SDK reads hook data from the body.
const DATA_IN_BODY_SINCE: (u64, u64) = (1, 1);

/// An observed event waiting in the queue. Its data is serialised once, on
/// the request's task, and copied as is into every subscriber's call: no
/// `Value` tree is built, cloned per subscriber, or freed on the hook task.
struct Observed {
    event: HookEvent,
    request_id: Option<String>,
    data: Box<RawValue>,
    timestamp_ms: u64,
    body: Option<EventBody>,
}

/// Event data as already-written JSON or, should writing it have failed, as
/// the value itself; serialised as the data alone.
#[derive(Serialize)]
#[serde(untagged)]
enum DataRef<'a> {
    Text(&'a RawValue),
    Value(&'a Value),
}

/// The JSON of `protocol::HookInput` (same fields, same order), borrowing
/// everything instead of owning it.
#[derive(Serialize)]
struct HookInputRef<'a, D: ?Sized> {
    hook: &'a str,
    event: &'a str,
    timestamp_ms: u64,
    request_id: Option<&'a str>,
    /// In the JSON for 1.0 plugins; `null` when it travels in the body.
    data: Option<&'a D>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_len: Option<u64>,
}

impl<D: ?Sized + Serialize> InputOf<ops::Hook> for HookInputRef<'_, D> {}

impl<'a, D: ?Sized + Serialize> HookInputRef<'a, D> {
    /// The call's JSON and body for hook `hook`: the data in the JSON (1.0),
    /// or `data_text` in front of `body` (`data_in_body`, 1.1 and later).
    #[allow(clippy::too_many_arguments)]
    fn encode(
        hook: &'a str,
        data_in_body: bool,
        event: &'a str,
        timestamp_ms: u64,
        request_id: Option<&'a str>,
        data: &'a D,
        data_text: &[u8],
        body: &[u8],
    ) -> (Self, Vec<u8>) {
        if data_in_body {
            let mut framed = Vec::with_capacity(data_text.len() + body.len());
            framed.extend_from_slice(data_text);
            framed.extend_from_slice(body);
            let input = HookInputRef {
                hook,
                event,
                timestamp_ms,
                request_id,
                data: None,
                data_len: Some(data_text.len() as u64),
            };
            (input, framed)
        } else {
            let input = HookInputRef {
                hook,
                event,
                timestamp_ms,
                request_id,
                data: Some(data),
                data_len: None,
            };
            (input, body.to_vec())
        }
    }
}

/// A hook's answer to an observed event, its new data kept as the JSON text
/// the plugin wrote (`protocol::HookOutput` read without building values).
#[derive(serde::Deserialize)]
struct ObservedReply {
    #[serde(default)]
    data: Option<Box<RawValue>>,
}

impl OutputOf<ops::Hook> for ObservedReply {}

/// Counters shown in `/plugins/status`.
#[derive(Debug, Default)]
pub struct HookCounters {
    /// Observed events queued.
    pub queued: AtomicU64,
    /// Observed events dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Hook calls that failed (error, panic or timeout).
    pub failed: AtomicU64,
    /// Observed events whose delivery to every subscriber finished.
    pub delivered: AtomicU64,
    /// Body bytes held by queued events (see `QUEUED_BODY_BUDGET`).
    pub queued_body_bytes: AtomicU64,
    /// When the last event was dropped, ms since the Unix epoch (0: never).
    pub last_drop_ms: AtomicU64,
}

impl HookCounters {
    /// Events dropped within `window` of now (for `/health`, which warns
    /// about recent drops rather than forever after one burst).
    pub fn dropped_within(&self, window: Duration) -> bool {
        let last = self.last_drop_ms.load(Ordering::Relaxed);
        last != 0 && now_ms().saturating_sub(last) <= window.as_millis() as u64
    }
}

/// Who listens to what: replaced as a whole when plugins are reloaded, so an
/// event in delivery keeps the subscribers it started with.
#[derive(Default)]
struct Subscriptions {
    by_event: HashMap<String, Vec<Subscriber>>,
    /// Per event, the union of the bodies its subscribers asked for.
    bodies_wanted: HashMap<String, u8>,
}

impl Subscriptions {
    fn of(&self, event: &str) -> &[Subscriber] {
        self.by_event.get(event).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// The hook pipeline.
pub struct HookBus {
    subscriptions: ArcSwap<Subscriptions>,
    queue: mpsc::Sender<Observed>,
    receiver: std::sync::Mutex<Option<mpsc::Receiver<Observed>>>,
    /// Counters.
    pub counters: HookCounters,
}

impl std::fmt::Debug for HookBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookBus")
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl HookBus {
    /// A bus whose observer queue holds `capacity` events.
    pub fn new(capacity: usize) -> Self {
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        Self {
            subscriptions: ArcSwap::default(),
            queue,
            receiver: std::sync::Mutex::new(Some(receiver)),
            counters: HookCounters::default(),
        }
    }

    /// Registers the hooks of `plugins` (in initialisation order), replacing
    /// any earlier set, and starts the observer task the first time. Called
    /// after plugins are initialised, and again after each reload.
    pub fn install(self: &Arc<Self>, plugins: &[Arc<ActivePlugin>]) {
        let mut by_event: HashMap<String, Vec<Subscriber>> = HashMap::new();
        for plugin in plugins {
            for spec in &plugin.manifest.hooks {
                for event in &spec.events {
                    let api = &plugin.api_version;
                    by_event.entry(event.clone()).or_default().push(Subscriber {
                        plugin: plugin.clone(),
                        hook: spec.name.clone(),
                        priority: spec.priority,
                        data_in_body: (api.major, api.minor) >= DATA_IN_BODY_SINCE,
                        bodies: spec
                            .bodies
                            .iter()
                            .fold(0, |mask, &kind| mask | body_bit(kind)),
                    });
                }
            }
        }
        // A stable sort keeps registration order among equal priorities.
        for subscribers in by_event.values_mut() {
            subscribers.sort_by_key(|s| s.priority);
        }
        let bodies_wanted = by_event
            .iter()
            .map(|(event, subscribers)| {
                let mask = subscribers.iter().fold(0, |mask, s| mask | s.bodies);
                (event.clone(), mask)
            })
            .filter(|(_, mask)| *mask != 0)
            .collect();
        self.subscriptions.store(Arc::new(Subscriptions {
            by_event,
            bodies_wanted,
        }));
        // The observer task starts with the first set; a reload only swaps the set.
        let receiver = self.receiver.lock().ok().and_then(|mut slot| slot.take());
        if let Some(mut receiver) = receiver {
            let bus = self.clone();
            tokio::spawn(async move {
                while let Some(observed) = receiver.recv().await {
                    let body_bytes = observed.body.as_ref().map_or(0, |b| b.bytes.len() as u64);
                    bus.deliver(observed).await;
                    bus.counters
                        .queued_body_bytes
                        .fetch_sub(body_bytes, Ordering::Relaxed);
                    bus.counters.delivered.fetch_add(1, Ordering::Release);
                }
            });
        }
    }

    /// Whether any hook listens to `event`.
    pub fn wants(&self, event: &HookEvent) -> bool {
        !self.subscriptions.load().of(event.as_str()).is_empty()
    }

    /// Whether any hook on `event` asked for body `kind` with it.
    pub fn wants_body(&self, event: &HookEvent, kind: HookBody) -> bool {
        self.subscriptions
            .load()
            .bodies_wanted
            .get(event.as_str())
            .is_some_and(|mask| mask & body_bit(kind) != 0)
    }

    /// Queues an observing event; never waits. `data` (a `Value`, or any
    /// serialisable value, which is cheaper than building a `Value`) is only
    /// built when someone listens.
    pub fn observe<D: Serialize>(
        &self,
        event: HookEvent,
        request_id: Option<&str>,
        data: impl FnOnce() -> D,
    ) {
        if !self.wants(&event) {
            return;
        }
        self.queue_observed(event, request_id, data(), None);
    }

    /// Like [`HookBus::observe`], with body `kind` (made by `body` only when a
    /// subscriber of `event` asked for it) for the subscribers that asked.
    pub fn observe_with_body<D: Serialize>(
        &self,
        event: HookEvent,
        request_id: Option<&str>,
        data: impl FnOnce() -> D,
        kind: HookBody,
        body: impl FnOnce() -> Bytes,
    ) {
        if !self.wants(&event) {
            return;
        }
        let body = self.wants_body(&event, kind).then(|| EventBody {
            kind: body_bit(kind),
            bytes: body(),
            only_for_askers: false,
        });
        self.queue_observed(event, request_id, data(), body);
    }

    /// An event that exists only for the subscribers that asked for body
    /// `kind` (client-side stream chunks): queued only when one did.
    pub fn observe_for_body<D: Serialize>(
        &self,
        event: HookEvent,
        request_id: Option<&str>,
        data: impl FnOnce() -> D,
        kind: HookBody,
        body: Bytes,
    ) {
        if !self.wants_body(&event, kind) {
            return;
        }
        let body = EventBody {
            kind: body_bit(kind),
            bytes: body,
            only_for_askers: true,
        };
        self.queue_observed(event, request_id, data(), Some(body));
    }

    fn queue_observed<D: Serialize>(
        &self,
        event: HookEvent,
        request_id: Option<&str>,
        data: D,
        body: Option<EventBody>,
    ) {
        let data = match serde_json::value::to_raw_value(&data) {
            Ok(data) => data,
            Err(error) => {
                tracing::warn!(%event, %error, "hook data could not be serialised; event dropped");
                return;
            }
        };
        let body_bytes = body.as_ref().map_or(0, |body| body.bytes.len() as u64);
        let held = self
            .counters
            .queued_body_bytes
            .fetch_add(body_bytes, Ordering::Relaxed);
        let observed = Observed {
            event,
            request_id: request_id.map(str::to_owned),
            data,
            timestamp_ms: now_ms(),
            body,
        };
        let queued = if body_bytes > 0 && held + body_bytes > QUEUED_BODY_BUDGET {
            false
        } else {
            self.queue.try_send(observed).is_ok()
        };
        if queued {
            self.counters.queued.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.counters
            .queued_body_bytes
            .fetch_sub(body_bytes, Ordering::Relaxed);
        let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        self.counters
            .last_drop_ms
            .store(now_ms(), Ordering::Relaxed);
        if dropped.is_power_of_two() {
            tracing::warn!(
                dropped,
                "hook queue full (or its bodies over 64 MiB); observed events are being dropped"
            );
        }
    }

    async fn deliver(&self, mut observed: Observed) {
        let subscriptions = self.subscriptions.load_full();
        for subscriber in subscriptions.of(observed.event.as_str()) {
            let body: &[u8] = match &observed.body {
                Some(body) if subscriber.bodies & body.kind != 0 => &body.bytes,
                Some(body) if body.only_for_askers => continue,
                _ => &[],
            };
            let (input, body) = HookInputRef::encode(
                &subscriber.hook,
                subscriber.data_in_body,
                observed.event.as_str(),
                observed.timestamp_ms,
                observed.request_id.as_deref(),
                &*observed.data,
                observed.data.get().as_bytes(),
                body,
            );
            let started = Instant::now();
            let result = subscriber
                .plugin
                .handle
                .call_reading_with_timeout::<ops::Hook, ObservedReply>(&input, body, HOOK_TIMEOUT)
                .await;
            subscriber.plugin.handle.record_hook_time(started);
            match result {
                // The later hooks of this event see what this one added, as
                // the text the plugin wrote: never parsed into values here.
                Ok(reply) => {
                    if let Some(data) = reply.meta.data {
                        observed.data = data;
                    }
                }
                Err(error) => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(plugin = %subscriber.plugin.manifest.name, hook = %subscriber.hook, event = %observed.event, %error, "hook failed");
                }
            }
        }
    }

    /// Runs a mutating event inline through every subscribed hook in priority
    /// order; returns the final data and body. A failing hook is logged and
    /// skipped: it cannot break the request.
    pub async fn mutate(
        &self,
        event: HookEvent,
        request_id: Option<&str>,
        mut data: Value,
        mut body: Vec<u8>,
    ) -> (Value, Vec<u8>) {
        // The data's JSON, written again only after a hook changed the data.
        let mut text = serde_json::value::to_raw_value(&data).ok();
        let event = event.as_str();
        let subscriptions = self.subscriptions.load_full();
        for subscriber in subscriptions.of(event) {
            let shown = match &text {
                Some(text) => DataRef::Text(text),
                None => DataRef::Value(&data),
            };
            let shown_text = text.as_ref().map_or("null", |text| text.get());
            let (input, framed) = HookInputRef::encode(
                &subscriber.hook,
                subscriber.data_in_body,
                event,
                now_ms(),
                request_id,
                &shown,
                shown_text.as_bytes(),
                &body,
            );
            let started = Instant::now();
            let result = subscriber
                .plugin
                .handle
                .call_with_timeout::<ops::Hook>(&input, framed, HOOK_TIMEOUT)
                .await;
            subscriber.plugin.handle.record_hook_time(started);
            match result {
                Ok(reply) => {
                    if let Some(new_data) = reply.meta.data {
                        data = new_data;
                        text = serde_json::value::to_raw_value(&data).ok();
                    }
                    if reply.meta.replace_body {
                        body = reply.body;
                    }
                }
                Err(error) => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(plugin = %subscriber.plugin.manifest.name, hook = %subscriber.hook, event, %error, "mutating hook failed; request continues unchanged by it");
                }
            }
        }
        (data, body)
    }

    /// Waits until every queued event has been delivered, including the one
    /// being delivered right now, or `deadline` passes (shutdown).
    pub async fn drain(&self, deadline: Duration) {
        let started = Instant::now();
        while self.counters.delivered.load(Ordering::Acquire)
            < self.counters.queued.load(Ordering::Acquire)
            && started.elapsed() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    #[test]
    fn bodies_past_the_budget_are_dropped_and_counted() {
        let bus = HookBus::new(16);
        let body = |len: usize| EventBody {
            kind: 1,
            bytes: Bytes::from(vec![b'x'; len]),
            only_for_askers: false,
        };
        let half = (QUEUED_BODY_BUDGET / 2) as usize;
        bus.queue_observed(HookEvent::RequestCompleted, None, 1, Some(body(half)));
        bus.queue_observed(HookEvent::RequestCompleted, None, 2, Some(body(half)));
        // A third half would pass the budget: dropped, and its bytes not held.
        bus.queue_observed(HookEvent::RequestCompleted, None, 3, Some(body(half)));
        // Events without a body still queue.
        bus.queue_observed(HookEvent::RequestCompleted, None, 4, None);
        assert_eq!(bus.counters.queued.load(Ordering::Relaxed), 3);
        assert_eq!(bus.counters.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(
            bus.counters.queued_body_bytes.load(Ordering::Relaxed),
            QUEUED_BODY_BUDGET
        );
    }

    #[test]
    fn drops_are_recent_for_a_while_only() {
        let counters = HookCounters::default();
        assert!(!counters.dropped_within(Duration::from_secs(300)));
        counters.last_drop_ms.store(now_ms(), Ordering::Relaxed);
        assert!(counters.dropped_within(Duration::from_secs(300)));
        counters
            .last_drop_ms
            .store(now_ms() - 301_000, Ordering::Relaxed);
        assert!(!counters.dropped_within(Duration::from_secs(300)));
    }
}

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::protocol::HookInput;
    use serde_json::json;

    use super::*;

    #[test]
    fn both_layouts_are_the_protocol_json() {
        let data = json!({"b": [1, 2.5, null], "a": {"nested": "x\"y"}});
        let raw = serde_json::value::to_raw_value(&data).unwrap();
        for request_id in [Some("r"), None] {
            let owned = HookInput {
                hook: "h".to_owned(),
                event: "request.completed".to_owned(),
                timestamp_ms: 7,
                request_id: request_id.map(str::to_owned),
                data: data.clone(),
                data_len: None,
            };
            let event_body = b"the event's body".as_slice();
            // 1.0: the data in the JSON, the body as it is.
            for shown in [DataRef::Text(&raw), DataRef::Value(&data)] {
                let (input, body) = HookInputRef::encode(
                    "h",
                    false,
                    "request.completed",
                    7,
                    request_id,
                    &shown,
                    raw.get().as_bytes(),
                    event_body,
                );
                let written: HookInput =
                    serde_json::from_str(&serde_json::to_string(&input).unwrap()).unwrap();
                assert_eq!(
                    serde_json::to_value(&written).unwrap(),
                    serde_json::to_value(&owned).unwrap()
                );
                assert_eq!(body, event_body);
            }
            // 1.1: `data_len` bytes of data in front of the body.
            let shown = DataRef::Text(&raw);
            let (input, body) = HookInputRef::encode(
                "h",
                true,
                "request.completed",
                7,
                request_id,
                &shown,
                raw.get().as_bytes(),
                event_body,
            );
            let written: HookInput =
                serde_json::from_str(&serde_json::to_string(&input).unwrap()).unwrap();
            let length = usize::try_from(written.data_len.expect("data_len is set")).unwrap();
            assert_eq!(written.data, Value::Null);
            let carried: Value = serde_json::from_slice(&body[..length]).unwrap();
            assert_eq!(carried, data);
            assert_eq!(&body[length..], event_body);
        }
    }
}
