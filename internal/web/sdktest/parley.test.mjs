import { afterEach, test } from "node:test";
import assert from "node:assert/strict";
import { Parley } from "../static/sdk/parley.js";
import { MemoryStorage } from "../static/sdk/core.js";
import { FakeEventSource, FakeLocks, installBrowser, installFetch } from "./browser_fakes.mjs";
import { settle } from "./helpers.mjs";

// Every Parley made by a test is closed after it, even when an assertion fails,
// so that no interval or channel keeps the test process alive.
const made = [];
function mk(opts) {
  const p = new Parley(opts);
  made.push(p);
  return p;
}
afterEach(() => {
  for (const p of made.splice(0)) p.close();
});

function defaultRoutes(extra = () => null) {
  return async (method, path, body) => {
    const r = await extra(method, path, body);
    if (r) return r;
    if (path === "/api/config") return { status: 200, body: { heartbeat_ms: 15000, idle_timeout_ms: 300000 } };
    if (path === "/api/me") return { status: 200, body: { id: "u1", username: "ann" } };
    const m = path.match(/^\/api\/conversations\/([^/]+)\/messages$/);
    if (m && method === "POST") return { status: 201, body: { id: "m-" + body.client_id, conversation_id: m[1], seq: 1, body: body.body, client_id: body.client_id } };
    return { status: 404, body: { error: { code: "not_found", message: "nope" } } };
  };
}

async function waitFor(cond, what, ms = 2000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test("solo: cookie stream, typed and wildcard handlers, ephemeral vs durable ids, resume on reconnect", async (t) => {
  const restore = installBrowser();
  t.after(restore);
  installFetch(defaultRoutes());
  const storage = new MemoryStorage();
  const p = mk({ storage, shared: false, trackActivity: false });
  const states = [];
  const got = [];
  const all = [];
  p.onState((s) => states.push(s));
  p.on("message.created", (data, ev) => got.push([ev.id, data.body]));
  p.on("typing", (data, ev) => got.push([ev.id, "typing"]));
  p.on("*", (_d, ev) => all.push(ev.type));
  p.connect();
  assert.equal(p.role, "solo");
  assert.equal(p.state, "connecting");
  const es = FakeEventSource.all[0];
  assert.equal(new URL(es.url, "http://x").pathname, "/api/events");
  assert.equal(es.params.get("last_event_id"), null);
  assert.equal(es.params.get("token"), null);
  assert.equal(es.withCredentials, true);
  es.open();
  es.emit("ready", { user_id: "u1", last_id: 4, server_time: "2024-01-01T00:00:00.000Z" });
  assert.equal(p.state, "connected");
  assert.equal(p.lastEventId, 4);
  es.emit("message.created", { body: "a" }, 5);
  es.emit("typing", { state: "start" }); // no id: line, the buffer still says 5
  es.emit("message.created", { body: "a" }, 5); // duplicate
  es.emit("message.created", { body: "b" }, 6);
  assert.deepEqual(got, [[5, "a"], [null, "typing"], [6, "b"]]);
  assert.deepEqual(all, ["ready", "message.created", "typing", "message.created"]);
  assert.equal(p.lastEventId, 6);
  assert.deepEqual(JSON.parse(storage.getItem("parley:last")), { id: 6, user_id: "u1" });

  p.reconnect();
  assert.equal(es.readyState, 2, "old stream closed");
  const es2 = FakeEventSource.all[1];
  assert.equal(es2.params.get("last_event_id"), "6", "a fresh EventSource resumes through the query parameter");
  es2.emit("ready", { user_id: "u1", last_id: 7 });
  es2.emit("message.created", { body: "b" }, 6);
  es2.emit("message.created", { body: "c" }, 7);
  assert.deepEqual(got.slice(3), [[7, "c"]]);
  assert.deepEqual(states, ["connecting", "connected", "reconnecting", "connected"]);
  p.close();
  assert.equal(p.state, "disconnected");
  assert.equal(es2.readyState, 2);

  // A reload resumes from the stored position.
  const again = mk({ storage, shared: false, trackActivity: false });
  assert.equal(again.lastEventId, 7);
  again.connect();
  assert.equal(FakeEventSource.all[2].params.get("last_event_id"), "7");
  again.close();
});

test("token mode: ?token= on the stream, Bearer on fetch, no credentials", async (t) => {
  const restore = installBrowser();
  t.after(restore);
  const calls = installFetch(defaultRoutes());
  const p = mk({ token: "abc.def", storage: new MemoryStorage(), shared: false });
  p.connect();
  const es = FakeEventSource.all[0];
  assert.equal(es.params.get("token"), "abc.def");
  assert.equal(es.withCredentials, false);
  await p.me();
  const me = calls.find((c) => c.path === "/api/me");
  assert.equal(me.init.headers.Authorization, "Bearer abc.def");
  assert.equal(me.init.credentials, "omit");
  p.close();
});

test("subscribing to an app.* type adds a listener to the open EventSource", async (t) => {
  const restore = installBrowser();
  t.after(restore);
  installFetch(defaultRoutes());
  const p = mk({ storage: new MemoryStorage(), shared: false, trackActivity: false });
  p.connect();
  const es = FakeEventSource.all[0];
  es.emit("ready", { user_id: "u1", last_id: 0 });
  const got = [];
  p.on("app.invoice", (d, ev) => got.push([ev.id, d.total]));
  es.emit("app.invoice", { total: 12 }, 1);
  assert.deepEqual(got, [[1, 12]]);
  p.close();
});

test("send: optimistic outbox item, POST with client_id, resolved by the server's message", async (t) => {
  const restore = installBrowser();
  t.after(restore);
  const calls = installFetch(defaultRoutes());
  const storage = new MemoryStorage();
  const p = mk({ storage, shared: false, trackActivity: false });
  const snapshots = [];
  p.onOutbox((items) => snapshots.push(items.map((i) => i.status)));
  const promise = p.send("c 1", "hello <b>", { replyToId: "m0" });
  assert.equal(p.outbox.length, 1);
  assert.equal(p.outbox[0].status, "pending");
  const cid = p.outbox[0].client_id;
  const msg = await promise;
  assert.equal(msg.client_id, cid);
  const post = calls.find((c) => c.method === "POST");
  assert.equal(post.path, "/api/conversations/c%201/messages");
  assert.deepEqual(post.body, { body: "hello <b>", client_id: cid, reply_to_id: "m0" });
  assert.equal(post.init.headers["Content-Type"], "application/json");
  assert.equal(p.outbox.length, 0);
  assert.deepEqual(snapshots, [["pending"], []]);
});

test("send: a 4xx fails at once; retry() resends with the same client_id", async (t) => {
  const restore = installBrowser();
  t.after(restore);
  let refuse = true;
  const calls = installFetch(
    defaultRoutes((method, path) => (method === "POST" && refuse ? { status: 404, body: { error: { code: "not_found", message: "no such conversation" } } } : null)),
  );
  const p = mk({ storage: new MemoryStorage(), shared: false, trackActivity: false });
  await assert.rejects(p.send("c1", "x"), (e) => e.name === "OutboxError" && e.status === 404);
  const [item] = p.outbox;
  assert.equal(item.status, "failed");
  assert.equal(item.error, "no such conversation");
  refuse = false;
  const msg = await p.retry(item.client_id);
  assert.equal(msg.client_id, item.client_id);
  const posts = calls.filter((c) => c.method === "POST");
  assert.equal(posts.length, 2);
  assert.equal(posts[0].body.client_id, posts[1].body.client_id);
});

test("api errors become ParleyError with the SPEC code", async (t) => {
  const restore = installBrowser();
  t.after(restore);
  installFetch(async () => ({ status: 409, body: { error: { code: "conflict", message: "username taken" } } }));
  const p = mk({ storage: new MemoryStorage(), shared: false });
  await assert.rejects(p.register({ username: "ann", password: "12345678", role: "client" }), (e) => e.name === "ParleyError" && e.status === 409 && e.code === "conflict" && e.message === "username taken");
});

test("shared: one stream per browser; followers get events relayed; a new leader resumes without loss", async (t) => {
  const locks = new FakeLocks();
  const restore = installBrowser({ locks });
  t.after(restore);
  installFetch(defaultRoutes());
  const storage = new MemoryStorage();
  const a = mk({ storage, trackActivity: false });
  const b = mk({ storage, trackActivity: false });
  const gotA = [];
  const gotB = [];
  a.on("*", (d, ev) => gotA.push(`${ev.type}:${ev.id}`));
  b.on("*", (d, ev) => gotB.push(`${ev.type}:${ev.id}`));
  a.connect();
  await waitFor(() => a.role === "leader", "a to lead");
  b.connect();
  assert.equal(b.role, "follower");
  assert.equal(FakeEventSource.all.length, 1, "only the leader opens a stream");
  const es = FakeEventSource.all[0];
  es.open();
  es.emit("ready", { user_id: "u1", last_id: 10 });
  await waitFor(() => b.state === "connected", "b to see the leader's state");
  es.emit("message.created", { body: "one" }, 11);
  es.emit("typing", { state: "start" });
  es.emit("message.created", { body: "two" }, 12);
  await waitFor(() => gotB.includes("message.created:12"), "relay to b");
  assert.ok(gotB.includes("ready:null"), "the follower gets a ready to load state on");
  assert.deepEqual(gotB.filter((x) => !x.startsWith("ready")), ["message.created:11", "typing:null", "message.created:12"]);
  assert.deepEqual(gotA.filter((x) => !x.startsWith("ready")), ["message.created:11", "typing:null", "message.created:12"]);
  assert.equal(b.lastEventId, 12);
  assert.equal(FakeEventSource.all.length, 1);

  // The leader tab goes away: b takes over and resumes from the last id it handed on.
  a.close();
  await waitFor(() => b.role === "leader", "b to take over");
  assert.equal(FakeEventSource.all.length, 2);
  const es2 = FakeEventSource.all[1];
  assert.equal(es2.params.get("last_event_id"), "12");
  es2.emit("ready", { user_id: "u1", last_id: 13 });
  es2.emit("message.created", { body: "two" }, 12); // replay seam duplicate
  es2.emit("message.created", { body: "three" }, 13);
  assert.deepEqual(gotB.filter((x) => x.startsWith("message")), ["message.created:11", "message.created:12", "message.created:13"]);
  assert.equal(b.state, "connected");
  b.close();
  await settle();
});

test("shared: a follower's reconnect() is carried out by the leader", async (t) => {
  const locks = new FakeLocks();
  const restore = installBrowser({ locks });
  t.after(restore);
  installFetch(defaultRoutes());
  const storage = new MemoryStorage();
  const a = mk({ storage, trackActivity: false });
  const b = mk({ storage, trackActivity: false });
  a.connect();
  await waitFor(() => a.role === "leader", "a to lead");
  b.connect();
  FakeEventSource.all[0].emit("ready", { user_id: "u1", last_id: 1 });
  await waitFor(() => b.state === "connected", "b connected");
  b.reconnect();
  await waitFor(() => FakeEventSource.all.length === 2, "a new stream");
  assert.equal(FakeEventSource.all[0].readyState, 2);
  assert.equal(FakeEventSource.all[1].params.get("last_event_id"), "1");
  a.close();
  b.close();
  await settle();
});

test("without Web Locks each tab has its own stream", async (t) => {
  const restore = installBrowser({ locks: null });
  t.after(restore);
  installFetch(defaultRoutes());
  const a = mk({ storage: new MemoryStorage(), trackActivity: false });
  const b = mk({ storage: new MemoryStorage(), trackActivity: false });
  a.connect();
  b.connect();
  assert.equal(a.role, "solo");
  assert.equal(b.role, "solo");
  assert.equal(FakeEventSource.all.length, 2);
  a.close();
  b.close();
});

test("session.expired from the stream: emitted once, disconnected, no reconnect", async (t) => {
  const restore = installBrowser();
  t.after(restore);
  installFetch(defaultRoutes());
  const p = mk({ storage: new MemoryStorage(), shared: false, trackActivity: false });
  const expired = [];
  p.on("session.expired", (d) => expired.push(d));
  p.connect();
  const es = FakeEventSource.all[0];
  es.emit("ready", { user_id: "u1", last_id: 0 });
  es.emit("session.expired", { reason: "logout" });
  es.fail();
  assert.equal(p.state, "disconnected");
  assert.equal(expired.length, 1);
  await new Promise((r) => setTimeout(r, 1200));
  assert.equal(FakeEventSource.all.length, 1, "no reconnect after expiry");
  p.close();
});

test("a stream refused before opening is probed with a poll, which is not activity, and a 401 there expires the session", async (t) => {
  const restore = installBrowser();
  t.after(restore);
  const calls = installFetch(defaultRoutes((method, path) => (path.startsWith("/api/events/poll") ? { status: 401, body: { error: { code: "unauthorized", message: "no" } } } : null)));
  const p = mk({ storage: new MemoryStorage(), shared: false, trackActivity: false });
  const expired = [];
  p.on("session.expired", (d) => expired.push(d));
  p.connect();
  FakeEventSource.all[0].fail();
  await waitFor(() => expired.length === 1, "session.expired after the probe");
  const probes = calls.filter((c) => c.path.startsWith("/api/events/poll"));
  assert.ok(probes.length >= 1, "the probe is a poll");
  assert.match(probes[0].path, /wait=0/);
  assert.equal(calls.filter((c) => c.path === "/api/me").length, 0, "GET /api/me counts as activity: not used to probe");
  assert.equal(p.state, "disconnected");
  p.close();
});

test("token mode: a new token for the same user keeps the resume point and the outbox; another user's does not share them", async (t) => {
  const restore = installBrowser();
  t.after(restore);
  installFetch(defaultRoutes((method) => (method === "POST" ? new Promise(() => {}) : null))); // sends never answer
  const storage = new MemoryStorage();
  const jwt = (claims) => `eyJhbGciOiJIUzI1NiJ9.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.sig`;
  const first = mk({ token: jwt({ iss: "https://app.example", sub: "ann", jti: "load-1" }), storage, shared: false, trackActivity: false });
  first.connect();
  const es = FakeEventSource.all.at(-1);
  es.open();
  es.emit("ready", { user_id: "u1", last_id: 4 });
  es.emit("message.created", { body: "a" }, 5);
  first.send("c1", "queued before the reload").catch(() => {});
  assert.equal(first.outbox.length, 1);
  first.close();

  // The page reloads and gets a fresh token for the same user.
  const second = mk({ token: jwt({ iss: "https://app.example", sub: "ann", jti: "load-2" }), storage, shared: false, trackActivity: false });
  assert.equal(second.lastEventId, 5, "resumes where the last load stopped");
  second.connect();
  assert.equal(FakeEventSource.all.at(-1).params.get("last_event_id"), "5");
  assert.deepEqual(second.outbox.map((i) => i.body), ["queued before the reload"], "the queued message is still there to send");
  assert.notEqual(second.scope, first.scope, "a stream is still the token's own");
  second.close();

  const other = mk({ token: jwt({ iss: "https://app.example", sub: "bob", jti: "x" }), storage, shared: false, trackActivity: false });
  assert.equal(other.lastEventId, null);
  other.connect();
  assert.equal(other.outbox.length, 0);
  other.close();
});

test("shared: a tab that joins after the leader relayed events reads them by poll, at once and once", async (t) => {
  const locks = new FakeLocks();
  const restore = installBrowser({ locks });
  t.after(restore);
  const log = [11, 12, 13, 14].map((id) => ({ id, type: "message.created", data: { body: `m${id}` }, time: "2026-01-01T00:00:00.000Z" }));
  const calls = installFetch(
    defaultRoutes((method, path) => {
      const m = path.match(/^\/api\/events\/poll\?after=(\d+)&wait=0$/);
      if (!m) return null;
      const events = log.filter((e) => e.id > Number(m[1]));
      return { status: 200, body: { events, last_id: events.length ? events.at(-1).id : Number(m[1]) } };
    }),
  );
  const storage = new MemoryStorage();
  const a = mk({ storage, trackActivity: false });
  a.connect();
  await waitFor(() => a.role === "leader", "a to lead");
  const es = FakeEventSource.all[0];
  es.open();
  es.emit("ready", { user_id: "u1", last_id: 10 });
  es.emit("message.created", { body: "m11" }, 11);
  // b was made (reading the resume point, 11) before 12 and 13 came.
  const b = mk({ storage, trackActivity: false, gapTimeoutMs: 60000 });
  const gotB = [];
  b.on("message.created", (d, ev) => gotB.push(ev.id));
  es.emit("message.created", { body: "m12" }, 12);
  es.emit("message.created", { body: "m13" }, 13);
  b.connect();
  assert.equal(b.role, "follower");
  es.emit("message.created", { body: "m14" }, 14);
  await waitFor(() => gotB.length === 3, "b to have 12, 13 and 14");
  assert.deepEqual(gotB, [12, 13, 14], "in order, none lost, none twice, without waiting out the gap timeout");
  assert.ok(calls.some((c) => c.path === "/api/events/poll?after=11&wait=0"), "the gap was read by poll");
  a.close();
  b.close();
  await settle();
});
