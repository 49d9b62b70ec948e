import { test } from "node:test";
import assert from "node:assert/strict";
import { MemoryStorage, Outbox, OutboxError, classifySendStatus, storageKeys } from "../static/sdk/core.js";
import { FakeClock, settle } from "./helpers.mjs";

/** A scripted transport: answers come from `script` (status or function), calls are recorded. */
function scripted(script) {
  const calls = [];
  const fn = async (item) => {
    calls.push(item);
    const step = script.length > 1 ? script.shift() : script[0];
    const r = typeof step === "function" ? await step(item) : step;
    if (r instanceof Error) throw r;
    if (typeof r === "number") {
      return { status: r, body: r < 300 ? { id: "m-" + item.client_id, seq: calls.length, client_id: item.client_id, body: item.body } : { error: { code: "x", message: `status ${r}` } } };
    }
    return r;
  };
  fn.calls = calls;
  return fn;
}

function make(script, opts = {}) {
  const clock = opts.clock || new FakeClock();
  const storage = opts.storage || new MemoryStorage();
  const transport = scripted(script);
  let n = 0;
  const changes = [];
  const ob = new Outbox({ storage, transport, clock, failAfterMs: 60000, idFactory: () => `cid-${++n}`, ...opts.outbox });
  ob.subscribe((items, change) => changes.push({ type: change.type, items }));
  return { ob, clock, storage, transport, changes };
}

test("classifySendStatus: 200/201 ok, transient retry, other 4xx fatal", () => {
  assert.equal(classifySendStatus(201), "ok");
  assert.equal(classifySendStatus(200), "ok");
  for (const s of [0, undefined, 408, 429, 500, 502, 503, 504]) assert.equal(classifySendStatus(s), "retry", String(s));
  for (const s of [400, 401, 403, 404, 409, 413, 415, 422]) assert.equal(classifySendStatus(s), "fatal", String(s));
});

test("send is optimistic: a pending item appears before the server answers, then is settled", async () => {
  let release;
  const { ob, transport, storage, changes } = make([() => new Promise((r) => (release = r))]);
  const p = ob.send({ conversation_id: "c1", body: "hello", reply_to_id: "m0" });
  const items = ob.items();
  assert.equal(items.length, 1);
  assert.equal(items[0].status, "pending");
  assert.equal(items[0].client_id, "cid-1");
  assert.equal(items[0].reply_to_id, "m0");
  assert.equal(changes[0].type, "queued");
  assert.ok(storage.getItem("parley:outbox:cid-1"), "persisted before the first attempt completes");
  await settle();
  assert.equal(transport.calls.length, 1);
  assert.equal(transport.calls[0].client_id, "cid-1");
  release({ status: 201, body: { id: "m1", seq: 7, client_id: "cid-1" } });
  const msg = await p;
  assert.equal(msg.id, "m1");
  assert.equal(ob.items().length, 0);
  assert.equal(storage.getItem("parley:outbox:cid-1"), null, "removed from storage once sent");
  assert.equal(changes.at(-1).type, "sent");
});

test("transient failures are retried with the same client_id, and 200 (the original) counts as success", async () => {
  const { ob, clock, transport } = make([0, 503, 429, 200]);
  const p = ob.send({ conversation_id: "c1", body: "hi" });
  await clock.advance(30000);
  const msg = await p;
  assert.equal(transport.calls.length, 4);
  assert.deepEqual(new Set(transport.calls.map((c) => c.client_id)), new Set(["cid-1"]));
  assert.equal(msg.client_id, "cid-1");
  assert.equal(ob.items().length, 0);
});

test("retries back off between attempts", async () => {
  const { ob, clock, transport } = make([503]);
  ob.send({ conversation_id: "c1", body: "x" });
  await settle();
  assert.equal(transport.calls.length, 1);
  await clock.advance(800);
  assert.equal(transport.calls.length, 1, "not retried before the first backoff delay");
  await clock.advance(200);
  assert.equal(transport.calls.length, 2, "retried after ~1 s");
  await clock.advance(1000);
  assert.equal(transport.calls.length, 2, "second delay is ~2 s");
  await clock.advance(1000);
  assert.equal(transport.calls.length, 3);
});

test("Retry-After from a 429 is respected", async () => {
  const { ob, clock, transport } = make([{ status: 429, body: null, retryAfterMs: 5000 }, 201]);
  const p = ob.send({ conversation_id: "c1", body: "x" });
  await clock.advance(4900);
  assert.equal(transport.calls.length, 1);
  await clock.advance(200);
  assert.equal(transport.calls.length, 2);
  assert.equal((await p).client_id, "cid-1");
});

test("a 4xx other than 429 fails at once, without retries", async () => {
  const { ob, clock, transport } = make([403]);
  const p = ob.send({ conversation_id: "c1", body: "x" });
  await assert.rejects(p, (err) => err instanceof OutboxError && err.status === 403 && err.client_id === "cid-1");
  await clock.advance(120000);
  assert.equal(transport.calls.length, 1);
  const [it] = ob.items();
  assert.equal(it.status, "failed");
  assert.equal(it.failed_status, 403);
});

test("a message that cannot be sent is marked failed after the bounded time", async () => {
  const { ob, clock, transport, storage } = make([0]);
  const p = ob.send({ conversation_id: "c1", body: "x" });
  let rejected = null;
  p.catch((e) => (rejected = e));
  await clock.advance(59000);
  assert.equal(ob.items()[0].status, "pending");
  assert.equal(rejected, null);
  await clock.advance(2000);
  assert.equal(ob.items()[0].status, "failed");
  assert.ok(rejected instanceof OutboxError);
  assert.ok(transport.calls.length >= 5, `attempted several times (${transport.calls.length})`);
  assert.equal(JSON.parse(storage.getItem("parley:outbox:cid-1")).status, "failed", "the failed state is persisted");
  const before = transport.calls.length;
  await clock.advance(120000);
  assert.equal(transport.calls.length, before, "no attempts once failed");
});

test("a request hanging past the deadline fails the item; a late success still settles it", async () => {
  let release;
  const { ob, clock, changes } = make([() => new Promise((r) => (release = r))]);
  const p = ob.send({ conversation_id: "c1", body: "x" });
  p.catch(() => {});
  await clock.advance(60001);
  assert.equal(ob.items()[0].status, "failed");
  release({ status: 201, body: { id: "m9", client_id: "cid-1" } });
  await settle();
  assert.equal(ob.items().length, 0);
  assert.equal(changes.at(-1).type, "sent");
});

test("retry(client_id) makes a failed item pending again with the same client_id", async () => {
  const { ob, clock, transport } = make([400, 201]);
  const p = ob.send({ conversation_id: "c1", body: "x" });
  await assert.rejects(p);
  assert.equal(ob.items()[0].status, "failed");
  const p2 = ob.retry("cid-1");
  assert.equal(ob.items()[0].status, "pending");
  const msg = await p2;
  assert.equal(msg.client_id, "cid-1");
  assert.deepEqual(transport.calls.map((c) => c.client_id), ["cid-1", "cid-1"]);
  assert.equal(ob.items().length, 0);
  await assert.rejects(ob.retry("nope"), (e) => e.code === "not_found");
  await clock.advance(1000);
});

test("discard drops the item from memory and storage", async () => {
  const { ob, storage } = make([400]);
  await assert.rejects(ob.send({ conversation_id: "c1", body: "x" }));
  assert.equal(ob.discard("cid-1"), true);
  assert.equal(ob.items().length, 0);
  assert.equal(storage.getItem("parley:outbox:cid-1"), null);
  assert.equal(ob.discard("cid-1"), false);
});

test("the outbox survives a reload: a new Outbox on the same storage resumes with the same client_id", async () => {
  const storage = new MemoryStorage();
  const clock = new FakeClock();
  const first = make([() => new Promise(() => {})], { storage, clock }); // never answers: page closes mid-send
  first.ob.send({ conversation_id: "c1", body: "survives", reply_to_id: "m3" });
  await settle();
  assert.equal(storageKeys(storage, "parley:outbox:").length, 1);
  first.ob.stop();

  // "Reload": another instance, same storage.
  const second = make([200], { storage, clock });
  second.ob.load();
  const [it] = second.ob.items();
  assert.equal(it.client_id, "cid-1");
  assert.equal(it.body, "survives");
  assert.equal(it.reply_to_id, "m3");
  assert.equal(second.changes[0].type, "loaded");
  await settle();
  assert.equal(second.transport.calls.length, 1);
  assert.equal(second.transport.calls[0].client_id, "cid-1", "the reloaded send keeps its client_id (safe retry)");
  assert.equal(second.ob.items().length, 0);
  assert.equal(storageKeys(storage, "parley:outbox:").length, 0);
});

test("messages of one conversation go out in the order they were written, also across retries", async () => {
  let down = true;
  const { ob, clock, transport } = make([() => (down ? 0 : 201)]);
  const p1 = ob.send({ conversation_id: "c1", body: "one" });
  const p2 = ob.send({ conversation_id: "c1", body: "two" });
  const p3 = ob.send({ conversation_id: "c2", body: "other" });
  await settle();
  assert.deepEqual(transport.calls.map((c) => c.body), ["one", "other"], "the second of c1 waits; c2 does not");
  await clock.advance(5000);
  assert.ok(!transport.calls.some((c) => c.body === "two"), "not sent while the first is still failing");
  down = false;
  await clock.advance(30000);
  await Promise.all([p1, p2, p3]);
  const c1 = transport.calls.filter((c) => c.conversation_id === "c1").map((c) => c.body);
  assert.equal(c1.at(-1), "two");
  assert.equal(c1.filter((b) => b === "two").length, 1);
  assert.equal(ob.items().length, 0);
});

test("a failed message does not hold back the next one", async () => {
  const { ob, transport } = make([422, 201]);
  await assert.rejects(ob.send({ conversation_id: "c1", body: "refused" }));
  const m = await ob.send({ conversation_id: "c1", body: "next" });
  assert.equal(m.body, "next");
  assert.deepEqual(transport.calls.map((c) => c.body), ["refused", "next"]);
});

test("a reloaded outbox sends oldest first", async () => {
  const storage = new MemoryStorage();
  const item = (id, at, body) => ({ client_id: id, conversation_id: "c1", body, reply_to_id: null, status: "pending", attempts: 1, created_at: at, deadline: at + 60000, error: null });
  // Stored in the wrong order: storage order says nothing about age.
  storage.setItem("parley:outbox:zz-new", JSON.stringify(item("zz-new", 2000, "second")));
  storage.setItem("parley:outbox:aa-old", JSON.stringify(item("aa-old", 1000, "first")));
  const { ob, transport, clock } = make([201], { storage });
  ob.load();
  await clock.advance(1000);
  assert.deepEqual(transport.calls.map((c) => c.body), ["first", "second"]);
  assert.equal(ob.items().length, 0);
});

test("a failed item stays failed across a reload and can be retried", async () => {
  const storage = new MemoryStorage();
  const first = make([422], { storage });
  await assert.rejects(first.ob.send({ conversation_id: "c1", body: "x" }));
  const second = make([201], { storage });
  second.ob.load();
  await settle();
  assert.equal(second.transport.calls.length, 0, "failed items are not re-sent by themselves");
  assert.equal(second.ob.items()[0].status, "failed");
  await second.ob.retry("cid-1");
  assert.equal(second.transport.calls[0].client_id, "cid-1");
});

test("a message.created carrying the client_id settles the item before the HTTP answer", async () => {
  const { ob } = make([() => new Promise(() => {})]);
  const p = ob.send({ conversation_id: "c1", body: "x" });
  assert.equal(ob.resolveMessage({ id: "m5", client_id: "cid-1", seq: 5 }), true);
  assert.equal((await p).id, "m5");
  assert.equal(ob.items().length, 0);
  assert.equal(ob.resolveMessage({ id: "m6", client_id: "other" }), false);
});

test("flush() attempts waiting items at once (back online)", async () => {
  const { ob, clock, transport } = make([0, 0, 0, 201]);
  ob.send({ conversation_id: "c1", body: "x" });
  await clock.advance(3500); // three attempts so far, next one ~4 s later
  const n = transport.calls.length;
  ob.flush();
  await settle();
  assert.equal(transport.calls.length, n + 1);
});

test("clear() (logout) forgets everything", async () => {
  const { ob, storage } = make([() => new Promise(() => {})]);
  const p = ob.send({ conversation_id: "c1", body: "x" });
  ob.clear();
  await assert.rejects(p, (e) => e.code === "discarded");
  assert.equal(ob.items().length, 0);
  assert.equal(storageKeys(storage, "parley:outbox:").length, 0);
});

test("an explicit client_id is used, and sending it twice does not duplicate", async () => {
  const { ob, transport } = make([() => new Promise(() => {})]);
  const a = ob.send({ conversation_id: "c1", body: "x", client_id: "mine" });
  const b = ob.send({ conversation_id: "c1", body: "x", client_id: "mine" });
  assert.equal(a, b);
  await settle();
  assert.equal(transport.calls.length, 1);
  assert.equal(ob.items()[0].client_id, "mine");
});
