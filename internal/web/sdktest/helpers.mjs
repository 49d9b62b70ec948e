// Test helpers for the SDK tests (node --test internal/web/sdktest/).

/** Lets pending promise callbacks and I/O callbacks run. */
export async function settle(rounds = 5) {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}

/**
 * A deterministic clock with the realClock interface of core.js: timers run only
 * when advance() moves time past them, in order; random() is fixed (0.5 by default).
 */
export class FakeClock {
  constructor(start = 1_700_000_000_000) {
    this.t = start;
    this.timers = new Map();
    this.seq = 0;
    this.rand = 0.5;
    this.random = () => this.rand;
    this.now = () => this.t;
    this.setTimeout = (fn, ms) => {
      const id = ++this.seq;
      this.timers.set(id, { at: this.t + Math.max(0, Number(ms) || 0), fn, id });
      return id;
    };
    this.clearTimeout = (id) => {
      this.timers.delete(id);
    };
  }

  /** Delay of the earliest pending timer from now, or null. */
  nextDelay() {
    let min = null;
    for (const t of this.timers.values()) if (min == null || t.at < min) min = t.at;
    return min == null ? null : min - this.t;
  }

  get pending() {
    return this.timers.size;
  }

  /** Moves time forward by ms, running due timers (and the promise work they start) in order. */
  async advance(ms) {
    const end = this.t + ms;
    for (;;) {
      await settle();
      let next = null;
      for (const t of this.timers.values()) if (t.at <= end && (!next || t.at < next.at || (t.at === next.at && t.id < next.id))) next = t;
      if (!next) break;
      this.timers.delete(next.id);
      this.t = next.at;
      next.fn();
    }
    this.t = end;
    await settle();
  }
}

/**
 * A fake stream/poll transport for ConnectionController: records the streams it
 * opened and the polls asked for, and lets the test play the server.
 */
export function fakeTransport() {
  const t = {
    streams: [],
    polls: [],
    probes: [],
    probeStatus: 200,
    openStream(lastId, sink) {
      const s = {
        lastId,
        sink,
        closed: false,
        close() {
          s.closed = true;
        },
        ready(last_id, user_id = "u1") {
          sink.open();
          sink.event({ type: "ready", data: { user_id, last_id, server_time: new Date().toISOString() }, id: null });
        },
        send(id, type = "message.created", data = {}) {
          sink.event({ type, data, id });
        },
        fail(reason = "error") {
          sink.error(reason);
        },
      };
      t.streams.push(s);
      return s;
    },
    poll(after, wait, signal) {
      return new Promise((resolve, reject) => {
        const p = { after, wait, signal, resolve, reject, answered: false };
        p.answer = (status, events = [], last_id) => {
          p.answered = true;
          resolve({ status, events, last_id: last_id ?? (events.length ? events[events.length - 1].id : after) });
        };
        t.polls.push(p);
      });
    },
    probe(lastId) {
      t.probes.push(lastId);
      return Promise.resolve(t.probeStatus);
    },
    get last() {
      return t.streams[t.streams.length - 1];
    },
    get open() {
      return t.streams.filter((s) => !s.closed);
    },
  };
  return t;
}
