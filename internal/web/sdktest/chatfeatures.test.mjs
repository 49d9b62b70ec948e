// The SDK's methods for attachments, search, profile, Web Push and the idle
// warning (issue 19), against fake fetch / XMLHttpRequest / PushManager.
import { afterEach, test } from "node:test";
import assert from "node:assert/strict";
import { Parley, ParleyError } from "../static/sdk/parley.js";
import { MemoryStorage } from "../static/sdk/core.js";
import { installBrowser, installFetch } from "./browser_fakes.mjs";
import { settle } from "./helpers.mjs";

const made = [];
function mk(opts) {
  const p = new Parley(opts);
  made.push(p);
  return p;
}
afterEach(() => {
  for (const p of made.splice(0)) p.close();
  delete globalThis.XMLHttpRequest;
});

async function waitFor(cond, what, ms = 2000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

const CONFIG = { heartbeat_ms: 15000, idle_timeout_ms: 300000, push_public_key: null, ice_servers: [] };

function routes(extra = () => null, config = CONFIG) {
  return async (method, path, body, init) => {
    const r = await extra(method, path, body, init);
    if (r) return r;
    if (path === "/api/config") return { status: 200, body: config };
    const m = path.match(/^\/api\/conversations\/([^/]+)\/messages$/);
    if (m && method === "POST")
      return { status: 201, body: { id: "m-" + body.client_id, conversation_id: m[1], seq: 1, body: body.body, client_id: body.client_id, attachments: (body.attachment_ids || []).map((id) => ({ id })) } };
    if (path === "/api/auth/activity" || path === "/api/auth/logout") return { status: 204 };
    return { status: 404, body: { error: { code: "not_found", message: "nope" } } };
  };
}

/** XMLHttpRequest double: records requests; the test answers with respond(). */
class FakeXHR {
  static all = [];
  constructor() {
    this.headers = {};
    this.upload = { onprogress: null };
    this.withCredentials = false;
    FakeXHR.all.push(this);
  }
  open(method, url) {
    this.method = method;
    this.url = url;
  }
  setRequestHeader(k, v) {
    this.headers[k] = v;
  }
  send(body) {
    this.body = body;
  }
  abort() {
    this.aborted = true;
    this.onabort && this.onabort();
  }
  progress(loaded, total) {
    this.upload.onprogress({ loaded, total, lengthComputable: true });
  }
  respond(status, body) {
    this.status = status;
    this.responseText = JSON.stringify(body);
    this.onload();
  }
}

test("send with attachmentIds: POSTs attachment_ids (body may be empty); kept in the outbox across a reload", async (t) => {
  t.after(installBrowser());
  let fail = true;
  const calls = installFetch(routes((method, path) => (fail && method === "POST" && path.endsWith("/messages") ? { status: 503, body: {} } : null)));
  const storage = new MemoryStorage();
  const p = mk({ storage, shared: false, trackActivity: false, sendTimeoutMs: 600000 });
  p.connect(); // so that close() stops the outbox's retries
  p.send("c1", "", { attachmentIds: ["att_1", "att_2"] }).catch(() => {});
  await waitFor(() => calls.some((c) => c.path === "/api/conversations/c1/messages"), "the first attempt");
  const first = calls.find((c) => c.path === "/api/conversations/c1/messages");
  assert.deepEqual(first.body.attachment_ids, ["att_1", "att_2"]);
  assert.equal(first.body.body, "");
  p.close();

  // A new page picks the item up from storage, attachments and all.
  fail = false;
  const p2 = mk({ storage, shared: false, trackActivity: false });
  const sent = new Promise((resolve) => p2.onOutbox((_items, ch) => ch.type === "sent" && resolve(ch.message)));
  p2.connect();
  const msg = await sent;
  assert.deepEqual(msg.attachments.map((a) => a.id), ["att_1", "att_2"]);
  const retried = calls.filter((c) => c.path === "/api/conversations/c1/messages").pop();
  assert.equal(retried.body.client_id, first.body.client_id);
  assert.deepEqual(retried.body.attachment_ids, ["att_1", "att_2"]);

  // Without attachments there is no attachment_ids field at all.
  await p2.send("c1", "plain");
  assert.equal("attachment_ids" in calls.filter((c) => c.path.endsWith("/messages")).pop().body, false);
});

test("uploadAttachment: XHR with the raw file, its type and ?name=, progress, token or cookie; errors as ParleyError", async (t) => {
  t.after(installBrowser());
  installFetch(routes());
  globalThis.XMLHttpRequest = FakeXHR;
  FakeXHR.all = [];
  const file = new Blob(["x".repeat(100)], { type: "application/pdf" });
  file.name = "résumé final.pdf";

  const cookie = mk({ shared: false, trackActivity: false });
  const seen = [];
  const up = cookie.uploadAttachment("c/1", file, { onProgress: (p) => seen.push([p.loaded, p.total]) });
  const x = FakeXHR.all[0];
  assert.equal(x.method, "POST");
  assert.equal(x.url, "/api/conversations/c%2F1/attachments?name=r%C3%A9sum%C3%A9%20final.pdf");
  assert.equal(x.headers["Content-Type"], "application/pdf");
  assert.equal(x.headers.Authorization, undefined);
  assert.equal(x.withCredentials, true);
  assert.equal(x.body, file, "the file itself is the body");
  x.progress(40, 100);
  x.progress(100, 100);
  const att = { id: "att_1", name: "résumé final.pdf", content_type: "application/pdf", size: 100, url: "/api/attachments/att_1" };
  x.respond(201, att);
  assert.deepEqual(await up, att);
  assert.deepEqual(seen, [[40, 100], [100, 100], [100, 100]]);

  const tok = mk({ token: "tkn", shared: false, baseUrl: "https://chat.example" });
  const up2 = tok.uploadAttachment("c1", new Blob(["abc"]), { name: "a.bin" });
  const x2 = FakeXHR.all[1];
  assert.equal(x2.url, "https://chat.example/api/conversations/c1/attachments?name=a.bin");
  assert.equal(x2.headers.Authorization, "Bearer tkn");
  assert.equal(x2.headers["Content-Type"], "application/octet-stream");
  assert.equal(x2.withCredentials, false);
  x2.respond(413, { error: { code: "too_large", message: "attachments are limited to 10485760 bytes" } });
  await assert.rejects(up2, (err) => err instanceof ParleyError && err.status === 413 && err.code === "too_large");

  const ctrl = new AbortController();
  const up3 = cookie.uploadAttachment("c1", file, { signal: ctrl.signal });
  ctrl.abort();
  await assert.rejects(up3, (err) => err instanceof ParleyError && err.code === "aborted");
  assert.equal(FakeXHR.all[2].aborted, true);

  assert.equal(tok.attachmentUrl(att), "https://chat.example/api/attachments/att_1");
  assert.equal(cookie.attachmentUrl("att_2"), "/api/attachments/att_2");
});

test("uploadAttachment without XMLHttpRequest: fetch with the file as the body, progress once at the end", async (t) => {
  t.after(installBrowser());
  const calls = [];
  globalThis.fetch = async (url, init) => {
    calls.push({ url, init });
    return new Response(JSON.stringify({ id: "att_9", size: 3 }), { status: 201, headers: { "Content-Type": "application/json" } });
  };
  const p = mk({ token: "tkn", shared: false });
  const blob = new Blob(["abc"], { type: "image/png" });
  const seen = [];
  const att = await p.uploadAttachment("c1", blob, { name: "p.png", onProgress: (e) => seen.push(e) });
  assert.equal(att.id, "att_9");
  assert.equal(calls[0].url, "/api/conversations/c1/attachments?name=p.png");
  assert.equal(calls[0].init.method, "POST");
  assert.equal(calls[0].init.body, blob);
  assert.equal(calls[0].init.headers["Content-Type"], "image/png");
  assert.equal(calls[0].init.headers.Authorization, "Bearer tkn");
  assert.deepEqual(seen, [{ loaded: 3, total: 3 }]);
});

test("search, updateProfile, fetchAttachment, iceServers", async (t) => {
  t.after(installBrowser());
  const calls = installFetch(
    routes(
      (method, path, body) => {
        if (path.startsWith("/api/search")) return { status: 200, body: { messages: [{ id: "m1" }], has_more: false } };
        if (path === "/api/me" && method === "PATCH") return { status: 200, body: { id: "u1", display_name: body.display_name ?? "Ann", bio: body.bio ?? "" } };
        return null;
      },
      { ...CONFIG, ice_servers: [{ urls: "stun:stun.example.org" }] },
    ),
  );
  const p = mk({ shared: false, trackActivity: false });
  const r = await p.search("café crème", { conversationId: "c1", limit: 5 });
  assert.deepEqual(r, { messages: [{ id: "m1" }], has_more: false });
  assert.equal(calls.at(-1).path, "/api/search?q=caf%C3%A9+cr%C3%A8me&conversation_id=c1&limit=5");
  await p.search("x");
  assert.equal(calls.at(-1).path, "/api/search?q=x");

  const u = await p.updateProfile({ bio: "GP" });
  assert.deepEqual(calls.at(-1).body, { bio: "GP" }, "only the given fields are sent");
  assert.equal(calls.at(-1).method, "PATCH");
  assert.equal(p.user, u);

  assert.deepEqual(p.iceServers, []);
  await p.getConfig();
  assert.deepEqual(p.iceServers, [{ urls: "stun:stun.example.org" }]);

  globalThis.fetch = async (url, init) => {
    calls.push({ url, init });
    return url.endsWith("att_x") ? new Response("nope", { status: 404 }) : new Response(new Blob(["PNG"]), { status: 200 });
  };
  const blob = await p.fetchAttachment({ url: "/api/attachments/att_1" });
  assert.equal(await blob.text(), "PNG");
  assert.equal(calls.at(-1).init.credentials, "include");
  await assert.rejects(p.fetchAttachment("att_x"), (err) => err.status === 404);
});

/** A PushManager double. */
function fakeRegistration(existing = null) {
  const reg = {
    calls: [],
    sub: existing,
    pushManager: {
      getSubscription: async () => reg.sub,
      subscribe: async (opts) => {
        reg.calls.push(opts);
        reg.sub = fakeSub("https://fcm.googleapis.com/fcm/send/new", opts.applicationServerKey);
        return reg.sub;
      },
    },
  };
  return reg;
}

function fakeSub(endpoint, key) {
  const s = {
    endpoint,
    options: { applicationServerKey: key.buffer ? key.buffer.slice(0) : key },
    unsubscribed: false,
    unsubscribe: async () => ((s.unsubscribed = true), true),
    toJSON: () => ({ endpoint, expirationTime: null, keys: { p256dh: "BPUB", auth: "AUTH" } }),
  };
  return s;
}

test("Web Push: subscribe with the server's key, register for the session, unsubscribe; off when the server has no key", async (t) => {
  t.after(installBrowser());
  // 65 bytes: 0x04 then 1..64, as base64url.
  const keyBytes = new Uint8Array(65).map((_, i) => (i === 0 ? 4 : i));
  const key = Buffer.from(keyBytes).toString("base64url");
  let stored = null;
  const calls = installFetch(
    routes(
      (method, path, body) => {
        if (path !== "/api/push/subscription") return null;
        if (method === "POST") return (stored = { endpoint: body.endpoint, created_at: "2026-01-01T00:00:00.000000Z" }), { status: 201, body: stored };
        if (method === "GET") return stored ? { status: 200, body: stored } : { status: 404, body: { error: { code: "not_found", message: "no" } } };
        if (method === "DELETE") return (stored = null), { status: 204 };
        return null;
      },
      { ...CONFIG, push_public_key: key },
    ),
  );
  const p = mk({ shared: false, trackActivity: false });
  assert.equal(await p.pushPublicKey(), key);
  assert.equal(await p.pushSubscription(), null);

  // A subscription made with another key is replaced.
  const old = fakeSub("https://fcm.googleapis.com/fcm/send/old", new Uint8Array(65));
  const reg = fakeRegistration(old);
  const rec = await p.subscribePush(reg);
  assert.equal(old.unsubscribed, true);
  assert.equal(reg.calls.length, 1);
  assert.equal(reg.calls[0].userVisibleOnly, true);
  assert.deepEqual([...reg.calls[0].applicationServerKey], [...keyBytes]);
  const post = calls.find((c) => c.method === "POST" && c.path === "/api/push/subscription");
  assert.deepEqual(post.body, { endpoint: "https://fcm.googleapis.com/fcm/send/new", keys: { p256dh: "BPUB", auth: "AUTH" } });
  assert.equal(rec.endpoint, "https://fcm.googleapis.com/fcm/send/new");
  assert.deepEqual(await p.pushSubscription(), stored);

  // The same key again: the browser's subscription is kept.
  await p.subscribePush(reg);
  assert.equal(reg.calls.length, 1);

  await p.unsubscribePush(reg);
  assert.equal(reg.sub.unsubscribed, true);
  assert.equal(await p.pushSubscription(), null);

  const off = mk({ shared: false, trackActivity: false });
  installFetch(routes());
  await assert.rejects(off.subscribePush(fakeRegistration()), (err) => err.code === "push_unavailable");
});

test("idle: idleDeadline, a warning before it, stayActive() and activity push it back, logout at the deadline", async (t) => {
  t.after(installBrowser());
  const calls = installFetch(routes());
  let now = 1_700_000_000_000;
  const clock = { now: () => now, setTimeout, clearTimeout, random: Math.random };
  const p = mk({ shared: false, trackActivity: true, storage: new MemoryStorage(), clock, idleCheckMs: 2 });
  assert.equal(p.idleDeadline, null, "unknown until the config says there is an idle timeout");
  const warnings = [];
  const expired = [];
  p.onIdleWarning((w) => warnings.push(w));
  p.on("session.expired", (d) => expired.push(d));
  p.connect();
  await waitFor(() => p.idleDeadline != null, "the config");
  assert.equal(p.idleDeadline, 1_700_000_000_000 + 300000);

  now += 239000; // 61 s left: no warning yet
  await settle(20);
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(warnings, []);
  now += 2000; // 59 s left
  await waitFor(() => warnings.length === 1, "the warning");
  assert.deepEqual(warnings[0], { deadline: 1_700_000_300_000, remainingMs: 59000 });

  const reports = calls.filter((c) => c.path === "/api/auth/activity").length;
  await p.stayActive();
  await waitFor(() => warnings.length === 2, "the warning to clear");
  assert.equal(warnings[1], null);
  assert.equal(calls.filter((c) => c.path === "/api/auth/activity").length, reports + 1, "stayActive tells the server at once");
  assert.equal(p.idleDeadline, now + 300000);

  // Activity while warned is reported at once and clears the warning.
  now += 250000;
  await waitFor(() => warnings.length === 3, "the second warning");
  now += 1000;
  p._activity.touch(); // what a key press does (the listeners are the page's)
  await waitFor(() => warnings.length === 4, "activity to clear the warning");
  assert.equal(calls.filter((c) => c.path === "/api/auth/activity").length, reports + 2);

  // Left alone: warned, then logged out at the deadline, not before.
  now += 241000;
  await waitFor(() => warnings.length === 5, "the third warning");
  assert.equal(expired.length, 0);
  now += 59000;
  await waitFor(() => expired.length === 1, "the idle logout");
  assert.equal(expired[0].reason, "idle");
  assert.ok(calls.some((c) => c.path === "/api/auth/logout"));
  assert.equal(p.state, "disconnected");
});

test("idle: no idle tracking (token mode) means no deadline; stayActive still tells the server", async (t) => {
  t.after(installBrowser());
  const calls = installFetch(routes());
  const p = mk({ token: "tkn", shared: false });
  p.connect();
  await settle();
  assert.equal(p.idleDeadline, null);
  await p.stayActive();
  assert.equal(calls.at(-1).path, "/api/auth/activity");
});
