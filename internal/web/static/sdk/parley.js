// Parley browser SDK — a dependency-free ES module served at /sdk/parley.js.
//
//   import { Parley } from "/sdk/parley.js";
//   const parley = new Parley({ baseUrl: "", token: undefined }); // no token: the session cookie
//   parley.on("message.created", (data, event) => {});           // any event type; "*" for all
//   parley.onState((state) => {});   // connecting | connected | reconnecting | polling | disconnected
//   parley.connect(); parley.reconnect(); parley.close();
//   parley.state; parley.lastEventId; parley.quality;
//   await parley.send(conversationId, body, { replyToId });      // optimistic, outbox, safe retry
//
// How it fits together:
// - One connection per browser: tabs of an origin elect a leader with Web Locks;
//   only the leader holds the EventSource and relays events, state and quality to
//   the other tabs over a BroadcastChannel. When the leader tab goes away another
//   tab gets the lock and resumes from the last id it handed on, so nothing is
//   lost. Without Web Locks or BroadcastChannel each tab has its own stream.
// - The stream logic (backoff, polling fallback, ordering, gap filling) is the
//   ConnectionController in core.js; this file supplies EventSource and fetch.
// - Sends go through a persistent Outbox (core.js) keyed by client_id.
//
// See parley.d.ts for the full typed surface and internal/web/README.md for more.

import {
  ActivityTracker,
  ConnectionController,
  EPHEMERAL_TYPES,
  EventSequencer,
  Emitter,
  KNOWN_TYPES,
  Outbox,
  TypingThrottle,
  computeQuality,
  normalizeConfig,
  normalizePolled,
  readJSON,
  realClock,
  uuid,
  writeJSON,
} from "./core.js";

export { STATES, KNOWN_TYPES, EPHEMERAL_TYPES, OutboxError, backoffDelay } from "./core.js";

/** Error thrown by the REST helpers for an HTTP error answer (SPEC §1 error body). */
export class ParleyError extends Error {
  constructor(status, body) {
    const err = body && body.error;
    super((err && err.message) || `request failed with status ${status}`);
    this.name = "ParleyError";
    this.status = status;
    this.code = (err && err.code) || (status ? `http_${status}` : "network_error");
    this.body = body;
  }
}

const DEFAULTS = Object.freeze({
  baseUrl: "",
  token: undefined,
  shared: true,
  resume: true,
  maxFailures: 0,
  backoffBaseMs: 1000,
  backoffMaxMs: 30000,
  jitter: 0.2,
  readyTimeoutMs: 5000,
  shortLivedMs: 5000,
  badStreamsBeforePolling: 3,
  polling: true,
  streamRetryMs: 60000,
  pollWaitSec: 25,
  gapTimeoutMs: 3000,
  sendTimeoutMs: 60000,
  requestTimeoutMs: 20000,
  typingIntervalMs: 3000,
  typingIdleMs: 4000,
  activityIntervalMs: 60000,
  trackActivity: undefined,
  storage: undefined,
  idleCheckMs: 1000,
});

const LEADER_BEAT_MS = 10000;
// A leader tab can be throttled to one timer a minute in the background; only a
// leader silent for longer than that is presumed frozen and has its lock stolen.
const LEADER_STALE_MS = 75000;

function browserStorage() {
  try {
    const s = globalThis.localStorage;
    const k = "parley:probe";
    s.setItem(k, "1");
    s.removeItem(k);
    return s;
  } catch {
    return null;
  }
}

/**
 * Who a token is for, when it is a JWT: its issuer and subject, read but not
 * verified (they only choose storage keys; the server checks the token);
 * else the token itself.
 */
function tokenIdentity(token) {
  const part = String(token).split(".")[1];
  if (part) {
    try {
      const c = JSON.parse(atob(part.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((part.length + 3) % 4)));
      if (c && typeof c.sub === "string" && c.sub) return `jwt:${c.iss || ""}:${c.sub}`;
    } catch {
      /* not a JWT */
    }
  }
  return String(token);
}

function hashString(s) {
  let h = 5381;
  for (let i = 0; i < s.length; i++) h = ((h << 5) + h + s.charCodeAt(i)) >>> 0;
  return h.toString(36);
}

function canShare() {
  return typeof globalThis.BroadcastChannel === "function" && !!(globalThis.navigator && globalThis.navigator.locks && typeof globalThis.navigator.locks.request === "function");
}

function isOnline() {
  const n = globalThis.navigator;
  return !n || n.onLine !== false;
}

function parseRetryAfter(v) {
  if (!v) return 0;
  const n = Number(v);
  if (Number.isFinite(n)) return Math.max(0, n * 1000);
  const t = Date.parse(v);
  return Number.isFinite(t) ? Math.max(0, t - Date.now()) : 0;
}

const enc = encodeURIComponent;

function base64UrlToBytes(s) {
  const b64 = String(s).replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "===".slice((b64.length + 3) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function sameBytes(a, b) {
  if (!a || !b) return false;
  const x = new Uint8Array(a instanceof ArrayBuffer ? a : a.buffer ? a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength) : a);
  if (x.length !== b.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== b[i]) return false;
  return true;
}

/**
 * A Parley client. Nothing happens until connect() (REST helpers and send() work
 * without it).
 */
export class Parley {
  constructor(options = {}) {
    const o = { ...DEFAULTS, ...options };
    this.options = o;
    this.baseUrl = String(o.baseUrl || "").replace(/\/+$/, "");
    this.token = o.token || undefined;
    this.clock = o.clock || realClock;
    this.storage = o.storage !== undefined ? o.storage : browserStorage();
    // Instances for another server or another token must not share a stream
    // with the default one; nor, for another user, an outbox or a resume
    // point. Those two are keyed by who the token is for: a page that gets a
    // fresh token on each load must still send what the last load queued, and
    // resume where it stopped.
    const scope = (this.baseUrl ? this.baseUrl : "") + (this.token ? `#${hashString(this.token)}` : "");
    const userScope = (this.baseUrl ? this.baseUrl : "") + (this.token ? `#${hashString(tokenIdentity(this.token))}` : "");
    this.scope = scope;
    this._keys = {
      last: userScope ? `parley:last:${userScope}` : "parley:last",
      outbox: userScope ? `parley:outbox:${userScope}:` : "parley:outbox:",
      activity: scope ? `parley:activity:${scope}` : "parley:activity",
      lock: scope ? `parley-leader:${scope}` : "parley-leader",
      channel: scope ? `parley:${scope}` : "parley",
    };
    this.tabId = uuid();

    this._events = new Emitter();
    this._stateFns = new Set();
    this._qualityFns = new Set();
    this._state = "disconnected";
    this._quality = "offline";
    this._role = "none"; // none | solo | leader | follower
    this._active = false;
    this._expiredEmitted = false;
    this._userId = null;
    this._lastEventId = null;
    this._lastAliveAt = 0;
    this._rttMs = null;
    this._remoteQuality = null;
    this._ctl = null;
    this._es = null;
    this._cleanups = [];
    this.config = normalizeConfig(null);
    this.user = null;
    this._idleFns = new Set(); // {fn, beforeMs, warned}
    this._idleTimer = null;

    if (o.resume) {
      const stored = readJSON(this.storage, this._keys.last);
      if (stored && Number.isFinite(Number(stored.id))) {
        this._lastEventId = Number(stored.id);
        this._userId = stored.user_id ?? null;
      }
    }

    this._outbox = new Outbox({
      storage: this.storage,
      prefix: this._keys.outbox,
      transport: (item) => this._postMessage(item),
      clock: this.clock,
      failAfterMs: o.sendTimeoutMs,
    });
    this._outboxLoaded = false;

    this._typing = new TypingThrottle({
      send: (id, state) => this.setTyping(id, state),
      clock: this.clock,
      intervalMs: o.typingIntervalMs,
      idleMs: o.typingIdleMs,
    });

    const track = o.trackActivity !== undefined ? !!o.trackActivity : !this.token && typeof document !== "undefined";
    this._activity = track
      ? new ActivityTracker({
          storage: this.storage,
          key: this._keys.activity,
          clock: this.clock,
          reportIntervalMs: o.activityIntervalMs,
          report: () => this._request("POST", "/api/auth/activity"),
          onIdle: () => this._idleLogout(),
        })
      : null;
  }

  // --- subscriptions ------------------------------------------------------

  /** Calls fn(data, event) for each event of `type` ("*": every event). Returns an unsubscribe function. */
  on(type, fn) {
    const off = this._events.on(String(type), fn);
    this._listenType(String(type));
    return off;
  }

  off(type, fn) {
    this._events.off(String(type), fn);
  }

  /** Like on() but only for the next event of that type. */
  once(type, fn) {
    const off = this.on(type, (data, ev) => {
      off();
      fn(data, ev);
    });
    return off;
  }

  /** Calls fn(state) on every connection state change. Returns an unsubscribe function. */
  onState(fn) {
    this._stateFns.add(fn);
    return () => this._stateFns.delete(fn);
  }

  /** Calls fn(quality) when the connection quality ("good" | "poor" | "offline") changes. */
  onQuality(fn) {
    this._qualityFns.add(fn);
    return () => this._qualityFns.delete(fn);
  }

  /** Calls fn(items, change) whenever the outbox changes. Returns an unsubscribe function. */
  onOutbox(fn) {
    return this._outbox.subscribe(fn);
  }

  get state() {
    return this._state;
  }
  get quality() {
    return this._quality;
  }
  get lastEventId() {
    return this._lastEventId;
  }
  /** "solo" (own stream), "leader" (holds the shared stream), "follower" (gets it relayed), or "none". */
  get role() {
    return this._role;
  }
  /** Messages being sent or failed: [{client_id, conversation_id, body, reply_to_id, status, attempts, created_at, error}]. */
  get outbox() {
    return this._outbox.items();
  }
  get userId() {
    return this._userId;
  }

  // --- connection -----------------------------------------------------------

  /** Opens the event connection (or joins the browser's shared one). Idempotent. */
  connect() {
    if (this._active) return this;
    this._active = true;
    this._expiredEmitted = false;
    this._ensureOutbox();
    this._outbox.start();
    this._installListeners();
    this._loadConfig();
    if (this._activity) {
      this._activity.begin();
      this._everyMs(5000, () => this._activity && this._activity.check());
    }
    this._startIdleWatch();
    this._everyMs(5000, () => this._qualityTick());
    if (this.options.shared && canShare()) this._joinShared();
    else this._becomeSolo();
    this._updateQuality();
    return this;
  }

  /** Reconnects now, resetting the failure count (also from "disconnected" after giving up or expiry). */
  reconnect() {
    if (!this._active) return this.connect();
    this._expiredEmitted = false;
    if (this._ctl) this._ctl.reconnect();
    else if (this._role === "follower") {
      this._post({ t: "reconnect" });
      if (this._state === "disconnected") this._setState("connecting");
    }
    return this;
  }

  /** Closes the connection (and hands leadership to another tab). */
  close() {
    if (!this._active) return;
    this._active = false;
    this._stopIdleWatch();
    this._typing.stopAll();
    this._outbox.stop();
    for (const fn of this._cleanups.splice(0)) {
      try {
        fn();
      } catch {
        /* ignore */
      }
    }
    this._stopController();
    this._leaveShared();
    this._role = "none";
    this._setState("disconnected");
  }

  _everyMs(ms, fn) {
    const h = setInterval(fn, ms);
    this._cleanups.push(() => clearInterval(h));
  }

  _installListeners() {
    if (typeof addEventListener !== "function") return;
    const add = (target, type, fn, opts) => {
      target.addEventListener(type, fn, opts);
      this._cleanups.push(() => target.removeEventListener(type, fn, opts));
    };
    add(globalThis, "online", () => {
      this._outbox.flush();
      this._wake();
      this._updateQuality();
    });
    add(globalThis, "offline", () => this._updateQuality());
    if (typeof document !== "undefined") {
      add(document, "visibilitychange", () => {
        if (document.visibilityState === "visible") {
          this._wake();
          if (this._activity) this._activity.touch();
        }
      });
    }
    if (this._activity) {
      const touch = () => this._activity && this._activity.touch();
      for (const t of ["mousemove", "pointerdown", "mousedown", "click", "keydown", "input", "touchstart", "wheel", "focus"]) add(globalThis, t, touch, { passive: true, capture: true });
    }
  }

  /** Back online or visible again: retry at once if waiting or given up (not after expiry). */
  _wake() {
    if (!this._active) return;
    if (this._ctl) {
      if (this._ctl.expired) return;
      if (this._ctl.state === "reconnecting" || (this._ctl.state === "disconnected" && this._ctl.gaveUp)) this._ctl.reconnect();
    } else if (this._role === "follower" && this._state === "disconnected" && !this._expiredEmitted) {
      this._post({ t: "reconnect" });
    }
  }

  _startController() {
    const o = this.options;
    this._ctl = new ConnectionController({
      transport: {
        openStream: (lastId, sink) => this._openStream(lastId, sink),
        poll: (after, wait, signal) => this._pollOnce(after, wait, signal),
        hears: (type) => !this._es || this._es.hears(type),
        listen: (type) => this._es && this._es.listen(type),
        // A poll, not GET /api/me: it is not activity, so probing a failing
        // stream does not keep an unattended session from its idle logout.
        probe: (lastId) => this._request("GET", `/api/events/poll?after=${enc(lastId ?? 0)}&wait=0`).then((r) => r.status),
      },
      clock: this.clock,
      lastEventId: this._lastEventId,
      userId: this._userId,
      maxFailures: o.maxFailures,
      backoffBaseMs: o.backoffBaseMs,
      backoffMaxMs: o.backoffMaxMs,
      jitter: o.jitter,
      readyTimeoutMs: o.readyTimeoutMs,
      shortLivedMs: o.shortLivedMs,
      badStreamsBeforePolling: o.badStreamsBeforePolling,
      allowPolling: o.polling,
      streamRetryMs: o.streamRetryMs,
      pollWaitSec: o.pollWaitSec,
      gapTimeoutMs: o.gapTimeoutMs,
      onEvent: (e) => this._onLeaderEvent(e),
      onState: (s) => this._setState(s),
      onLastId: (id) => this._setLastId(id),
    });
    this._ctl.connect();
  }

  _stopController() {
    if (this._ctl) {
      const c = this._ctl;
      this._ctl = null;
      c.close();
    }
  }

  _becomeSolo() {
    this._role = "solo";
    this._startController();
  }

  _openStream(lastId, sink) {
    if (typeof EventSource !== "function") throw new Error("EventSource is not available");
    const q = new URLSearchParams();
    if (this.token) q.set("token", this.token);
    if (lastId != null) q.set("last_event_id", String(lastId));
    const qs = q.toString();
    const es = new EventSource(`${this.baseUrl}/api/events${qs ? `?${qs}` : ""}`, { withCredentials: !this.token });
    // Durable types (everything but the ephemeral ones, app.* included) always
    // come with an id: line. For the untyped "message" event, whose kind is not
    // known, note that MessageEvent.lastEventId keeps the last id seen on the
    // stream, so only a changed value marks an id of its own.
    let prevRaw = "";
    const handler = (ev) => {
      const raw = ev.lastEventId || "";
      let id = null;
      if (!EPHEMERAL_TYPES.has(ev.type) && raw !== "" && (ev.type !== "message" || raw !== prevRaw)) {
        const n = Number(raw);
        if (Number.isFinite(n)) id = n;
      }
      prevRaw = raw;
      let data = ev.data;
      try {
        data = JSON.parse(ev.data);
      } catch {
        /* not JSON: pass the text on */
      }
      this._alive();
      sink.event({ type: ev.type, data, id });
    };
    const listening = new Set();
    const listen = (t) => {
      if (!t || t === "*" || listening.has(t)) return;
      listening.add(t);
      es.addEventListener(t, handler);
    };
    for (const t of KNOWN_TYPES) listen(t);
    for (const t of this._events.types()) listen(t);
    for (const t of this._remoteTypes || []) listen(t);
    es.onmessage = handler;
    es.onopen = () => {
      this._alive();
      sink.open();
    };
    es.onerror = () => sink.error(es.readyState === 2 ? "closed" : "error");
    const handle = { es, listen, hears: (t) => listening.has(t) };
    this._es = handle;
    return {
      close: () => {
        es.onerror = null;
        es.close();
        if (this._es === handle) this._es = null;
      },
    };
  }

  /** EventSource has no wildcard: listen for a type as soon as someone subscribes to it. */
  _listenType(type) {
    if (type === "*") return;
    if (this._es) this._es.listen(type);
    if (this._role === "follower") this._post({ t: "types", types: [type] });
  }

  async _pollOnce(after, wait, signal) {
    const r = await this._request("GET", `/api/events/poll?after=${enc(after)}&wait=${enc(wait)}`, undefined, {
      signal,
      timeoutMs: (Number(wait) + 15) * 1000,
    });
    if (r.status === 200) this._alive();
    const b = r.body || {};
    return { status: r.status, events: Array.isArray(b.events) ? b.events : [], last_id: b.last_id, reset: b.reset || null };
  }

  _alive() {
    this._lastAliveAt = this.clock.now();
  }

  _setLastId(id) {
    this._lastEventId = id;
    if (this.options.resume && id != null) writeJSON(this.storage, this._keys.last, { id, user_id: this._userId });
  }

  /** An event from this tab's own controller (solo or leader). */
  _onLeaderEvent(e) {
    if (e.type === "ready" && e.data && e.data.user_id != null) {
      this._userId = e.data.user_id;
      if (this._lastEventId != null) this._setLastId(this._lastEventId);
    }
    if (this._role === "leader") this._post({ t: "event", e });
    this._dispatch(e);
  }

  _dispatch(e) {
    if (e.type === "message.created" && e.data && e.data.client_id) this._outbox.resolveMessage(e.data);
    if (e.type === "session.expired") {
      if (this._expiredEmitted) return;
      this._expiredEmitted = true;
      if (this._role === "follower") this._setState("disconnected");
      // The server does not say why a session ended; if nobody used the page for
      // about the idle timeout, it was the idle logout.
      const idle = this.config.idleTimeoutMs;
      if (this._activity && idle > 0 && e.data && typeof e.data === "object" && this.clock.now() - this._activity.lastActivity >= idle * 0.9) {
        e = { ...e, data: { ...e.data, idle: true } };
      }
    }
    const event = { id: e.id ?? null, type: e.type, data: e.data, ...(e.time ? { time: e.time } : {}) };
    this._events.emit(e.type, e.data, event);
    this._events.emit("*", e.data, event);
  }

  _setState(s) {
    if (this._state === s) return;
    this._state = s;
    for (const fn of [...this._stateFns]) {
      try {
        fn(s);
      } catch (err) {
        console.error(err);
      }
    }
    this._updateQuality();
    if (this._role === "leader") this._post(this._stateMsg("state"));
  }

  // --- quality -------------------------------------------------------------

  _updateQuality() {
    let q;
    if (this._role === "follower") {
      q = !isOnline() ? "offline" : this._remoteQuality || computeQuality({ online: true, state: this._state });
    } else {
      q = computeQuality({
        online: isOnline(),
        state: this._state,
        silenceMs: this._lastAliveAt ? this.clock.now() - this._lastAliveAt : 0,
        heartbeatMs: this.config.heartbeatMs,
        rttMs: this._rttMs,
      });
    }
    if (q === this._quality) return;
    this._quality = q;
    for (const fn of [...this._qualityFns]) {
      try {
        fn(q);
      } catch (err) {
        console.error(err);
      }
    }
    if (this._role === "leader") this._post(this._stateMsg("state"));
  }

  /**
   * EventSource does not surface the server's `: ping` comments, so a quiet
   * stream is indistinguishable from a dead one. When no event has arrived for a
   * heartbeat interval, check it with a poll (ConnectionController.checkStream),
   * which also times a round trip for the quality.
   */
  _qualityTick() {
    if (this._ctl && this._state === "connected" && !this._probing) {
      const hb = this.config.heartbeatMs;
      const now = this.clock.now();
      if (now - this._lastAliveAt > hb && now - (this._lastProbeAt || 0) > hb) {
        this._probing = true;
        this._lastProbeAt = now;
        this._ctl
          .checkStream()
          .then((r) => {
            this._rttMs = r.ok ? r.rttMs : null;
            if (r.ok) this._alive();
          })
          .catch(() => {
            this._rttMs = null;
          })
          .finally(() => {
            this._probing = false;
            this._updateQuality();
          });
      }
    }
    this._updateQuality();
  }

  async _loadConfig() {
    try {
      const r = await this._request("GET", "/api/config");
      if (r.status === 200 && r.body) {
        this.config = normalizeConfig(r.body);
        if (this._activity) {
          this._activity.idleTimeoutMs = this.config.idleTimeoutMs;
          // Report often enough that the server's idle timer never runs out
          // while the person is using the page, even with a short timeout.
          let every = this.options.activityIntervalMs;
          const serverEvery = Number(r.body.activity_interval_ms);
          if (serverEvery > 0) every = Math.min(every, serverEvery);
          if (this.config.idleTimeoutMs > 0) every = Math.min(every, Math.max(1000, Math.floor(this.config.idleTimeoutMs / 2)));
          this._activity.reportIntervalMs = every;
        }
      }
    } catch {
      /* defaults stay */
    }
    return this.config;
  }

  // --- one connection per browser -------------------------------------------

  _joinShared() {
    this._role = "follower";
    this._fseq = new EventSequencer({ lastId: this._lastEventId });
    this._leaderSeenAt = this.clock.now();
    this._followerReady = false;
    this._channel = new BroadcastChannel(this._keys.channel);
    this._channel.onmessage = (m) => this._onChannel(m.data);
    this._setState("connecting");
    this._requestLock(false);
    this._post({ t: "hello", types: this._events.types().filter((t) => t !== "*") });
    this._watchdog = setInterval(() => this._checkLeader(), 15000);
  }

  _requestLock(steal) {
    if (this._lockAbort) this._lockAbort.abort();
    const abort = new AbortController();
    this._lockAbort = abort;
    const opts = steal ? { steal: true } : { signal: abort.signal };
    navigator.locks
      .request(this._keys.lock, opts, () => {
        if (!this._active || this._lockAbort !== abort) return undefined;
        return new Promise((release) => {
          this._releaseLock = release;
          this._becomeLeader();
        });
      })
      .catch(() => {
        // Aborted (close) or stolen by a tab that found this one frozen: step down.
        if (this._active && this._role === "leader" && this._lockAbort === abort) this._stepDown();
      });
  }

  _becomeLeader() {
    if (!this._active) return;
    this._role = "leader";
    clearTimeout(this._fgap);
    if (this._lastEventId == null && this.options.resume) {
      // This tab has handed nothing on yet: continue where the last leader stopped.
      const stored = readJSON(this.storage, this._keys.last);
      if (stored && Number.isFinite(Number(stored.id))) {
        this._lastEventId = Number(stored.id);
        this._userId = stored.user_id ?? this._userId;
      }
    }
    this._startController();
    this._post(this._stateMsg("leader"));
    this._beat = setInterval(() => this._post(this._stateMsg("beat")), LEADER_BEAT_MS);
  }

  _stepDown() {
    clearInterval(this._beat);
    this._stopController();
    this._releaseLock && this._releaseLock();
    this._releaseLock = null;
    this._role = "follower";
    this._fseq = new EventSequencer({ lastId: this._lastEventId });
    this._leaderSeenAt = this.clock.now();
    this._requestLock(false);
  }

  _leaveShared() {
    clearInterval(this._beat);
    clearInterval(this._watchdog);
    clearTimeout(this._fgap);
    if (this._lockAbort) {
      const a = this._lockAbort;
      this._lockAbort = null;
      try {
        a.abort();
      } catch {
        /* ignore */
      }
    }
    if (this._releaseLock) {
      this._releaseLock();
      this._releaseLock = null;
    }
    if (this._channel) {
      try {
        this._channel.close();
      } catch {
        /* ignore */
      }
      this._channel = null;
    }
  }

  /** A follower that has not heard from the leader for long steals the lock (frozen leader tab). */
  _checkLeader() {
    if (this._role !== "follower" || !this._active) return;
    const visible = typeof document === "undefined" || document.visibilityState === "visible";
    if (visible && this.clock.now() - this._leaderSeenAt > LEADER_STALE_MS) {
      this._leaderSeenAt = this.clock.now();
      this._requestLock(true);
    }
  }

  _stateMsg(t) {
    return { t, state: this._state, quality: this._quality, lastEventId: this._lastEventId, userId: this._userId };
  }

  _post(msg) {
    if (!this._channel) return;
    try {
      this._channel.postMessage({ ...msg, from: this.tabId });
    } catch {
      /* closed channel */
    }
  }

  _onChannel(m) {
    if (!m || m.from === this.tabId || !this._active) return;
    if (this._role === "leader") {
      if (m.t === "hello") {
        for (const t of m.types || []) this._listenRemote(t);
        this._post(this._stateMsg("state"));
      } else if (m.t === "types") {
        for (const t of m.types || []) this._listenRemote(t);
      } else if (m.t === "reconnect") {
        this.reconnect();
      }
      return;
    }
    if (this._role !== "follower") return;
    this._leaderSeenAt = this.clock.now();
    if (m.t === "state" || m.t === "leader" || m.t === "beat") {
      if (m.userId != null) this._userId = m.userId;
      if (this._fseq.lastId == null && m.lastEventId != null) {
        // Joined a running leader: live from its position.
        this._fseq.reset(m.lastEventId);
        this._lastEventId = this._fseq.lastId;
      }
      this._remoteQuality = m.quality || null;
      if (m.state) this._setState(m.state);
      this._updateQuality();
      if (!this._followerReady && (m.state === "connected" || m.state === "polling")) {
        // The ready event of the shared stream happened before this tab joined;
        // give this tab's handlers one so "load state once live" works the same.
        this._followerReady = true;
        this._dispatch({ id: null, type: "ready", data: { user_id: this._userId, last_id: this._lastEventId, shared: true } });
      }
      if (m.t === "leader") this._post({ t: "types", types: this._events.types().filter((t) => t !== "*") });
      return;
    }
    if (m.t === "event" && m.e) {
      const e = m.e;
      if (e.type === "ready") this._followerReady = true;
      if (e.type === "reset" && e.data) {
        const out = this._fseq.reset(e.data.last_id);
        this._lastEventId = this._fseq.lastId;
        this._dispatch(e);
        for (const x of out) this._followerDeliver(x);
        return;
      }
      for (const x of this._fseq.push(e)) this._followerDeliver(x);
      clearTimeout(this._fgap);
      if (this._fseq.hasGap) {
        // Relays come in order from one leader; a gap follows a change of
        // leader (its replay fills it) or this tab joining after the leader
        // relayed events it had not heard: those are read by poll at once.
        // Do not wait for ever.
        this._fillGap();
        this._fgap = setTimeout(() => {
          for (const x of this._fseq.flush()) this._followerDeliver(x);
        }, this.options.gapTimeoutMs);
      }
    }
  }

  /** Reads the events a follower's gap lacks with a poll (wait=0: not activity). */
  async _fillGap() {
    const seq = this._fseq;
    if (this._gapFilling || seq.lastId == null) return;
    this._gapFilling = true;
    try {
      const r = await this._pollOnce(seq.lastId, 0);
      if (r.status !== 200 || r.reset || seq !== this._fseq || !this._active) return;
      for (const e of r.events) {
        for (const x of seq.push(normalizePolled(e))) this._followerDeliver(x);
      }
      if (!seq.hasGap) clearTimeout(this._fgap);
    } catch {
      // the gap timeout hands on what there is
    } finally {
      this._gapFilling = false;
    }
  }

  _followerDeliver(e) {
    if (e.id != null) this._lastEventId = this._fseq.lastId;
    this._dispatch(e);
  }

  _listenRemote(t) {
    if (!t || t === "*") return;
    (this._remoteTypes ||= new Set()).add(t);
    if (this._es) this._es.listen(t);
  }

  // --- HTTP -------------------------------------------------------------------

  /**
   * One HTTP request; resolves to {status, body, headers} for any answer and
   * rejects only on network errors and timeouts.
   */
  async _request(method, path, body, { signal, timeoutMs } = {}) {
    if (typeof fetch !== "function") throw new Error("fetch is not available");
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    const ctrl = typeof AbortController === "function" ? new AbortController() : null;
    const ms = timeoutMs || this.options.requestTimeoutMs;
    const timer = ctrl && ms > 0 ? setTimeout(() => ctrl.abort(), ms) : null;
    if (signal && ctrl) {
      if (signal.aborted) ctrl.abort();
      else signal.addEventListener("abort", () => ctrl.abort(), { once: true });
    }
    try {
      const res = await fetch(this.baseUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: this.token ? "omit" : "include",
        cache: "no-store",
        signal: ctrl ? ctrl.signal : undefined,
      });
      let data = null;
      const ct = res.headers.get("Content-Type") || "";
      if (res.status !== 204 && ct.includes("json")) {
        try {
          data = await res.json();
        } catch {
          data = null;
        }
      } else if (res.status !== 204) {
        try {
          const text = await res.text();
          data = text ? { text } : null;
        } catch {
          data = null;
        }
      }
      return { status: res.status, body: data, headers: res.headers };
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  /** Calls a Parley endpoint; resolves to the JSON answer (null for 204), throws ParleyError otherwise. */
  async api(method, path, body) {
    let r;
    try {
      r = await this._request(method, path, body);
    } catch (err) {
      throw Object.assign(new ParleyError(0, { error: { code: "network_error", message: err && err.name === "AbortError" ? "request timed out" : "network error" } }), { cause: err });
    }
    if (r.status >= 400) {
      if (r.status === 401 && this._active && !path.startsWith("/api/auth/")) {
        this._dispatch({ id: null, type: "session.expired", data: { reason: "unauthorized" } });
      }
      throw new ParleyError(r.status, r.body);
    }
    return r.body;
  }

  // --- auth -------------------------------------------------------------------

  /** POST /api/auth/register → {user, token, expires_at}; the server also sets the session cookie. */
  async register({ username, password, display_name, role }) {
    const r = await this.api("POST", "/api/auth/register", { username, password, display_name, role });
    this._afterLogin(r);
    return r;
  }

  /** POST /api/auth/login → {user, token, expires_at}. */
  async login(username, password) {
    const body = typeof username === "object" && username ? username : { username, password };
    const r = await this.api("POST", "/api/auth/login", { username: body.username, password: body.password });
    this._afterLogin(r);
    return r;
  }

  _afterLogin(r) {
    if (r && r.user) {
      this.user = r.user;
      if (this._userId != null && this._userId !== r.user.id) {
        // Another account in this browser: its resume point and outbox are not ours.
        this._outbox.clear();
        this._forgetResume();
      }
      this._userId = r.user.id;
    }
    // Token mode: keep using the new token (cookie mode needs nothing).
    if (this.token && r && r.token) this.token = r.token;
    this._expiredEmitted = false;
    if (this._activity) this._activity.begin();
  }

  /**
   * POST /api/auth/logout, then forget the outbox and resume point and close the
   * connection. With {remote: false} only the local part is done (the session is
   * known to be gone already, e.g. after session.expired).
   */
  async logout({ remote = true } = {}) {
    if (remote) {
      try {
        await this._request("POST", "/api/auth/logout");
      } catch {
        /* the session is being dropped anyway */
      }
    }
    this._outbox.clear();
    this._forgetResume();
    this.user = null;
    this.close();
  }

  _forgetResume() {
    this._lastEventId = null;
    this._userId = null;
    try {
      this.storage && this.storage.removeItem(this._keys.last);
    } catch {
      /* ignore */
    }
  }

  async _idleLogout() {
    await this.logout();
    // Tell the app, unless the server's own session.expired got here first.
    if (!this._expiredEmitted) this._dispatch({ id: null, type: "session.expired", data: { reason: "idle", idle: true } });
  }

  /** GET /api/me → user (sets parley.user). */
  async me() {
    const u = await this.api("GET", "/api/me");
    this.user = u;
    if (u && u.id) {
      if (this._userId != null && this._userId !== u.id) {
        // The stored resume point and outbox belong to another account.
        this._outbox.clear();
        this._forgetResume();
      }
      this._userId = u.id;
    }
    return u;
  }

  /** GET /api/config, normalised ({heartbeatMs, idleTimeoutMs, raw}). */
  getConfig() {
    return this._loadConfig();
  }

  // --- REST helpers -----------------------------------------------------------

  /** GET /api/users?role= → user[] */
  async users(role) {
    const r = await this.api("GET", `/api/users${role ? `?role=${enc(role)}` : ""}`);
    return (r && r.users) || [];
  }
  getUser(id) {
    return this.api("GET", `/api/users/${enc(id)}`);
  }
  /** GET /api/conversations → conversation[] (newest activity first) */
  async conversations() {
    const r = await this.api("GET", "/api/conversations");
    return (r && r.conversations) || [];
  }
  getConversation(id) {
    return this.api("GET", `/api/conversations/${enc(id)}`);
  }
  /** POST /api/conversations (clients only) with the first message; the professional by id or, for an app's users, by the app's id. */
  createConversation({ professional_id, professional_external_id, subject, body, client_id }) {
    const payload = { message: { body, client_id: client_id || uuid() } };
    if (professional_external_id != null && professional_id == null) payload.professional_external_id = professional_external_id;
    else payload.professional_id = professional_id;
    if (subject) payload.subject = subject;
    return this.api("POST", "/api/conversations", payload);
  }
  /** GET messages → {messages, has_more} */
  messages(conversationId, { before_seq, after_seq, limit } = {}) {
    const q = new URLSearchParams();
    if (before_seq != null) q.set("before_seq", String(before_seq));
    if (after_seq != null) q.set("after_seq", String(after_seq));
    if (limit != null) q.set("limit", String(limit));
    const qs = q.toString();
    return this.api("GET", `/api/conversations/${enc(conversationId)}/messages${qs ? `?${qs}` : ""}`);
  }
  editMessage(messageId, body) {
    return this.api("PATCH", `/api/messages/${enc(messageId)}`, { body });
  }
  deleteMessage(messageId) {
    return this.api("DELETE", `/api/messages/${enc(messageId)}`);
  }
  markRead(conversationId, upToSeq) {
    return this.api("POST", `/api/conversations/${enc(conversationId)}/read`, { up_to_seq: upToSeq });
  }
  setTyping(conversationId, state) {
    return this.api("POST", `/api/conversations/${enc(conversationId)}/typing`, { state });
  }
  startCall(conversationId, media = "audio") {
    return this.api("POST", `/api/conversations/${enc(conversationId)}/calls`, { media });
  }
  acceptCall(callId) {
    return this.api("POST", `/api/calls/${enc(callId)}/accept`, {});
  }
  declineCall(callId) {
    return this.api("POST", `/api/calls/${enc(callId)}/decline`, {});
  }
  endCall(callId) {
    return this.api("POST", `/api/calls/${enc(callId)}/end`, {});
  }
  signal(callId, payload) {
    return this.api("POST", `/api/calls/${enc(callId)}/signal`, { payload });
  }


  // --- attachments, search, profile ---------------------------------------------

  /**
   * Uploads a file (a File or Blob) to a conversation and resolves with the
   * attachment {id, name, content_type, size, url}; pass its id to
   * send(…, {attachmentIds}). Where XMLHttpRequest exists (browsers) the upload
   * reports progress: onProgress({loaded, total}) as bytes go out; elsewhere it
   * uses fetch and calls onProgress once, at the end. `signal` (AbortSignal)
   * cancels it. Rejects with ParleyError: 413 too_large over the server's
   * limit (config.raw.max_attachment_bytes), 400 for a bad name, 0
   * network_error / aborted.
   */
  uploadAttachment(conversationId, file, { name, contentType, onProgress, signal } = {}) {
    const fileName = name || (file && file.name) || "file";
    const type = contentType || (file && file.type) || "application/octet-stream";
    const size = file && typeof file.size === "number" ? file.size : undefined;
    const url = `${this.baseUrl}/api/conversations/${enc(conversationId)}/attachments?name=${enc(fileName)}`;
    const progress = (loaded, total) => {
      if (typeof onProgress !== "function") return;
      try {
        onProgress({ loaded, total });
      } catch (err) {
        console.error(err);
      }
    };
    const done = (status, body) => {
      if (status === 201 && body && body.id) {
        progress(size ?? body.size, size ?? body.size);
        return body;
      }
      if (status === 401 && this._active) this._dispatch({ id: null, type: "session.expired", data: { reason: "unauthorized" } });
      throw new ParleyError(status, body);
    };
    const failed = (code, message) => new ParleyError(0, { error: { code, message } });
    if (typeof XMLHttpRequest !== "function") {
      const headers = { Accept: "application/json", "Content-Type": type };
      if (this.token) headers.Authorization = `Bearer ${this.token}`;
      return fetch(url, { method: "POST", headers, body: file, credentials: this.token ? "omit" : "include", cache: "no-store", signal })
        .then(async (res) => {
          let body = null;
          try {
            body = await res.json();
          } catch {
            body = null;
          }
          return done(res.status, body);
        })
        .catch((err) => {
          if (err instanceof ParleyError) throw err;
          throw err && err.name === "AbortError" ? failed("aborted", "upload cancelled") : Object.assign(failed("network_error", "network error"), { cause: err });
        });
    }
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.withCredentials = !this.token;
      xhr.setRequestHeader("Content-Type", type);
      xhr.setRequestHeader("Accept", "application/json");
      if (this.token) xhr.setRequestHeader("Authorization", `Bearer ${this.token}`);
      if (xhr.upload) xhr.upload.onprogress = (e) => progress(e.loaded, e.lengthComputable ? e.total : size);
      const onAbort = () => xhr.abort();
      if (signal) {
        if (signal.aborted) return reject(failed("aborted", "upload cancelled"));
        signal.addEventListener("abort", onAbort, { once: true });
      }
      const cleanup = () => signal && signal.removeEventListener("abort", onAbort);
      xhr.onload = () => {
        cleanup();
        let body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          body = null;
        }
        try {
          resolve(done(xhr.status, body));
        } catch (err) {
          reject(err);
        }
      };
      xhr.onerror = () => {
        cleanup();
        reject(failed("network_error", "network error"));
      };
      xhr.onabort = () => {
        cleanup();
        reject(failed("aborted", "upload cancelled"));
      };
      xhr.send(file);
    });
  }

  /**
   * The URL of an attachment (or of an id), for <img src> or a download link.
   * It works as is with the session cookie; with a token, use fetchAttachment().
   */
  attachmentUrl(attachment) {
    const url = typeof attachment === "string" ? `/api/attachments/${enc(attachment)}` : attachment.url;
    return this.baseUrl + url;
  }

  /** GET an attachment as a Blob (with the token or the cookie); throws ParleyError. */
  async fetchAttachment(attachment, { signal } = {}) {
    const headers = {};
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    let res;
    try {
      res = await fetch(this.attachmentUrl(attachment), { headers, credentials: this.token ? "omit" : "include", signal });
    } catch (err) {
      throw Object.assign(new ParleyError(0, { error: { code: "network_error", message: "network error" } }), { cause: err });
    }
    if (!res.ok) {
      let body = null;
      try {
        body = await res.json();
      } catch {
        body = null;
      }
      throw new ParleyError(res.status, body);
    }
    return res.blob();
  }

  /**
   * GET /api/search → {messages, has_more}: messages of the caller's
   * conversations (or of one) holding every word of q, whole or as a prefix,
   * ignoring case and accents, newest first.
   */
  search(q, { conversationId, limit } = {}) {
    const p = new URLSearchParams({ q: String(q) });
    if (conversationId) p.set("conversation_id", conversationId);
    if (limit != null) p.set("limit", String(limit));
    return this.api("GET", `/api/search?${p}`);
  }

  /** PATCH /api/me {display_name?, bio?} → user (and parley.user). */
  async updateProfile({ display_name, bio } = {}) {
    const body = {};
    if (display_name !== undefined) body.display_name = display_name;
    if (bio !== undefined) body.bio = bio;
    const u = await this.api("PATCH", "/api/me", body);
    this.user = u;
    return u;
  }

  /** The STUN/TURN servers for calls from /api/config (RTCIceServer[]; [] until loaded). */
  get iceServers() {
    const v = this.config.raw && this.config.raw.ice_servers;
    return Array.isArray(v) ? v : [];
  }

  // --- Web Push -------------------------------------------------------------------

  /** The server's VAPID public key (base64url), or null when Web Push is off. */
  async pushPublicKey() {
    if (!this.config.raw || !("push_public_key" in this.config.raw)) await this._loadConfig();
    return (this.config.raw && this.config.raw.push_public_key) || null;
  }

  /**
   * Subscribes this browser to Web Push through a service worker registration
   * and registers the subscription for this session (it ends with the session:
   * logout, expiry or idle logout). Call it after the person allowed
   * notifications (Notification.requestPermission()). Resolves with
   * {endpoint, created_at}. A subscription made with another server key is
   * replaced.
   */
  async subscribePush(registration, { userVisibleOnly = true } = {}) {
    const key = await this.pushPublicKey();
    if (!key) throw new ParleyError(0, { error: { code: "push_unavailable", message: "Web Push is off on this server" } });
    const pm = registration && registration.pushManager;
    if (!pm) throw new ParleyError(0, { error: { code: "push_unavailable", message: "this browser has no Push API" } });
    const want = base64UrlToBytes(key);
    let sub = await pm.getSubscription();
    if (sub && !sameBytes(sub.options && sub.options.applicationServerKey, want)) {
      await sub.unsubscribe();
      sub = null;
    }
    if (!sub) sub = await pm.subscribe({ userVisibleOnly, applicationServerKey: want });
    return this.savePushSubscription(typeof sub.toJSON === "function" ? sub.toJSON() : sub);
  }

  /** POST /api/push/subscription with a PushSubscription's JSON → {endpoint, created_at}. */
  savePushSubscription(subscription) {
    const s = subscription || {};
    return this.api("POST", "/api/push/subscription", { endpoint: s.endpoint, keys: s.keys || {} });
  }

  /** GET /api/push/subscription → {endpoint, created_at} for this session, or null. */
  async pushSubscription() {
    try {
      return await this.api("GET", "/api/push/subscription");
    } catch (err) {
      if (err instanceof ParleyError && err.status === 404) return null;
      throw err;
    }
  }

  /** Stops Web Push for this session, and (given the registration) unsubscribes the browser. */
  async unsubscribePush(registration) {
    await this.api("DELETE", "/api/push/subscription");
    const pm = registration && registration.pushManager;
    const sub = pm && (await pm.getSubscription());
    if (sub) await sub.unsubscribe();
  }

  // --- idle logout ------------------------------------------------------------------

  /**
   * When this browser's session ends for inactivity (ms since the epoch): the
   * last activity the server was told of, plus idle_timeout_ms. null when idle
   * logout is off or not tracked (token mode, or trackActivity: false).
   */
  get idleDeadline() {
    const a = this._activity;
    if (!a || !(a.idleTimeoutMs > 0) || a.idled) return null;
    const last = a.lastReport || a.lastActivity;
    return last ? last + a.idleTimeoutMs : null;
  }

  /**
   * Calls fn({deadline, remainingMs}) once when the idle deadline comes within
   * beforeMs (default 60000; at most half the idle timeout), and fn(null) when
   * activity in any tab, or stayActive(), pushes it back. While a warning is
   * shown, activity is reported at once, and at the deadline the SDK logs out
   * (session.expired with reason "idle"), so the countdown and the logout
   * agree. Returns an unsubscribe function.
   */
  onIdleWarning(fn, { beforeMs = 60000 } = {}) {
    const entry = { fn, beforeMs, warned: false };
    this._idleFns.add(entry);
    this._startIdleWatch();
    return () => {
      this._idleFns.delete(entry);
      if (!this._idleFns.size) this._stopIdleWatch();
    };
  }

  /** "Stay signed in": counts as activity now and tells the server at once. */
  async stayActive() {
    if (this._activity) {
      await this._activity.reportNow();
      this._idleTick();
      return;
    }
    await this.api("POST", "/api/auth/activity");
  }

  _startIdleWatch() {
    if (this._idleTimer || !this._active || !this._activity || !this._idleFns.size) return;
    this._idleTimer = setInterval(() => this._idleTick(), this.options.idleCheckMs);
  }

  _stopIdleWatch() {
    if (this._idleTimer) clearInterval(this._idleTimer);
    this._idleTimer = null;
  }

  _idleTick() {
    const a = this._activity;
    const deadline = this.idleDeadline;
    if (!a || deadline == null) return;
    const now = this.clock.now();
    const remaining = deadline - now;
    let warned = false;
    for (const e of this._idleFns) {
      const before = Math.min(e.beforeMs, a.idleTimeoutMs / 2);
      if (remaining <= before && !e.warned) {
        e.warned = true;
        this._callIdle(e.fn, { deadline, remainingMs: Math.max(0, remaining) });
      } else if (remaining > before && e.warned) {
        e.warned = false;
        this._callIdle(e.fn, null);
      }
      warned ||= e.warned;
    }
    if (!warned) return;
    if (a.lastActivity > a.lastReport) {
      // Used during the warning: that is staying, whatever the report interval.
      const p = a.reportNow();
      if (p && typeof p.then === "function") p.then(() => this._idleTick(), () => {});
      return;
    }
    if (remaining <= 0) {
      a.idled = true;
      this._idleLogout();
    }
  }

  _callIdle(fn, arg) {
    try {
      fn(arg);
    } catch (err) {
      console.error(err);
    }
  }

  // --- typing -------------------------------------------------------------------

  /** Call on every keystroke in a conversation's composer: throttled typing start/stop. */
  typing(conversationId) {
    this._typing.input(conversationId);
  }
  /** Sends typing stop now if a start was sent (e.g. the message was sent). */
  stopTyping(conversationId) {
    this._typing.stop(conversationId);
  }

  // --- sending --------------------------------------------------------------------

  _ensureOutbox() {
    if (this._outboxLoaded) return;
    this._outboxLoaded = true;
    this._outbox.load();
  }

  /**
   * Sends a message optimistically: it appears in the outbox (status "pending")
   * at once, is retried with the same client_id until the server answers, survives
   * reloads, and is marked "failed" after sendTimeoutMs or on a refusal.
   * Resolves with the server's message; rejects with an OutboxError on failure.
   */
  send(conversationId, body, { replyToId, clientId, attachmentIds } = {}) {
    this._ensureOutbox();
    this._typing.stop(conversationId);
    const ids = Array.isArray(attachmentIds) ? attachmentIds.map(String) : [];
    return this._outbox.send({
      conversation_id: conversationId,
      body: body == null ? "" : body,
      reply_to_id: replyToId || null,
      client_id: clientId || null,
      extra: ids.length ? { attachment_ids: ids } : null,
    });
  }

  /** Tries a failed (or waiting) message again, with its original client_id. */
  retry(clientId) {
    return this._outbox.retry(clientId);
  }

  /** Drops a message from the outbox. */
  discard(clientId) {
    return this._outbox.discard(clientId);
  }

  async _postMessage(item) {
    const payload = { body: item.body, client_id: item.client_id };
    if (item.reply_to_id) payload.reply_to_id = item.reply_to_id;
    const ids = item.extra && item.extra.attachment_ids;
    if (Array.isArray(ids) && ids.length) payload.attachment_ids = ids;
    const r = await this._request("POST", `/api/conversations/${enc(item.conversation_id)}/messages`, payload);
    return { status: r.status, body: r.body, retryAfterMs: parseRetryAfter(r.headers && r.headers.get("Retry-After")) };
  }
}

export default Parley;
