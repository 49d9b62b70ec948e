import { test } from "node:test";
import assert from "node:assert/strict";
import { createParleyHooks, useParley as useParleyShorthand } from "../static/sdk/react.js";
import { Parley } from "../static/sdk/parley.js";
import { MemoryStorage } from "../static/sdk/core.js";
import { FakeEventSource, installBrowser, installFetch } from "./browser_fakes.mjs";

/**
 * The smallest React-like hook runtime that follows the rules the hooks rely on:
 * state slots by call order, effects after render when deps change, cleanups
 * before re-running and on unmount, re-render after setState.
 */
function miniReact() {
  let slots = [];
  let i = 0;
  let pending = [];
  let dirty = false;
  let component = null;
  let output = null;
  const React = {
    useState(init) {
      const k = i++;
      if (!(k in slots)) slots[k] = { v: typeof init === "function" ? init() : init };
      const slot = slots[k];
      return [
        slot.v,
        (nv) => {
          const v = typeof nv === "function" ? nv(slot.v) : nv;
          if (!Object.is(v, slot.v)) {
            slot.v = v;
            dirty = true;
          }
        },
      ];
    },
    useRef(init) {
      const k = i++;
      if (!(k in slots)) slots[k] = { current: init };
      return slots[k];
    },
    useEffect(fn, deps) {
      const k = i++;
      const prev = slots[k];
      if (!prev || !deps || deps.some((d, j) => !Object.is(d, prev.deps[j]))) {
        pending.push(() => {
          if (prev && typeof prev.cleanup === "function") prev.cleanup();
          slots[k] = { deps, cleanup: fn() };
        });
      } else slots[k] = prev;
    },
  };
  const renderOnce = () => {
    i = 0;
    pending = [];
    output = component();
    for (const e of pending.splice(0)) e();
  };
  const flush = () => {
    for (let n = 0; dirty && n < 50; n++) {
      dirty = false;
      renderOnce();
    }
  };
  return {
    React,
    mount(c) {
      component = c;
      renderOnce();
      flush();
    },
    flush,
    get output() {
      flush();
      return output;
    },
    unmount() {
      for (const s of slots) if (s && typeof s.cleanup === "function") s.cleanup();
      slots = [];
    },
  };
}

function routes() {
  return async (method, path) => (path === "/api/config" ? { status: 200, body: { heartbeat_ms: 15000 } } : { status: 404, body: null });
}

test("createParleyHooks needs React", () => {
  assert.throws(() => createParleyHooks(null), TypeError);
  assert.throws(() => createParleyHooks({}), TypeError);
});

test("useParley with an instance follows its state and outbox; useParleyEvent delivers and unsubscribes", async (t) => {
  const restore = installBrowser();
  t.after(restore);
  installFetch(routes());
  const parley = new Parley({ storage: new MemoryStorage(), shared: false, trackActivity: false });
  t.after(() => parley.close());
  const r = miniReact();
  const { useParley, useParleyEvent } = createParleyHooks(r.React);
  const got = [];
  r.mount(() => {
    const res = useParley(parley);
    useParleyEvent(res.parley, "message.created", (m) => got.push(m.body));
    return res;
  });
  assert.equal(r.output.parley, parley);
  assert.equal(r.output.state, "disconnected");
  assert.equal(FakeEventSource.all.length, 0, "an instance passed in is not connected by the hook");
  parley.connect();
  assert.equal(r.output.state, "connecting");
  const es = FakeEventSource.all[0];
  es.emit("ready", { user_id: "u1", last_id: 0 });
  assert.equal(r.output.state, "connected");
  es.emit("message.created", { body: "hi" }, 1);
  assert.deepEqual(got, ["hi"]);
  parley.send("c1", "pending one").catch(() => {});
  assert.equal(r.output.outbox.length, 1);
  assert.equal(r.output.outbox[0].body, "pending one");
  r.unmount();
  es.emit("message.created", { body: "after unmount" }, 2);
  assert.deepEqual(got, ["hi"], "the handler is removed on unmount");
  assert.equal(parley.state, "connected", "unmount does not close an instance it did not create");
});

test("useParley with options creates, connects on mount and closes on unmount", async (t) => {
  const restore = installBrowser();
  t.after(restore);
  installFetch(routes());
  const r = miniReact();
  r.mount(() => useParleyShorthand(r.React, { storage: new MemoryStorage(), shared: false, trackActivity: false }));
  const first = r.output.parley;
  assert.ok(first instanceof Parley);
  assert.equal(FakeEventSource.all.length, 1, "connected on mount");
  assert.equal(r.output.state, "connecting");
  FakeEventSource.all[0].emit("ready", { user_id: "u1", last_id: 3 });
  assert.equal(r.output.state, "connected");
  assert.equal(r.output.parley, first, "the same instance across renders");
  r.unmount();
  assert.equal(first.state, "disconnected");
  assert.equal(FakeEventSource.all[0].readyState, 2);
});
