// Minimal stand-ins for the browser APIs parley.js uses (EventSource, fetch,
// navigator.locks), so that the SDK's wiring can be tested under Node.
// BroadcastChannel is Node's own (it delivers between instances in one process).

/** EventSource double: the test plays the server with open(), emit(), fail(). */
export class FakeEventSource {
  static all = [];
  static reset() {
    FakeEventSource.all = [];
  }
  static get open() {
    return FakeEventSource.all.filter((e) => e.readyState !== 2);
  }
  constructor(url, init) {
    this.url = String(url);
    this.withCredentials = !!(init && init.withCredentials);
    this.readyState = 0;
    this.listeners = new Map();
    this.lastIdBuffer = "";
    this.onopen = null;
    this.onerror = null;
    this.onmessage = null;
    FakeEventSource.all.push(this);
  }
  addEventListener(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
  }
  removeEventListener(type, fn) {
    this.listeners.get(type)?.delete(fn);
  }
  close() {
    this.readyState = 2;
  }
  get params() {
    return new URL(this.url, "http://x").searchParams;
  }
  // --- server side ---
  open() {
    this.readyState = 1;
    this.onopen && this.onopen({ type: "open" });
  }
  /** Sends one SSE event; `id` undefined means no id: line (the buffer keeps the last id, as in browsers). */
  emit(type, data, id) {
    if (this.readyState === 2) return;
    if (id !== undefined) this.lastIdBuffer = String(id);
    const ev = { type, data: JSON.stringify(data), lastEventId: this.lastIdBuffer };
    if (type === "message") this.onmessage && this.onmessage(ev);
    else for (const fn of this.listeners.get(type) || []) fn(ev);
  }
  fail() {
    this.onerror && this.onerror({ type: "error" });
  }
}

/** fetch double: `routes(method, path, body, init)` returns {status, body, headers?} or throws. */
export function installFetch(routes) {
  const calls = [];
  globalThis.fetch = async (url, init = {}) => {
    const u = new URL(url, "http://x");
    const body = init.body ? JSON.parse(init.body) : undefined;
    const call = { method: init.method || "GET", path: u.pathname + u.search, body, init };
    calls.push(call);
    const r = (await routes(call.method, call.path, body, init)) || { status: 404 };
    const headers = { "Content-Type": "application/json", ...(r.headers || {}) };
    return new Response(r.status === 204 || r.body === undefined ? null : JSON.stringify(r.body), { status: r.status, headers });
  };
  return calls;
}

/** navigator.locks double for one lock name at a time: exclusive, FIFO, signal and steal. */
export class FakeLocks {
  constructor() {
    this.held = null;
    this.queue = [];
  }
  request(name, opts, cb) {
    if (typeof opts === "function") (cb = opts), (opts = {});
    return new Promise((resolve, reject) => {
      const req = { name, cb, resolve, reject, opts };
      if (opts.signal) {
        if (opts.signal.aborted) return reject(abortError());
        opts.signal.addEventListener("abort", () => {
          const i = this.queue.indexOf(req);
          if (i >= 0) {
            this.queue.splice(i, 1);
            reject(abortError());
          }
        });
      }
      if (opts.steal) {
        if (this.held) {
          this.held.reject(abortError());
          this.held = null;
        }
        this._grant(req);
      } else {
        this.queue.push(req);
        this._pump();
      }
    });
  }
  _grant(req) {
    this.held = req;
    Promise.resolve()
      .then(() => req.cb({ name: req.name, mode: "exclusive" }))
      .then(
        (v) => {
          if (this.held === req) this.held = null;
          req.resolve(v);
          this._pump();
        },
        (e) => {
          if (this.held === req) this.held = null;
          req.reject(e);
          this._pump();
        },
      );
  }
  _pump() {
    if (!this.held && this.queue.length) this._grant(this.queue.shift());
  }
}

function abortError() {
  const e = new Error("aborted");
  e.name = "AbortError";
  return e;
}

/** Installs globals; returns a restore function. */
export function installBrowser({ locks = null, online = true } = {}) {
  const saved = {
    EventSource: globalThis.EventSource,
    fetch: globalThis.fetch,
    navigator: Object.getOwnPropertyDescriptor(globalThis, "navigator"),
  };
  globalThis.EventSource = FakeEventSource;
  Object.defineProperty(globalThis, "navigator", { value: { onLine: online, ...(locks ? { locks } : {}) }, configurable: true, writable: true });
  FakeEventSource.reset();
  return () => {
    globalThis.EventSource = saved.EventSource;
    globalThis.fetch = saved.fetch;
    if (saved.navigator) Object.defineProperty(globalThis, "navigator", saved.navigator);
    else delete globalThis.navigator;
  };
}
