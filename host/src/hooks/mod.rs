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
    HookBody, HookEvent, hook_wire,
    manifest::EVERY_KEY,
    protocol::{InputOf, OutputOf, ops},
};
use serde::Serialize;
use serde_json::{Value, value::RawValue};
use tokio::sync::mpsc;

use crate::plugins::{handle, registry::ActivePlugin};

/// The most observed events delivered together.
const MAX_BATCH: usize = 64;

/// How long the observer task waits, once an event has woken it, for the
/// ones that follow (the rest of the request's, the next requests'): they
/// go out together, each plugin taking them in one call, instead of a
/// wake-up of the plugin runtime and a call per plugin for each. Observed
/// hooks are off the request path, so nobody waits for them.
const OBSERVER_LINGER: Duration = Duration::from_millis(2);

/// How long one hook call may take before it is abandoned.
const HOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// The caller's own deadline for `hooks` inline hooks run in one hop.
fn inline_deadline(hooks: usize) -> Duration {
    HOOK_TIMEOUT * hooks as u32 + Duration::from_secs(1)
}

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
    /// The plugin takes its hook calls as `hook.batch` (plugin API 1.3).
    batch: bool,
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
    data: EventData,
    /// Where the data's top-level keys and values are, noted while writing
    /// it, for plugins that take `hook.batch`: encoded once
    /// (`hook_wire::encode_index`) and copied into each call (empty: not
    /// known).
    index: Vec<u8>,
    timestamp_ms: u64,
    body: Option<EventBody>,
}

impl Observed {
    /// Whether `subscriber` hears this event, and the body it gets with it.
    fn body_for(&self, subscriber: &Subscriber) -> Option<&[u8]> {
        match &self.body {
            Some(body) if subscriber.bodies & body.kind != 0 => Some(&body.bytes),
            Some(body) if body.only_for_askers => None,
            _ => Some(&[]),
        }
    }
}

/// An observed event's data: a plugin's answer read as JSON (`Checked`), or
/// text the host wrote or a `hook.batch` answer carried, which is checked
/// only when a plugin of plugin API 1.0 needs it inside its call's JSON (the
/// others parse it themselves, as they would any data).
enum EventData {
    Checked(Box<RawValue>),
    Unchecked(String),
}

impl EventData {
    fn text(&self) -> &str {
        match self {
            EventData::Checked(raw) => raw.get(),
            EventData::Unchecked(text) => text,
        }
    }

    /// The data as a JSON value to embed, checking it first if need be; an
    /// unchecked text that is not JSON becomes `null`.
    fn checked(&mut self) -> &RawValue {
        if let EventData::Unchecked(text) = self {
            let raw = RawValue::from_string(std::mem::take(text)).unwrap_or_else(|error| {
                tracing::warn!(%error, "a hook answered data that is not JSON; later 1.0 hooks see null");
                RawValue::from_string("null".to_owned()).expect("null is JSON")
            });
            *self = EventData::Checked(raw);
        }
        match self {
            EventData::Checked(raw) => raw,
            EventData::Unchecked(_) => unreachable!("checked above"),
        }
    }
}

/// Event data as already-written JSON or, should writing it have failed, as
/// the value itself (serialised as the data alone): what an inline hook's
/// 1.0 call carries in its JSON.
#[derive(Serialize)]
#[serde(untagged)]
enum OwnedData {
    Text(Box<RawValue>),
    Value(Value),
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
    /// The call's JSON and body for hook `hook`: the data in the JSON when
    /// given (`in_json`, 1.0), else `data_text` in front of `body` (1.1 and
    /// later).
    fn encode(
        hook: &'a str,
        in_json: Option<&'a D>,
        event: &'a str,
        timestamp_ms: u64,
        request_id: Option<&'a str>,
        data_text: &[u8],
        body: &[u8],
    ) -> (Self, Vec<u8>) {
        let Some(data) = in_json else {
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
            return (input, framed);
        };
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
    by_event: EventMap<Vec<Subscriber>>,
    /// Per event, the union of the bodies its subscribers asked for.
    bodies_wanted: EventMap<u8>,
    /// Per event with subscribers, the union of the data keys they read
    /// (plugin API 1.3, `HookSpec::reads`); `None`: some subscriber reads
    /// every key.
    keys_read: EventMap<Option<Vec<String>>>,
}

/// A map by event name, looked up several times per request and per stream
/// chunk: hashed with foldhash, not SipHash (a lookup was about 300
/// instructions; the names come from the plugins' manifests, not clients).
type EventMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

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
        let mut by_event: EventMap<Vec<Subscriber>> = EventMap::default();
        let mut keys_read: EventMap<Option<Vec<String>>> = EventMap::default();
        for plugin in plugins {
            for spec in &plugin.manifest.hooks {
                let every_key =
                    spec.reads.is_empty() || spec.reads.iter().any(|key| key == EVERY_KEY);
                for event in &spec.events {
                    let keys = keys_read
                        .entry(event.clone())
                        .or_insert_with(|| Some(Vec::new()));
                    match keys {
                        Some(keys) if !every_key => keys.extend(spec.reads.iter().cloned()),
                        _ => *keys = None,
                    }
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
                        batch: plugin.handle.speaks_hook_batch(),
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
            keys_read,
        }));
        // The observer task starts with the first set; a reload only swaps the set.
        let receiver = self.receiver.lock().ok().and_then(|mut slot| slot.take());
        if let Some(mut receiver) = receiver {
            let bus = self.clone();
            tokio::spawn(async move {
                // Every event waiting when the task wakes, and those that
                // come within the linger, are delivered together: one call
                // per plugin for all of them (plugins of plugin API 1.3;
                // older ones get a call per event as before).
                let mut batch = Vec::with_capacity(MAX_BATCH);
                while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
                    if batch.len() < MAX_BATCH {
                        tokio::time::sleep(OBSERVER_LINGER).await;
                        while batch.len() < MAX_BATCH {
                            match receiver.try_recv() {
                                Ok(observed) => batch.push(observed),
                                Err(_) => break,
                            }
                        }
                    }
                    let body_bytes: u64 = batch
                        .iter()
                        .map(|o| o.body.as_ref().map_or(0, |b| b.bytes.len() as u64))
                        .sum();
                    let events = batch.len() as u64;
                    bus.deliver(&mut batch).await;
                    batch.clear();
                    bus.counters
                        .queued_body_bytes
                        .fetch_sub(body_bytes, Ordering::Relaxed);
                    bus.counters.delivered.fetch_add(events, Ordering::Release);
                }
            });
        }
    }

    /// Whether any hook listens to `event`.
    pub fn wants(&self, event: &HookEvent) -> bool {
        !self.subscriptions.load().of(event.as_str()).is_empty()
    }

    /// How long [`HookBus::mutate`] may take on `event` at most: every
    /// inline hook's timeout, plus a second; `None` when no hook listens.
    pub fn inline_deadline(&self, event: &HookEvent) -> Option<Duration> {
        let hooks = self.subscriptions.load().of(event.as_str()).len();
        (hooks > 0).then(|| inline_deadline(hooks))
    }

    /// Whether a hook on `event` reads its data's top-level `key`: `false`
    /// when none listens or every one named the keys it reads without it
    /// (plugin API 1.3), so the member can be left out of the data.
    pub fn reads_key(&self, event: &HookEvent, key: &str) -> bool {
        match self.subscriptions.load().keys_read.get(event.as_str()) {
            None => false,
            Some(None) => true,
            Some(Some(keys)) => keys.iter().any(|read| read == key),
        }
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
        let (data, index) = match hook_wire::to_indexed_json(&data) {
            Ok((data, index)) => (data, hook_wire::encode_index(&index)),
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
            data: EventData::Unchecked(data),
            index,
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

    /// Delivers `events` (in queue order) to their subscribers. Each event
    /// goes through its subscribers in priority order, each one seeing what
    /// the ones before it changed, and each plugin gets its events in queue
    /// order, as when they were delivered one at a time; what changes is
    /// that a plugin gets the calls that are due for it together: all the
    /// events for which it is next, up to the first one that still waits for
    /// an earlier subscriber. With one subscriber per plugin that is one call
    /// per plugin for the whole batch.
    async fn deliver(&self, events: &mut [Observed]) {
        let subscriptions = self.subscriptions.load_full();
        // Each event's subscribers, in priority order, and how many have had it.
        let hearers: Vec<Vec<&Subscriber>> = events
            .iter()
            .map(|observed| {
                subscriptions
                    .of(observed.event.as_str())
                    .iter()
                    .filter(|subscriber| observed.body_for(subscriber).is_some())
                    .collect()
            })
            .collect();
        let mut done = vec![0; events.len()];
        let mut group = Vec::new();
        while next_group(
            &hearers,
            &done,
            |a, b| Arc::ptr_eq(&a.plugin, &b.plugin),
            &mut group,
        ) {
            let plugin = &hearers[group[0]][done[group[0]]].plugin;
            if plugin.handle.speaks_hook_batch() {
                self.deliver_batched(events, &hearers, &done, &group).await;
            } else {
                for &i in &group {
                    self.deliver_one(&mut events[i], hearers[i][done[i]]).await;
                }
            }
            for &i in &group {
                done[i] += 1;
            }
        }
    }

    /// One `hook.call` of event `observed` to `subscriber` (plugins before
    /// plugin API 1.3).
    async fn deliver_one(&self, observed: &mut Observed, subscriber: &Subscriber) {
        if !subscriber.data_in_body {
            observed.data.checked();
        }
        let in_json = match &observed.data {
            EventData::Checked(raw) if !subscriber.data_in_body => Some(&**raw),
            _ => None,
        };
        let (input, body) = HookInputRef::encode(
            &subscriber.hook,
            in_json,
            observed.event.as_str(),
            observed.timestamp_ms,
            observed.request_id.as_deref(),
            observed.data.text().as_bytes(),
            observed.body_for(subscriber).unwrap_or_default(),
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
                    observed.data = EventData::Checked(data);
                    observed.index.clear();
                }
            }
            Err(error) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(plugin = %subscriber.plugin.manifest.name, hook = %subscriber.hook, event = %observed.event, %error, "hook failed");
            }
        }
    }

    /// One `hook.batch` of the events `group` (indexes into `events`) to
    /// their next subscriber, all hooks of one plugin.
    async fn deliver_batched(
        &self,
        events: &mut [Observed],
        hearers: &[Vec<&Subscriber>],
        done: &[usize],
        group: &[usize],
    ) {
        let plugin = &hearers[group[0]][done[group[0]]].plugin;
        let entry = |i: usize| {
            let observed = &events[i];
            let subscriber = hearers[i][done[i]];
            (
                subscriber.hook.as_str(),
                observed.event.as_str(),
                observed.request_id.as_deref(),
                observed.data.text(),
                observed.index.as_slice(),
                observed.body_for(subscriber).unwrap_or_default(),
            )
        };
        let size = group
            .iter()
            .map(|&i| {
                let (hook, event, request_id, data, index, body) = entry(i);
                hook_wire::entry_size(hook, event, request_id, data, index, body)
            })
            .sum();
        let mut frame = hook_wire::CallWriter::new(group.len(), size);
        for &i in group {
            let (hook, event, request_id, data, index, body) = entry(i);
            frame.entry(
                hook,
                event,
                events[i].timestamp_ms,
                request_id,
                data,
                index,
                body,
            );
        }
        let calls = group.len() as u32;
        let started = Instant::now();
        let result = plugin
            .handle
            .call_frame_with_timeout(hook_wire::BATCH_OP, frame.finish(), HOOK_TIMEOUT * calls)
            .await;
        plugin.handle.record_hook_calls(started, u64::from(calls));
        let reply = match result {
            Ok(reply) => reply,
            Err(error) => {
                self.counters
                    .failed
                    .fetch_add(u64::from(calls), Ordering::Relaxed);
                tracing::warn!(plugin = %plugin.manifest.name, calls, %error, "hook calls failed");
                return;
            }
        };
        let mut reader = hook_wire::Reader::new(reply.as_slice());
        if reader.u32().ok() != Some(calls) {
            self.counters
                .failed
                .fetch_add(u64::from(calls), Ordering::Relaxed);
            tracing::warn!(plugin = %plugin.manifest.name, calls, "hook calls answered with a malformed frame");
            return;
        }
        for &i in group {
            let subscriber = hearers[i][done[i]];
            match reader.outcome() {
                Ok(hook_wire::Outcome::Continue) => {}
                // The later hooks of this event see what this one added.
                Ok(hook_wire::Outcome::Modify { data, index, .. }) => {
                    events[i].data = EventData::Unchecked(data.to_owned());
                    events[i].index = hook_wire::encode_index(&index);
                }
                Ok(hook_wire::Outcome::Failed { code, message }) => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    plugin.handle.record_entry_failure(code, message);
                    tracing::warn!(plugin = %plugin.manifest.name, hook = %subscriber.hook, event = %events[i].event, error = %message, "hook failed");
                }
                Err(error) => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(plugin = %plugin.manifest.name, hook = %subscriber.hook, event = %events[i].event, %error, "hook failed");
                }
            }
        }
    }

    /// Runs a mutating event inline through every subscribed hook in priority
    /// order; returns the data a hook changed (`None`: as given, so the caller
    /// reads nothing back) and the final body. A failing hook is logged and
    /// skipped: it cannot break the request. `data` is written straight to
    /// JSON (a borrowed struct, no `Value` built).
    ///
    /// All the hooks run in one task on the plugin runtime (one hop across
    /// runtimes for the event, not one per hook), each call with its own
    /// timeout there. A hook that blocks its thread cannot be timed out from
    /// inside that thread, so the caller also keeps a deadline of its own
    /// (every hook's timeout, plus a second) and, should it pass, goes on
    /// with the changes the hooks before that one made.
    pub async fn mutate(
        &self,
        event: HookEvent,
        request_id: Option<&str>,
        data: &(impl Serialize + ?Sized),
        body: Vec<u8>,
    ) -> (Option<Value>, Vec<u8>) {
        let subscriptions = self.subscriptions.load_full();
        let hooks = subscriptions.of(event.as_str()).len();
        if hooks == 0 {
            return (None, body);
        }
        let (text, index) = match hook_wire::to_indexed_json(data) {
            Ok((text, index)) => (Some(text), hook_wire::encode_index(&index)),
            Err(_) => (None, Vec::new()),
        };
        let state = Arc::new(std::sync::Mutex::new(Mutation {
            data: None,
            text,
            index,
            body,
            abandoned: false,
        }));
        let run = run_mutating(
            subscriptions,
            event.clone(),
            request_id.map(str::to_owned),
            state.clone(),
        );
        let deadline = inline_deadline(hooks);
        let failed = match tokio::time::timeout(deadline, handle::in_one_hop(run)).await {
            Ok(Some(failed)) => failed,
            Ok(None) => {
                tracing::error!(%event, "inline hooks stopped (the plugin runtime stopped or the host panicked); the request goes on with the changes made so far");
                1
            }
            Err(_) => {
                tracing::warn!(%event, "inline hooks did not finish within {} (a hook blocks its thread); the request goes on with the changes made so far", handle::duration_text(deadline));
                1
            }
        };
        if failed > 0 {
            self.counters.failed.fetch_add(failed, Ordering::Relaxed);
        }
        let mut state = lock(&state);
        state.abandoned = true;
        (
            std::mem::take(&mut state.data),
            std::mem::take(&mut state.body),
        )
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

/// The calls that go next in one delivery (see [`HookBus::deliver`]):
/// `hearers[i]` are event `i`'s subscribers in priority order, `done[i]` how
/// many of them have had it; `same` tells whether two are of one plugin.
/// Fills `group` with the events whose call goes to the next subscriber of
/// the earliest unfinished event, a plugin, and is due: that plugin is next
/// for it and waits for none of its earlier events. `false` when all is done.
fn next_group<T>(
    hearers: &[Vec<T>],
    done: &[usize],
    same: impl Fn(&T, &T) -> bool,
    group: &mut Vec<usize>,
) -> bool {
    group.clear();
    let Some(first) = (0..hearers.len()).find(|&i| done[i] < hearers[i].len()) else {
        return false;
    };
    let next = &hearers[first][done[first]];
    for (i, subscribers) in hearers.iter().enumerate().skip(first) {
        let rest = &subscribers[done[i]..];
        match rest.iter().position(|s| same(s, next)) {
            Some(0) => {
                group.push(i);
                // Another hook of the plugin on this event, later: it comes
                // before the plugin's calls for later events.
                if rest[1..].iter().any(|s| same(s, next)) {
                    break;
                }
            }
            // An earlier hook of that event comes first: so do the plugin's
            // calls for this event and every later one.
            Some(_) => break,
            None => {}
        }
    }
    true
}

/// What the inline hooks of one event have made of its data and body so
/// far, shared with the caller so that a caller whose deadline passed goes on
/// with it (see [`HookBus::mutate`]).
struct Mutation {
    /// The data as the hook that changed it last answered it; `None` while
    /// no hook changed it.
    data: Option<Value>,
    /// The data's JSON: as the hook that changed it last wrote it, or as the
    /// host wrote it (`None` should writing it have failed).
    text: Option<String>,
    /// Where `text`'s top-level keys and values are, encoded
    /// (`hook_wire::encode_index`; empty: not known).
    index: Vec<u8>,
    body: Vec<u8>,
    /// The caller went on without waiting: later changes are not wanted.
    abandoned: bool,
}

fn lock(state: &std::sync::Mutex<Mutation>) -> std::sync::MutexGuard<'_, Mutation> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The inline hooks of `event`, one after another, on whichever runtime runs
/// this; answers how many failed.
async fn run_mutating(
    subscriptions: Arc<Subscriptions>,
    event: HookEvent,
    request_id: Option<String>,
    state: Arc<std::sync::Mutex<Mutation>>,
) -> u64 {
    let event = event.as_str();
    let mut failed = 0;
    for subscriber in subscriptions.of(event) {
        if subscriber.batch {
            match call_batched(subscriber, event, request_id.as_deref(), &state).await {
                Ok(true) => continue,
                Ok(false) => break,
                Err(error) => {
                    failed += 1;
                    tracing::warn!(plugin = %subscriber.plugin.manifest.name, hook = %subscriber.hook, event, %error, "mutating hook failed; request continues unchanged by it");
                    continue;
                }
            }
        }
        // The call's body (and, for a 1.0 plugin, the data for its JSON),
        // copied out so no lock is held while the hook runs.
        let (framed, data_len, in_json) = {
            let state = lock(&state);
            if state.abandoned {
                break;
            }
            let text = state.text.as_deref().unwrap_or("null");
            if subscriber.data_in_body {
                let mut framed = Vec::with_capacity(text.len() + state.body.len());
                framed.extend_from_slice(text.as_bytes());
                framed.extend_from_slice(&state.body);
                (framed, Some(text.len() as u64), None)
            } else {
                let in_json = match state.text.clone().map(RawValue::from_string) {
                    Some(Ok(text)) => OwnedData::Text(text),
                    _ => OwnedData::Value(state.data.clone().unwrap_or_default()),
                };
                (state.body.clone(), None, Some(in_json))
            }
        };
        let input = HookInputRef {
            hook: &subscriber.hook,
            event,
            timestamp_ms: now_ms(),
            request_id: request_id.as_deref(),
            data: in_json.as_ref(),
            data_len,
        };
        let started = Instant::now();
        let result = subscriber
            .plugin
            .handle
            .call_with_timeout::<ops::Hook>(&input, framed, HOOK_TIMEOUT)
            .await;
        subscriber.plugin.handle.record_hook_time(started);
        match result {
            Ok(reply) => {
                let mut state = lock(&state);
                if state.abandoned {
                    break;
                }
                if let Some(new_data) = reply.meta.data {
                    (state.text, state.index) = match hook_wire::to_indexed_json(&new_data) {
                        Ok((text, index)) => (Some(text), hook_wire::encode_index(&index)),
                        Err(_) => (None, Vec::new()),
                    };
                    state.data = Some(new_data);
                }
                if reply.meta.replace_body {
                    state.body = reply.body;
                }
            }
            Err(error) => {
                failed += 1;
                tracing::warn!(plugin = %subscriber.plugin.manifest.name, hook = %subscriber.hook, event, %error, "mutating hook failed; request continues unchanged by it");
            }
        }
    }
    failed
}

/// One inline hook's `hook.batch` call (a batch of one: the next hook needs
/// this one's answer). `Ok(false)` when the caller went on without waiting.
async fn call_batched(
    subscriber: &Subscriber,
    event: &str,
    request_id: Option<&str>,
    state: &std::sync::Mutex<Mutation>,
) -> Result<bool, String> {
    let frame = {
        let state = lock(state);
        if state.abandoned {
            return Ok(false);
        }
        let text = state.text.as_deref().unwrap_or("null");
        let (hook, index, body) = (&subscriber.hook, &state.index, &state.body);
        let size = hook_wire::entry_size(hook, event, request_id, text, index, body);
        let mut frame = hook_wire::CallWriter::new(1, size);
        frame.entry(hook, event, now_ms(), request_id, text, index, body);
        frame.finish()
    };
    let handle = &subscriber.plugin.handle;
    let started = Instant::now();
    let result = handle
        .call_frame_with_timeout(hook_wire::BATCH_OP, frame, HOOK_TIMEOUT)
        .await;
    handle.record_hook_time(started);
    let reply = result.map_err(|error| error.to_string())?;
    let mut reader = hook_wire::Reader::new(reply.as_slice());
    if reader.u32() != Ok(1) {
        return Err("the plugin answered a malformed frame".to_owned());
    }
    match reader.outcome().map_err(|error| error.to_string())? {
        hook_wire::Outcome::Continue => Ok(true),
        hook_wire::Outcome::Modify { data, index, body } => {
            let value: Value = serde_json::from_str(data)
                .map_err(|error| format!("the plugin answered data that is not JSON: {error}"))?;
            let mut state = lock(state);
            if state.abandoned {
                return Ok(false);
            }
            state.data = Some(value);
            state.text = Some(data.to_owned());
            state.index = hook_wire::encode_index(&index);
            if let Some(body) = body {
                state.body = body.to_vec();
            }
            Ok(true)
        }
        hook_wire::Outcome::Failed { code, message } => {
            handle.record_entry_failure(code, message);
            Err(message.to_owned())
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

    /// Runs the delivery order of `hearers` (plugin names per event) and
    /// answers the calls made: plugin and the events it got together.
    fn delivery(hearers: &[Vec<&'static str>]) -> Vec<(&'static str, Vec<usize>)> {
        let mut done = vec![0; hearers.len()];
        let mut group = Vec::new();
        let mut calls = Vec::new();
        while next_group(hearers, &done, |a, b| a == b, &mut group) {
            calls.push((hearers[group[0]][done[group[0]]], group.clone()));
            for &i in &group {
                done[i] += 1;
            }
        }
        calls
    }

    #[test]
    fn a_batch_goes_to_each_plugin_in_one_call_when_orders_allow() {
        let calls = delivery(&[vec!["pricing", "log"], vec!["pricing", "log"], vec!["log"]]);
        assert_eq!(calls, [("pricing", vec![0, 1]), ("log", vec![0, 1, 2])]);
    }

    #[test]
    fn priority_per_event_and_queue_order_per_plugin_hold() {
        // Event 0 goes to q then p, event 1 to p then q: p must not get event
        // 1 before event 0, q not event 1 before p had it.
        let calls = delivery(&[vec!["q", "p"], vec!["p", "q"]]);
        assert_eq!(calls, [("q", vec![0]), ("p", vec![0, 1]), ("q", vec![1])]);
        // A plugin waiting for an earlier hook of one event takes none of
        // the later events yet.
        let calls = delivery(&[vec!["p"], vec!["q", "p"], vec!["p"]]);
        assert_eq!(calls, [("p", vec![0]), ("q", vec![1]), ("p", vec![1, 2])]);
        // Two hooks of one plugin on one event: one call each, in order.
        let calls = delivery(&[vec!["p", "q", "p"], vec!["p"]]);
        assert_eq!(calls, [("p", vec![0]), ("q", vec![0]), ("p", vec![0, 1])]);
        assert!(delivery(&[vec![], vec![]]).is_empty());
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
            for shown in [OwnedData::Text(raw.clone()), OwnedData::Value(data.clone())] {
                let (input, body) = HookInputRef::encode(
                    "h",
                    Some(&shown),
                    "request.completed",
                    7,
                    request_id,
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
            let (input, body) = HookInputRef::encode(
                "h",
                None::<&RawValue>,
                "request.completed",
                7,
                request_id,
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
