// Parley SDK core: the pure, browser-independent pieces of the client.
//
// Everything here takes its clock, storage and network as parameters so that it
// runs unchanged under `node --test` (see internal/web/sdktest/). parley.js wires
// these pieces to EventSource, fetch, localStorage, Web Locks and BroadcastChannel.
//
// Nothing in this file touches `window`, `document` or `navigator`.

/** Connection states, as exposed by `Parley#state`. */
export const STATES = Object.freeze([
  "connecting",
  "connected",
  "reconnecting",
  "polling",
  "disconnected",
]);

/** Event types that never carry an id (SPEC §3); they never move the resume point. */
export const EPHEMERAL_TYPES = new Set(["ready", "reset", "typing", "presence", "session.expired"]);

/** Every event type named in SPEC §3 (app.* types are added when subscribed to). */
export const KNOWN_TYPES = Object.freeze([
  "ready",
  "reset",
  "session.expired",
  "typing",
  "presence",
  "conversation.created",
  "message.created",
  "message.updated",
  "message.deleted",
  "receipt",
  "call.ringing",
  "call.accepted",
  "call.declined",
  "call.ended",
  "call.missed",
  "call.signal",
]);

/** The real clock. Tests pass a fake with the same four methods. */
export const realClock = Object.freeze({
  now: () => Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (h) => globalThis.clearTimeout(h),
  random: () => Math.random(),
});

// ---------------------------------------------------------------------------
// Backoff

/**
 * Delay before reconnect attempt number `attempt` (0 = first retry):
 * `baseMs * 2^attempt`, capped at `maxMs`, then reduced by up to `jitter`
 * (a fraction) at random so that many clients dropped at once do not come back
 * in lockstep. The result is always within [nominal * (1 - jitter), nominal]
 * and never above maxMs.
 */
export function backoffDelay(attempt, { baseMs = 1000, maxMs = 30000, jitter = 0.2, random = Math.random } = {}) {
  const n = Math.max(0, Math.floor(Number(attempt) || 0));
  const nominal = Math.min(maxMs, baseMs * 2 ** Math.min(n, 40));
  const j = Math.min(Math.max(Number(jitter) || 0, 0), 1);
  return Math.round(nominal * (1 - j * random()));
}

/**
 * Failure counter with exponential backoff. `fail()` returns the delay before the
 * next attempt, or null once `maxFailures` consecutive failures have happened
 * (0 or Infinity: never give up). `reset()` after a success.
 */
export class Backoff {
  constructor({ baseMs = 1000, maxMs = 30000, jitter = 0.2, maxFailures = 0, random = Math.random } = {}) {
    this.baseMs = baseMs;
    this.maxMs = maxMs;
    this.jitter = jitter;
    this.maxFailures = maxFailures;
    this.random = random;
    this._failures = 0;
  }
  get failures() {
    return this._failures;
  }
  get exhausted() {
    return this.maxFailures > 0 && Number.isFinite(this.maxFailures) && this._failures >= this.maxFailures;
  }
  fail() {
    this._failures++;
    if (this.exhausted) return null;
    return backoffDelay(this._failures - 1, this);
  }
  reset() {
    this._failures = 0;
  }
}

// ---------------------------------------------------------------------------
// Ordering and de-duplication

/**
 * EventSequencer hands durable events on exactly once and in id order.
 *
 * - An event whose id is <= lastId is a duplicate (replay seam, relay from another
 *   tab, gap fill) and is dropped.
 * - The event lastId+1 is delivered, followed by any held events that now follow on.
 * - An event further ahead is held until the gap is filled (`push`), the caller
 *   gives up on the gap (`flush`), or a reset moves the baseline (`reset`).
 * - Events without an id (ephemeral) pass straight through.
 * - With no baseline yet (lastId null) the first durable event sets it.
 */
export class EventSequencer {
  constructor({ lastId = null, maxHeld = 5000 } = {}) {
    this.lastId = lastId == null ? null : Number(lastId);
    this.maxHeld = maxHeld;
    this.held = new Map();
    this.duplicates = 0;
    this.skipped = 0;
  }

  /** Whether events are held behind a missing id. */
  get hasGap() {
    return this.held.size > 0;
  }

  /** The missing id range [from, to] while hasGap, else null. */
  get gap() {
    if (!this.held.size) return null;
    const min = Math.min(...this.held.keys());
    return [this.lastId == null ? min : this.lastId + 1, min - 1];
  }

  /** Accepts one event ({id?, type, data}); returns the events now deliverable, in order. */
  push(event) {
    if (event == null) return [];
    if (event.id == null) return [event];
    const id = Number(event.id);
    if (!Number.isFinite(id)) return [event];
    if (this.lastId == null) {
      this.lastId = id;
      return [event, ...this._drain()];
    }
    if (id <= this.lastId || this.held.has(id)) {
      this.duplicates++;
      return [];
    }
    if (id === this.lastId + 1) {
      this.lastId = id;
      return [event, ...this._drain()];
    }
    this.held.set(id, event);
    if (this.held.size > this.maxHeld) return this.flush();
    return [];
  }

  /** Gives up on the current gap: delivers every held event in id order. */
  flush() {
    const ids = [...this.held.keys()].sort((a, b) => a - b);
    const out = [];
    for (const id of ids) {
      if (this.lastId != null && id > this.lastId + 1) this.skipped += id - this.lastId - 1;
      out.push(this.held.get(id));
      this.lastId = id;
    }
    this.held.clear();
    return out;
  }

  /**
   * Moves the baseline to `lastId` (a `reset` from the server, or a new user):
   * held events at or below it are dropped; held events that follow on are returned.
   */
  reset(lastId) {
    this.lastId = lastId == null ? null : Number(lastId);
    for (const id of [...this.held.keys()]) if (this.lastId != null && id <= this.lastId) this.held.delete(id);
    if (this.lastId == null) return [];
    return this._drain();
  }

  _drain() {
    const out = [];
    while (this.held.has(this.lastId + 1)) {
      const next = this.lastId + 1;
      out.push(this.held.get(next));
      this.held.delete(next);
      this.lastId = next;
    }
    return out;
  }
}

// ---------------------------------------------------------------------------
// Small helpers

/** Minimal event emitter: on(type, fn) returns an unsubscribe function. */
export class Emitter {
  constructor() {
    this._map = new Map();
  }
  on(type, fn) {
    if (typeof fn !== "function") throw new TypeError("handler must be a function");
    let set = this._map.get(type);
    if (!set) this._map.set(type, (set = new Set()));
    set.add(fn);
    return () => this.off(type, fn);
  }
  off(type, fn) {
    const set = this._map.get(type);
    if (set) {
      set.delete(fn);
      if (!set.size) this._map.delete(type);
    }
  }
  types() {
    return [...this._map.keys()];
  }
  emit(type, ...args) {
    const set = this._map.get(type);
    if (!set) return 0;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        // A throwing handler must not break delivery to the others, nor the SDK.
        reportError(err);
      }
    }
    return set.size;
  }
}

function reportError(err) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(err);
  else if (typeof console !== "undefined") console.error(err);
}

/** A random UUID v4; crypto.randomUUID where available (secure contexts), else getRandomValues. */
export function uuid() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  const b = new Uint8Array(16);
  if (c && typeof c.getRandomValues === "function") c.getRandomValues(b);
  else for (let i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** In-memory implementation of the Web Storage API (getItem/setItem/removeItem/key/length). */
export class MemoryStorage {
  constructor() {
    this._m = new Map();
  }
  get length() {
    return this._m.size;
  }
  key(i) {
    return [...this._m.keys()][i] ?? null;
  }
  getItem(k) {
    return this._m.has(k) ? this._m.get(k) : null;
  }
  setItem(k, v) {
    this._m.set(String(k), String(v));
  }
  removeItem(k) {
    this._m.delete(k);
  }
  clear() {
    this._m.clear();
  }
}

/** Reads a JSON value from storage; null on absence or any error (private mode, bad JSON). */
export function readJSON(storage, key) {
  try {
    const s = storage && storage.getItem(key);
    return s == null ? null : JSON.parse(s);
  } catch {
    return null;
  }
}

/** Writes a JSON value to storage, ignoring quota and availability errors. */
export function writeJSON(storage, key, value) {
  try {
    if (storage) storage.setItem(key, JSON.stringify(value));
  } catch {
    /* storage full or unavailable: the value just is not persisted */
  }
}

function removeKey(storage, key) {
  try {
    if (storage) storage.removeItem(key);
  } catch {
    /* ignore */
  }
}

/** Keys in a Web Storage object that start with prefix. */
export function storageKeys(storage, prefix) {
  const out = [];
  try {
    for (let i = 0; i < storage.length; i++) {
      const k = storage.key(i);
      if (k != null && k.startsWith(prefix)) out.push(k);
    }
  } catch {
    /* ignore */
  }
  return out;
}

/**
 * Parses a Go duration ("15s", "5m0s", "1h2m3.5s", "250ms") or a number into
 * milliseconds. Bare numbers are taken as milliseconds. Returns null if unparsable.
 */
export function parseDurationMs(v) {
  if (v == null || v === "") return null;
  if (typeof v === "number") return Number.isFinite(v) ? v : null;
  const s = String(v).trim();
  if (/^-?\d+(\.\d+)?$/.test(s)) return Number(s);
  const units = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1000, m: 60000, h: 3600000 };
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g;
  let total = 0;
  let matched = "";
  let m;
  while ((m = re.exec(s))) {
    total += Number(m[1]) * units[m[2]];
    matched += m[0];
  }
  return matched.length && matched === s.replace(/^[+]/, "") ? total : null;
}

/**
 * Normalises `GET /api/config` into {heartbeatMs, idleTimeoutMs, raw}. It accepts
 * `heartbeat_ms` / `idle_timeout_ms` (the expected names) and a few spellings
 * around them (`*_seconds`, Go durations), and tolerates their absence:
 * heartbeat defaults to 15 s, idle timeout to 0 (no client-side idle logout; the
 * server still expires idle sessions and says so on the stream).
 */
export function normalizeConfig(raw) {
  const c = raw && typeof raw === "object" ? raw : {};
  const pick = (names) => {
    for (const n of names) {
      if (c[n] == null) continue;
      if (n.endsWith("_seconds") || n.endsWith("_secs")) {
        const x = Number(c[n]);
        if (Number.isFinite(x)) return x * 1000;
      } else {
        const x = parseDurationMs(c[n]);
        if (x != null) return x;
      }
    }
    return null;
  };
  const heartbeat = pick(["heartbeat_ms", "heartbeat_interval_ms", "heartbeat_seconds", "heartbeat"]);
  const idle = pick(["idle_timeout_ms", "idle_logout_ms", "idle_timeout_seconds", "idle_timeout"]);
  return {
    heartbeatMs: heartbeat != null && heartbeat > 0 ? heartbeat : 15000,
    idleTimeoutMs: idle != null && idle > 0 ? idle : 0,
    raw: c,
  };
}

/**
 * Connection quality from what the client can observe:
 * - "offline": the browser says it is offline, or the client has given up;
 * - "poor": not streaming (connecting, reconnecting, polling), or the stream has
 *   been silent for more than two heartbeats plus slack without a successful
 *   probe, or the last probe round trip was slow;
 * - "good" otherwise.
 * EventSource cannot see the server's `: ping` comments, so `silenceMs` is the time
 * since the last event or successful probe (the SDK probes when the stream is quiet).
 */
export function computeQuality({ online = true, state, silenceMs = 0, heartbeatMs = 15000, rttMs = null, slowRttMs = 2000 } = {}) {
  if (!online || state === "disconnected") return "offline";
  if (state !== "connected") return "poor";
  if (silenceMs > heartbeatMs * 2 + 5000) return "poor";
  if (rttMs != null && rttMs > slowRttMs) return "poor";
  return "good";
}

// ---------------------------------------------------------------------------
// Outbox

/** How a send attempt's HTTP status is treated: "ok", "retry" or "fatal". */
export function classifySendStatus(status) {
  if (status === 200 || status === 201) return "ok";
  if (!status || status === 408 || status === 425 || status === 429 || status >= 500) return "retry";
  if (status >= 400) return "fatal";
  return "retry"; // 1xx/3xx/other 2xx: unexpected, try again
}

/** Error a send promise rejects with when its message is marked failed or discarded. */
export class OutboxError extends Error {
  constructor(message, { client_id, status = 0, code = "send_failed" } = {}) {
    super(message);
    this.name = "OutboxError";
    this.client_id = client_id;
    this.status = status;
    this.code = code;
  }
}

/**
 * Outbox of messages being sent: optimistic, persistent, retried safely.
 *
 * Each message gets a `client_id` before its first attempt and keeps it for every
 * retry, so the server answers a retry of a message it already stored with 200 and
 * the original message (SPEC §4) instead of storing it twice. Items live in
 * `storage` (one key per item, `<prefix><client_id>`, so tabs sharing localStorage
 * do not overwrite each other's lists) and survive reloads; `load()` picks them up.
 *
 * Messages of one conversation go out one at a time, in the order they were
 * written: an item waits while an older item of its conversation is still
 * pending (say both were written offline), so retries cannot reorder them.
 *
 * An item is "pending" while attempts go on (transient failures — network, 408,
 * 429, 5xx — are retried with backoff) and becomes "failed" when the server refuses
 * it (other 4xx) or `failAfterMs` has passed since it was queued or last retried.
 * `retry(client_id)` makes a failed item pending again; `discard` drops it.
 *
 * `transport(item)` performs one attempt and resolves to {status, body, retryAfterMs?}
 * (status 0 for a network error); it may also throw, which counts as status 0.
 */
export class Outbox {
  constructor({
    storage = null,
    prefix = "parley:outbox:",
    transport,
    clock = realClock,
    failAfterMs = 60000,
    retryBaseMs = 1000,
    retryMaxMs = 15000,
    idFactory = uuid,
    onChange = null,
  } = {}) {
    if (typeof transport !== "function") throw new TypeError("Outbox needs a transport function");
    this.storage = storage;
    this.prefix = prefix;
    this.transport = transport;
    this.clock = clock;
    this.failAfterMs = failAfterMs;
    this.retryBaseMs = retryBaseMs;
    this.retryMaxMs = retryMaxMs;
    this.idFactory = idFactory;
    this._items = new Map(); // client_id → item
    this._deferred = new Map(); // client_id → {promise, resolve, reject}
    this._timers = new Map(); // client_id → retry timer
    this._deadlines = new Map(); // client_id → deadline timer
    this._inflight = new Set();
    this._listeners = new Set();
    this._stopped = false;
    if (onChange) this._listeners.add(onChange);
  }

  /** Subscribes to changes: fn(items, change) where change = {type, item, message?}. */
  subscribe(fn) {
    this._listeners.add(fn);
    return () => this._listeners.delete(fn);
  }

  /** Current items (copies), oldest first. */
  items() {
    return [...this._items.values()].sort((a, b) => a.created_at - b.created_at || (a.client_id < b.client_id ? -1 : 1)).map((it) => ({ ...it }));
  }

  get(clientId) {
    const it = this._items.get(clientId);
    return it ? { ...it } : null;
  }

  /**
   * Loads items persisted by an earlier page (or another tab) and resumes pending
   * ones with a fresh deadline. Items already known are left alone.
   */
  load() {
    if (!this.storage) return;
    const found = [];
    for (const key of storageKeys(this.storage, this.prefix)) {
      const it = readJSON(this.storage, key);
      if (!it || !it.client_id || this._items.has(it.client_id)) continue;
      if (typeof it.conversation_id !== "string" || typeof it.body !== "string") {
        removeKey(this.storage, key);
        continue;
      }
      found.push(it);
    }
    // Oldest first: the order of _items is the order of sending.
    found.sort((a, b) => (Number(a.created_at) || 0) - (Number(b.created_at) || 0));
    for (const it of found) {
      this._items.set(it.client_id, it);
      this._deferred.set(it.client_id, deferred());
      if (it.status !== "failed") {
        it.status = "pending";
        it.deadline = this.clock.now() + this.failAfterMs;
        this._persist(it);
      }
      this._emit({ type: "loaded", item: { ...it } });
      if (it.status === "pending") this._startDeadline(it), this._attempt(it.client_id);
    }
  }

  /**
   * Queues a message and starts sending it. Resolves with the server's message
   * (on 201, or 200 for a retry the server had already stored); rejects with an
   * OutboxError if it is marked failed or discarded.
   */
  send({ conversation_id, body, reply_to_id = null, client_id = null, extra = null }) {
    const now = this.clock.now();
    const id = client_id || this.idFactory();
    const existing = this._items.get(id);
    if (existing) return this._deferred.get(id).promise;
    const item = {
      client_id: id,
      conversation_id: String(conversation_id),
      body: String(body),
      reply_to_id: reply_to_id || null,
      status: "pending",
      attempts: 0,
      created_at: now,
      deadline: now + this.failAfterMs,
      error: null,
      ...(extra ? { extra } : {}),
    };
    this._items.set(id, item);
    const d = deferred();
    this._deferred.set(id, d);
    this._persist(item);
    this._emit({ type: "queued", item: { ...item } });
    this._startDeadline(item);
    this._attempt(id);
    return d.promise;
  }

  /** Makes a failed (or pending) item pending again with a fresh deadline and tries now. */
  retry(clientId) {
    const it = this._items.get(clientId);
    if (!it) return Promise.reject(new OutboxError("no such outbox item", { client_id: clientId, code: "not_found" }));
    let d = this._deferred.get(clientId);
    if (it.status === "failed") {
      d = deferred();
      this._deferred.set(clientId, d);
    }
    it.status = "pending";
    it.error = null;
    it.deadline = this.clock.now() + this.failAfterMs;
    this._persist(it);
    this._emit({ type: "retrying", item: { ...it } });
    this._clearTimer(clientId);
    this._startDeadline(it);
    this._attempt(clientId);
    return d.promise;
  }

  /** Drops an item (the app gave up on it). Its promise rejects with code "discarded". */
  discard(clientId) {
    const it = this._items.get(clientId);
    if (!it) return false;
    this._remove(clientId);
    const d = this._deferred.get(clientId);
    this._deferred.delete(clientId);
    if (d && it.status !== "failed") d.reject(new OutboxError("message discarded", { client_id: clientId, code: "discarded" }));
    this._emit({ type: "discarded", item: { ...it } });
    this._next(it.conversation_id);
    return true;
  }

  /**
   * Settles an item from a message the server reports elsewhere (a message.created
   * event carrying its client_id may arrive before the HTTP answer).
   */
  resolveMessage(message) {
    if (!message || !message.client_id) return false;
    const it = this._items.get(message.client_id);
    if (!it) return false;
    this._succeed(it, message);
    return true;
  }

  /** Attempts every pending item now (e.g. when the browser comes back online). */
  flush() {
    for (const it of this._items.values()) {
      if (it.status === "pending" && !this._inflight.has(it.client_id)) {
        this._clearTimer(it.client_id);
        this._attempt(it.client_id);
      }
    }
  }

  /** Forgets everything, in memory and storage (logout). Pending promises reject. */
  clear() {
    for (const id of [...this._items.keys()]) {
      const d = this._deferred.get(id);
      const it = this._items.get(id);
      this._remove(id);
      if (d && it.status !== "failed") d.reject(new OutboxError("outbox cleared", { client_id: id, code: "discarded" }));
    }
    this._deferred.clear();
    for (const key of storageKeys(this.storage, this.prefix)) removeKey(this.storage, key);
    this._emit({ type: "cleared", item: null });
  }

  /** Stops timers (the Parley instance is closing); items stay persisted. */
  stop() {
    this._stopped = true;
    for (const id of [...this._timers.keys()]) this._clearTimer(id);
    for (const h of this._deadlines.values()) this.clock.clearTimeout(h);
    this._deadlines.clear();
  }

  /** Restarts after stop(). */
  start() {
    if (!this._stopped) return;
    this._stopped = false;
    for (const it of this._items.values()) {
      if (it.status === "pending") {
        this._startDeadline(it);
        this._attempt(it.client_id);
      }
    }
  }

  async _attempt(clientId) {
    if (this._stopped) return;
    const it = this._items.get(clientId);
    if (!it || it.status !== "pending" || this._inflight.has(clientId)) return;
    // Started again by _next() when the older items are settled.
    if (this._waitsForOlder(it)) return;
    this._inflight.add(clientId);
    it.attempts++;
    it.last_attempt_at = this.clock.now();
    this._persist(it);
    let res;
    try {
      res = (await this.transport({ ...it })) || { status: 0 };
    } catch (err) {
      res = { status: 0, error: err };
    }
    this._inflight.delete(clientId);
    const cur = this._items.get(clientId);
    const kind = classifySendStatus(res.status);
    if (kind === "ok") {
      // Even if the item was discarded or failed meanwhile, the server has the
      // message now; report it so the app can show it.
      if (cur) this._succeed(cur, res.body);
      else {
        const d = this._deferred.get(clientId);
        if (d) this._deferred.delete(clientId), d.resolve(res.body);
      }
      return;
    }
    if (!cur || cur.status !== "pending") return;
    if (kind === "fatal") {
      this._fail(cur, res);
      return;
    }
    const now = this.clock.now();
    if (now >= cur.deadline) {
      this._fail(cur, res);
      return;
    }
    let delay = backoffDelay(cur.attempts - 1, { baseMs: this.retryBaseMs, maxMs: this.retryMaxMs, jitter: 0.2, random: this.clock.random });
    if (res.retryAfterMs > 0) delay = Math.max(delay, res.retryAfterMs);
    delay = Math.min(delay, Math.max(0, cur.deadline - now));
    cur.error = errorText(res);
    this._persist(cur);
    this._emit({ type: "waiting", item: { ...cur } });
    this._clearTimer(clientId);
    this._timers.set(
      clientId,
      this.clock.setTimeout(() => {
        this._timers.delete(clientId);
        this._attempt(clientId);
      }, delay),
    );
  }

  _startDeadline(it) {
    const id = it.client_id;
    const old = this._deadlines.get(id);
    if (old != null) this.clock.clearTimeout(old);
    const ms = Math.max(0, it.deadline - this.clock.now());
    this._deadlines.set(
      id,
      this.clock.setTimeout(() => {
        this._deadlines.delete(id);
        const cur = this._items.get(id);
        // A request still in flight at the deadline may hang for long; the item is
        // failed now and a late success still settles it (see _attempt).
        if (cur && cur.status === "pending") this._fail(cur, { status: 0, timeout: true });
      }, ms),
    );
  }

  /** True while an older item of the same conversation is still pending. */
  _waitsForOlder(it) {
    for (const o of this._items.values()) {
      if (o === it) return false;
      if (o.conversation_id === it.conversation_id && o.status === "pending") return true;
    }
    return false;
  }

  /** An item of the conversation was settled: the next pending one may go. */
  _next(conversationId) {
    for (const o of this._items.values()) {
      if (o.conversation_id !== conversationId || o.status !== "pending") continue;
      if (!this._inflight.has(o.client_id) && !this._timers.has(o.client_id)) this._attempt(o.client_id);
      return;
    }
  }

  _succeed(it, message) {
    const id = it.client_id;
    this._remove(id);
    const d = this._deferred.get(id);
    this._deferred.delete(id);
    if (d) d.resolve(message);
    this._emit({ type: "sent", item: { ...it, status: "sent" }, message });
    this._next(it.conversation_id);
  }

  _fail(it, res) {
    this._clearTimer(it.client_id);
    const dl = this._deadlines.get(it.client_id);
    if (dl != null) this.clock.clearTimeout(dl), this._deadlines.delete(it.client_id);
    it.status = "failed";
    it.error = errorText(res);
    it.failed_status = res.status || 0;
    this._persist(it);
    const d = this._deferred.get(it.client_id);
    if (d) {
      // The settled deferred stays; retry() makes a new one.
      d.reject(new OutboxError(it.error, { client_id: it.client_id, status: res.status || 0, code: res.code || (res.status ? "rejected" : "timeout") }));
    }
    this._emit({ type: "failed", item: { ...it } });
    this._next(it.conversation_id);
  }

  _remove(id) {
    this._clearTimer(id);
    const dl = this._deadlines.get(id);
    if (dl != null) this.clock.clearTimeout(dl), this._deadlines.delete(id);
    this._items.delete(id);
    removeKey(this.storage, this.prefix + id);
  }

  _clearTimer(id) {
    const h = this._timers.get(id);
    if (h != null) this.clock.clearTimeout(h);
    this._timers.delete(id);
  }

  _persist(it) {
    writeJSON(this.storage, this.prefix + it.client_id, it);
  }

  _emit(change) {
    const items = this.items();
    for (const fn of [...this._listeners]) {
      try {
        fn(items, change);
      } catch (err) {
        reportError(err);
      }
    }
  }
}

function errorText(res) {
  if (!res) return "send failed";
  if (res.timeout) return "not sent in time";
  const msg = res.body && res.body.error && res.body.error.message;
  if (msg) return String(msg);
  if (!res.status) return "network error";
  return `server answered ${res.status}`;
}

function deferred() {
  let resolve, reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Callers often fire and forget; a failed send is reported through the outbox
  // listeners, so an unobserved rejection must not become an unhandled one.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

// ---------------------------------------------------------------------------
// Connection controller

/**
 * ConnectionController runs one logical connection to the event log: an SSE
 * stream with its own reconnect and backoff, a long-poll fallback, gap filling,
 * and the state machine exposed as `Parley#state`.
 *
 * transport (injected):
 *   openStream(lastId, sink) → {close()}  — sink.event({type, data, id}), sink.error(reason)
 *   poll(after, waitSec, signal) → Promise<{status, events?, last_id?}>  (throws on network errors)
 *
 * States:
 *   disconnected --connect()--> connecting --ready--> connected
 *   connected/connecting --stream error--> reconnecting --(backoff)--> ... --ready--> connected
 *   any --maxFailures consecutive failures (if set; default never)--> disconnected (until reconnect())
 *   any --badStreamsBeforePolling short-lived streams, each followed by a poll that got through--> polling
 *       (tries streaming again every streamRetryMs, and at once when a poll succeeds after failed ones)
 *   any --session.expired / 401--> disconnected (expired)
 *   any --close()--> disconnected
 */
export class ConnectionController {
  constructor({
    transport,
    clock = realClock,
    lastEventId = null,
    userId = null,
    // Never give up by default: a server that is down for an upgrade comes
    // back, and a page left open on a second screen must be back with it
    // without anyone clicking Reconnect (backoff caps the attempts at one
    // per backoffMaxMs).
    maxFailures = 0,
    backoffBaseMs = 1000,
    backoffMaxMs = 30000,
    jitter = 0.2,
    readyTimeoutMs = 5000,
    shortLivedMs = 5000,
    badStreamsBeforePolling = 3,
    allowPolling = true,
    streamRetryMs = 60000,
    pollWaitSec = 25,
    minPollIntervalMs = 1000,
    gapTimeoutMs = 3000,
    onEvent = () => {},
    onState = () => {},
    onLastId = () => {},
  } = {}) {
    this.transport = transport;
    this.clock = clock;
    this.backoff = new Backoff({ baseMs: backoffBaseMs, maxMs: backoffMaxMs, jitter, maxFailures, random: clock.random });
    this.seq = new EventSequencer({ lastId: lastEventId });
    this.userId = userId;
    this.readyTimeoutMs = readyTimeoutMs;
    this.shortLivedMs = shortLivedMs;
    this.badStreamsBeforePolling = badStreamsBeforePolling;
    this.allowPolling = allowPolling;
    this.streamRetryMs = streamRetryMs;
    this.pollWaitSec = pollWaitSec;
    this.minPollIntervalMs = minPollIntervalMs;
    this.gapTimeoutMs = gapTimeoutMs;
    this.onEvent = onEvent;
    this.onState = onState;
    this.onLastId = onLastId;

    this.state = "disconnected";
    this.mode = "stream"; // "stream" | "polling"
    this.expired = false;
    this.gaveUp = false;
    this.badStreams = 0;
    this._gen = 0;
    this._stream = null;
    this._readyAt = null;
    this._opened = false;
    this._timers = {};
    this._pollAbort = null;
    this._gapFilling = false;
    // Bumped by reconnect() and close(): answers to checks started before
    // then no longer count.
    this._epoch = 0;
    this._readies = 0; // streams that got ready so far
  }

  get lastEventId() {
    return this.seq.lastId;
  }
  get failures() {
    return this.backoff.failures;
  }

  /** Starts connecting; no-op while already active. */
  connect() {
    if (this.state !== "disconnected") return;
    this._restart("connecting");
  }

  /** Drops the current connection and starts again at once, clearing failure counts. */
  reconnect() {
    this._restart(this.state === "disconnected" ? "connecting" : "reconnecting");
  }

  /** Stops everything; state becomes disconnected. */
  close() {
    this._closed = true;
    this._epoch++;
    this._teardown();
    this._setState("disconnected");
  }

  _restart(state) {
    this._closed = false;
    this._epoch++;
    this._teardown();
    this.expired = false;
    this.gaveUp = false;
    this.backoff.reset();
    this.badStreams = 0;
    this.mode = "stream";
    this._setState(state);
    this._openStream();
  }

  _teardown() {
    this._gen++;
    if (this._stream) {
      try {
        this._stream.close();
      } catch {
        /* ignore */
      }
      this._stream = null;
    }
    if (this._pollAbort) {
      try {
        this._pollAbort.abort();
      } catch {
        /* ignore */
      }
      this._pollAbort = null;
    }
    for (const k of Object.keys(this._timers)) this._clear(k);
    this._readyAt = null;
    this._trial = false;
  }

  _setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.onState(s);
  }

  _timer(name, ms, fn) {
    this._clear(name);
    this._timers[name] = this.clock.setTimeout(() => {
      delete this._timers[name];
      fn();
    }, ms);
  }

  _clear(name) {
    if (this._timers[name] != null) {
      this.clock.clearTimeout(this._timers[name]);
      delete this._timers[name];
    }
  }

  // --- streaming -----------------------------------------------------------

  _openStream() {
    const gen = ++this._gen;
    this._readyAt = null;
    this._opened = false;
    const sink = {
      open: () => {
        if (gen === this._gen) this._opened = true;
      },
      event: (ev) => {
        if (gen === this._gen) this._onStreamEvent(ev);
      },
      error: (reason) => {
        if (gen === this._gen) this._streamFailed(reason || "error");
      },
    };
    this._timer("ready", this.readyTimeoutMs, () => {
      if (gen === this._gen) this._streamFailed("ready_timeout");
    });
    try {
      this._stream = this.transport.openStream(this.seq.lastId, sink);
    } catch (err) {
      // No EventSource at all: go straight to polling.
      this._clear("ready");
      this._stream = null;
      if (this.allowPolling && this.transport.poll) {
        this.badStreams = this.badStreamsBeforePolling;
        this._startPolling();
      } else {
        this._streamFailed("unsupported");
      }
    }
  }

  _onStreamEvent(ev) {
    const type = ev.type;
    if (type === "ready") {
      this._clear("ready");
      this._readyAt = this.clock.now();
      this._readies++;
      this.backoff.reset();
      this.gaveUp = false;
      const data = ev.data || {};
      this._applyReady(data);
      if (this.mode === "polling") {
        // A stream trial from polling mode worked: back to streaming.
        this.mode = "stream";
        this._clear("trial");
      }
      this._trial = false;
      this._setState("connected");
      // A stream that stays up this long is healthy: forget earlier short-lived ones.
      this._timer("stable", this.shortLivedMs, () => {
        this.badStreams = 0;
      });
      this._emit({ type, data, id: null });
      return;
    }
    if (type === "reset") {
      const data = ev.data || {};
      const out = this.seq.reset(data.last_id);
      this._clear("gap");
      this.onLastId(this.seq.lastId);
      this._emit({ type, data, id: null });
      for (const e of out) this._deliver(e);
      return;
    }
    if (type === "session.expired") {
      this._expire(ev.data || {}, ev);
      return;
    }
    this._ingest(ev);
  }

  _applyReady(data) {
    const uid = data.user_id ?? null;
    if (this.seq.lastId == null || (uid != null && this.userId != null && uid !== this.userId)) {
      // No resume point (the stream starts live), or a resume point from another
      // user's log (a different login in this browser): the head is the baseline.
      // Replayed events at or below it are then dropped as duplicates.
      if (data.last_id != null) {
        this.seq.reset(data.last_id);
        this.onLastId(this.seq.lastId);
      }
    }
    if (uid != null) this.userId = uid;
  }

  _streamFailed(reason) {
    this._clear("ready");
    this._clear("stable");
    if (this._stream) {
      try {
        this._stream.close();
      } catch {
        /* ignore */
      }
      this._stream = null;
    }
    this._gen++;
    const lived = this._readyAt == null ? -1 : this.clock.now() - this._readyAt;
    const hadReady = this._readyAt != null;
    const opened = this._opened;
    this._readyAt = null;
    const short = lived < 0 || lived < this.shortLivedMs;
    if (!short) this.badStreams = 0;

    if (!hadReady && !opened && this.transport.probe) this._probeAuth();

    if (this._trial) {
      // The periodic attempt to leave polling failed: keep polling.
      this._trial = false;
      this._startPolling();
      return;
    }
    if (this.allowPolling && this.transport.poll && this.badStreams >= this.badStreamsBeforePolling) {
      this._startPolling();
      return;
    }
    const delay = this.backoff.fail();
    if (delay == null) {
      this.gaveUp = true;
      this._setState("disconnected");
      return;
    }
    this._setState("reconnecting");
    this._timer("retry", delay, () => this._openStream());
    if (short && this.allowPolling) this._countIfServerAnswers();
    else if (this.seq.lastId == null && this.transport.poll) this._fetchBaseline();
  }

  /**
   * A stream failed early. Whether that says anything about streams depends
   * on whether the server is there: a network or proxy that blocks streams
   * lets a poll through, while a server that is down (restarting, say)
   * answers neither. So the failure counts toward the poll fallback only
   * once a poll (wait=0) gets a 200; a refused, failed or 5xx poll leaves it
   * out, and the stream is retried with the usual backoff, so that the SDK
   * is streaming again within one backoff delay of the server's return.
   * The retry timer runs meanwhile: a slow answer delays nothing. Events the
   * poll returns are delivered (the sequencer drops what a stream brings
   * again).
   */
  _countIfServerAnswers() {
    if (!this.transport.poll) return;
    const epoch = this._epoch;
    const readies = this._readies;
    const after = this.seq.lastId;
    let answered;
    if (after == null) {
      // No position yet: the baseline fetch is the poll, and takes the head.
      answered = this._fetchBaseline();
    } else {
      answered = Promise.resolve()
        .then(() => this.transport.poll(after, 0))
        .then((res) => {
          if (!res || res.status !== 200) return false;
          if (epoch === this._epoch && this.seq.lastId === after && !res.reset && Array.isArray(res.events)) {
            for (const e of res.events) this._ingest(normalizePolled(e));
          }
          return true;
        });
    }
    answered
      .then((ok) => {
        // A stream that got ready since makes this failure history.
        if (!ok || epoch !== this._epoch || readies !== this._readies || this.mode !== "stream") return;
        this.badStreams++;
        // Waiting to retry with enough evidence that streams do not get
        // through: poll now rather than try another stream.
        if (this.badStreams >= this.badStreamsBeforePolling && this._timers.retry != null) this._startPolling();
      })
      .catch(() => {});
  }

  /** After a stream failed before opening, find out whether it was a 401. */
  _probeAuth() {
    const gen = this._gen;
    Promise.resolve()
      .then(() => this.transport.probe(this.seq.lastId))
      .then((status) => {
        // Ignore the answer if close() was called meanwhile; a 401 otherwise
        // means the session is gone and retrying is pointless.
        if (status === 401 && !this.expired && !this._closed) this._expire({ reason: "unauthorized" });
      })
      .catch(() => {});
  }

  /**
   * Without a resume point the stream starts live at whatever the head is when
   * it finally opens; everything before is for the app's REST snapshot. When
   * streams fail before saying ready, take the head now by poll, so that the
   * next stream (or the poll fallback) resumes from here and nothing that
   * happens in between is lost.
   */
  _fetchBaseline() {
    if (this._baselining) return Promise.resolve(false);
    this._baselining = true;
    return this._pollHead()
      .then((head) => {
        if (head != null && this.seq.lastId == null && !this._closed) {
          this.seq.reset(head);
          this.onLastId(this.seq.lastId);
        }
        return head != null;
      })
      .catch(() => false)
      .finally(() => {
        this._baselining = false;
      });
  }

  /**
   * The id of the newest event in the log, read by paging polls (wait=0) from 0
   * until a page comes back empty (the server also cuts pages by size, so a short
   * page is not the end); null on failure.
   */
  async _pollHead(signal) {
    let after = 0;
    for (let page = 0; page < 10000; page++) {
      const res = await this.transport.poll(after, 0, signal);
      if (!res || res.status !== 200) return res && res.status === 401 ? Promise.reject(Object.assign(new Error("unauthorized"), { status: 401 })) : null;
      if (res.reset && res.reset.last_id != null) return Number(res.reset.last_id);
      const n = Array.isArray(res.events) ? res.events.length : 0;
      const last = res.last_id != null ? Number(res.last_id) : n ? Number(res.events[n - 1].id) : after;
      if (n === 0 || last <= after) return last;
      after = last;
    }
    return after;
  }

  _expire(data, ev) {
    this._teardown();
    this.expired = true;
    this._setState("disconnected");
    this._emit({ type: "session.expired", data, id: null, ...(ev && ev.time ? { time: ev.time } : {}) });
  }

  /**
   * Checks a quiet stream. EventSource cannot see the server's heartbeat
   * comments, so a stream that a proxy has silently stopped forwarding looks the
   * same as an idle one. A poll from lastId (wait=0) tells them apart: events
   * the stream has not delivered mean it is dead, so they are delivered and the
   * stream is replaced. Resolves to {ok, rttMs, stale}.
   */
  async checkStream() {
    if (this.state !== "connected" || this.mode !== "stream" || this.seq.lastId == null || !this.transport.poll) return { ok: false, rttMs: null, stale: false };
    const gen = this._gen;
    const t0 = this.clock.now();
    let res;
    try {
      res = await this.transport.poll(this.seq.lastId, 0);
    } catch {
      return { ok: false, rttMs: null, stale: false };
    }
    const rttMs = this.clock.now() - t0;
    if (gen !== this._gen) return { ok: true, rttMs, stale: false };
    if (!res || res.status !== 200) {
      if (res && res.status === 401) this._expire({ reason: "unauthorized" });
      return { ok: false, rttMs, stale: false };
    }
    if (res.reset && res.reset.last_id != null) {
      this._onStreamEvent({ type: "reset", data: { reason: res.reset.reason || "history_expired", last_id: Number(res.reset.last_id) }, id: null });
      this._streamFailed("stale");
      return { ok: true, rttMs, stale: true };
    }
    const fresh = (res.events || []).filter((e) => Number(e.id) > this.seq.lastId);
    if (!fresh.length) return { ok: true, rttMs, stale: false };
    for (const e of fresh) this._ingest(normalizePolled(e));
    // Only types the stream has no listener for (an app.* type that just "*"
    // asks for: EventSource cannot listen for every type): the stream is
    // alive. Listen for them from now on rather than replace it.
    const { hears, listen } = this.transport;
    if (hears && listen && fresh.every((e) => !hears(e.type))) {
      for (const e of fresh) listen(e.type);
      return { ok: true, rttMs, stale: false };
    }
    this._streamFailed("stale");
    return { ok: true, rttMs, stale: true };
  }

  // --- events ---------------------------------------------------------------

  _ingest(ev) {
    const out = this.seq.push(ev);
    for (const e of out) this._deliver(e);
    if (this.seq.hasGap) this._onGap();
    else this._clear("gap");
  }

  _deliver(e) {
    if (e.id != null) this.onLastId(this.seq.lastId);
    this._emit(e);
  }

  _emit(e) {
    try {
      this.onEvent(e);
    } catch (err) {
      reportError(err);
    }
  }

  /**
   * Events arrived ahead of a missing id. Over one SSE stream that happens when the
   * missing event has a type this EventSource has no listener for (an app.* type
   * nobody subscribed to), so fetch the range by poll, which returns every type;
   * if that does not close the gap in gapTimeoutMs, deliver what is held.
   */
  _onGap() {
    if (this._timers.gap == null) {
      this._timer("gap", this.gapTimeoutMs, () => {
        const out = this.seq.flush();
        for (const e of out) this._deliver(e);
      });
    }
    if (this._gapFilling || !this.transport.poll || this.mode === "polling") return;
    this._gapFilling = true;
    const after = this.seq.lastId;
    Promise.resolve()
      .then(() => this.transport.poll(after, 0))
      .then((res) => {
        this._gapFilling = false;
        if (!res || res.status !== 200 || !Array.isArray(res.events)) return;
        for (const e of res.events) {
          const out = this.seq.push(normalizePolled(e));
          for (const x of out) this._deliver(x);
        }
        if (!this.seq.hasGap) this._clear("gap");
      })
      .catch(() => {
        this._gapFilling = false;
      });
  }

  // --- polling ----------------------------------------------------------------

  _startPolling() {
    this._teardown();
    this.mode = "polling";
    this.backoff.reset();
    this._setState("polling");
    this._timer("trial", this.streamRetryMs, () => this._tryStreamFromPolling());
    this._pollLoop(this._gen);
  }

  _tryStreamFromPolling() {
    if (this.mode !== "polling" || this.state === "disconnected") return;
    // Stop polling while the trial stream runs; it replays from lastId on ready.
    if (this._pollAbort) {
      try {
        this._pollAbort.abort();
      } catch {
        /* ignore */
      }
      this._pollAbort = null;
    }
    this._trial = true;
    this._openStream();
  }

  async _pollLoop(gen) {
    while (gen === this._gen && this.mode === "polling") {
      const started = this.clock.now();
      const ctrl = typeof AbortController === "function" ? new AbortController() : null;
      this._pollAbort = ctrl;
      let res;
      if (this.seq.lastId == null) {
        // No resume point: start from the head, as a fresh stream would.
        try {
          const head = await this._pollHead(ctrl && ctrl.signal);
          res = head == null ? { status: 0 } : { status: 200, events: [], baseline: head };
        } catch (err) {
          res = { status: err && err.status === 401 ? 401 : 0 };
        }
      } else {
        try {
          res = await this.transport.poll(this.seq.lastId, this.pollWaitSec, ctrl && ctrl.signal);
        } catch {
          res = { status: 0 };
        }
      }
      if (gen !== this._gen) return;
      this._pollAbort = null;
      if (res && res.status === 401) {
        this._expire({ reason: "unauthorized" });
        return;
      }
      if (res && res.status === 200) {
        // Polls failing and then one getting through is a server that
        // was down and is back, not a change in the network: streams may
        // well work now, so try one at once rather than at the next
        // streamRetryMs.
        const recovered = this.backoff.failures > 0;
        this.backoff.reset();
        if (res.baseline != null) {
          this.seq.reset(res.baseline);
          this.onLastId(this.seq.lastId);
        } else if (res.reset && res.reset.last_id != null) {
          // The position is outside the retained log: same as the stream's reset.
          const out = this.seq.reset(res.reset.last_id);
          this.onLastId(this.seq.lastId);
          this._emit({ type: "reset", data: { reason: res.reset.reason || "history_expired", last_id: Number(res.reset.last_id) }, id: null });
          for (const x of out) this._deliver(x);
        } else {
          for (const e of res.events || []) {
            const out = this.seq.push(normalizePolled(e));
            for (const x of out) this._deliver(x);
          }
          if (this.seq.hasGap) {
            // Polls return a contiguous range; anything held is stale.
            for (const x of this.seq.flush()) this._deliver(x);
          }
        }
        if (recovered) {
          this._tryStreamFromPolling();
          return;
        }
        this._setState("polling");
        const took = this.clock.now() - started;
        const empty = res.baseline == null && !res.reset && (!res.events || !res.events.length);
        if (empty && took < this.minPollIntervalMs) {
          // A proxy that answers at once must not turn this into a busy loop.
          await this._sleep(gen, this.minPollIntervalMs - took);
        }
        continue;
      }
      const delay = this.backoff.fail();
      if (delay == null) {
        this.gaveUp = true;
        this._teardown();
        this._setState("disconnected");
        return;
      }
      this._setState("reconnecting");
      await this._sleep(gen, delay);
    }
  }

  _sleep(gen, ms) {
    return new Promise((resolve) => {
      this._timer("poll", ms, resolve);
    });
  }
}

/** A polled event in the form the stream hands on. */
export function normalizePolled(e) {
  return { id: e.id == null ? null : Number(e.id), type: e.type, data: e.data, ...(e.time ? { time: e.time } : {}) };
}

// ---------------------------------------------------------------------------
// Typing and activity

/**
 * TypingThrottle turns keystrokes into typing notifications: `start` at most once
 * every intervalMs per conversation while typing goes on (the server treats a start
 * as stale after 6 s, so it must be renewed), `stop` after idleMs without input or
 * when `stop()` is called (message sent, conversation left).
 */
export class TypingThrottle {
  constructor({ send, clock = realClock, intervalMs = 3000, idleMs = 4000 } = {}) {
    this.send = send;
    this.clock = clock;
    this.intervalMs = intervalMs;
    this.idleMs = idleMs;
    this._conv = new Map(); // id → {active, lastStart, timer}
  }

  input(conversationId) {
    const now = this.clock.now();
    let st = this._conv.get(conversationId);
    if (!st) this._conv.set(conversationId, (st = { active: false, lastStart: -Infinity, timer: null }));
    if (!st.active || now - st.lastStart >= this.intervalMs) {
      st.active = true;
      st.lastStart = now;
      this._send(conversationId, "start");
    }
    if (st.timer != null) this.clock.clearTimeout(st.timer);
    st.timer = this.clock.setTimeout(() => {
      st.timer = null;
      this.stop(conversationId);
    }, this.idleMs);
  }

  stop(conversationId) {
    const st = this._conv.get(conversationId);
    if (!st) return;
    if (st.timer != null) this.clock.clearTimeout(st.timer);
    this._conv.delete(conversationId);
    if (st.active) this._send(conversationId, "stop");
  }

  stopAll() {
    for (const id of [...this._conv.keys()]) this.stop(id);
  }

  _send(id, state) {
    try {
      const p = this.send(id, state);
      if (p && typeof p.catch === "function") p.catch(() => {});
    } catch {
      /* typing is best effort */
    }
  }
}

/**
 * ActivityTracker keeps the session alive while the person uses the page and
 * ends it when they stop.
 *
 * `touch()` is called on user input. The last activity time is kept in shared
 * storage so that every tab of the origin, and a reloaded page, agree on it; the
 * server is told (`report()`, i.e. POST /api/auth/activity) at most once per
 * reportIntervalMs across all tabs. `check()` (called periodically) calls
 * `onIdle()` once when no tab has seen activity for idleTimeoutMs (0: never).
 */
export class ActivityTracker {
  constructor({ storage = null, key = "parley:activity", clock = realClock, idleTimeoutMs = 0, reportIntervalMs = 60000, report = () => {}, onIdle = () => {} } = {}) {
    this.storage = storage;
    this.key = key;
    this.clock = clock;
    this.idleTimeoutMs = idleTimeoutMs;
    this.reportIntervalMs = reportIntervalMs;
    this.report = report;
    this.onIdle = onIdle;
    this._mem = { a: 0, r: 0 };
    this.idled = false;
  }

  _read() {
    const s = readJSON(this.storage, this.key) || {};
    return { a: Math.max(Number(s.a) || 0, this._mem.a), r: Math.max(Number(s.r) || 0, this._mem.r) };
  }

  _write(v) {
    this._mem = v;
    writeJSON(this.storage, this.key, v);
  }

  /** The last activity time seen by any tab (ms since epoch), 0 if none. */
  get lastActivity() {
    return this._read().a;
  }

  /**
   * When any tab last told the server of activity (ms since epoch), 0 if never:
   * the server's idle timer runs from about here.
   */
  get lastReport() {
    return this._read().r;
  }

  /**
   * Records activity now and tells the server at once, however recently it was
   * told ("stay signed in"). Returns what report() returns.
   */
  reportNow() {
    const now = this.clock.now();
    this.idled = false;
    this._write({ a: now, r: now });
    return this.report();
  }

  /**
   * Starts a fresh session window (after login): activity now, and the server has
   * just seen a request, so no report is due yet.
   */
  begin() {
    const now = this.clock.now();
    this.idled = false;
    this._write({ a: now, r: now });
  }

  touch() {
    if (this.idled) return;
    const now = this.clock.now();
    // Called on every mousemove: skip the storage read when nothing can be due.
    if (now - this._mem.a < 250 && now - this._mem.r < this.reportIntervalMs) return;
    const s = this._read();
    const next = { a: now, r: s.r };
    let report = false;
    if (now - s.r >= this.reportIntervalMs) {
      next.r = now;
      report = true;
    }
    // Cheap to call on every mousemove: storage is written at most once a second.
    if (report || now - s.a >= 1000) this._write(next);
    else this._mem = next;
    if (report) {
      try {
        const p = this.report();
        if (p && typeof p.catch === "function") p.catch(() => {});
      } catch {
        /* best effort */
      }
    }
  }

  /** Returns true (and calls onIdle once) when the idle timeout has passed. */
  check() {
    if (this.idled || !(this.idleTimeoutMs > 0)) return false;
    const last = this._read().a;
    if (!last) return false;
    if (this.clock.now() - last >= this.idleTimeoutMs) {
      this.idled = true;
      try {
        this.onIdle();
      } catch (err) {
        reportError(err);
      }
      return true;
    }
    return false;
  }
}
