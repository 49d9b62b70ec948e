import { test } from "node:test";
import assert from "node:assert/strict";
import { ActivityTracker, MemoryStorage, TypingThrottle, computeQuality, normalizeConfig, parseDurationMs, uuid, Emitter } from "../static/sdk/core.js";
import { FakeClock } from "./helpers.mjs";

test("typing: start at most every 3 s while typing, stop after inactivity", async () => {
  const clock = new FakeClock();
  const sent = [];
  const t = new TypingThrottle({ send: (id, s) => sent.push(`${id}:${s}`), clock, intervalMs: 3000, idleMs: 4000 });
  t.input("c1");
  t.input("c1");
  await clock.advance(1000);
  t.input("c1");
  assert.deepEqual(sent, ["c1:start"]);
  await clock.advance(2000);
  t.input("c1"); // 3 s since the start: renew
  assert.deepEqual(sent, ["c1:start", "c1:start"]);
  await clock.advance(3999);
  assert.deepEqual(sent, ["c1:start", "c1:start"]);
  await clock.advance(1);
  assert.deepEqual(sent, ["c1:start", "c1:start", "c1:stop"]);
  await clock.advance(10000);
  assert.equal(sent.length, 3, "one stop only");
});

test("typing: stop() sends stop only after a start, per conversation", async () => {
  const clock = new FakeClock();
  const sent = [];
  const t = new TypingThrottle({ send: (id, s) => sent.push(`${id}:${s}`), clock });
  t.stop("c1");
  assert.deepEqual(sent, []);
  t.input("c1");
  t.input("c2");
  t.stop("c1");
  assert.deepEqual(sent, ["c1:start", "c2:start", "c1:stop"]);
  t.input("c1");
  assert.deepEqual(sent.at(-1), "c1:start", "typing again after a stop sends a new start at once");
  t.stopAll();
  assert.deepEqual(sent.slice(-2).sort(), ["c1:stop", "c2:stop"]);
});

test("typing: a failing send does not throw", () => {
  const t = new TypingThrottle({ send: () => Promise.reject(new Error("offline")), clock: new FakeClock() });
  t.input("c1");
  const t2 = new TypingThrottle({ send: () => { throw new Error("boom"); }, clock: new FakeClock() });
  assert.doesNotThrow(() => t2.input("c1"));
});

test("activity: reported at most once a minute, shared across tabs through storage", async () => {
  const clock = new FakeClock();
  const storage = new MemoryStorage();
  let reports = 0;
  const tabA = new ActivityTracker({ storage, clock, report: () => reports++ });
  const tabB = new ActivityTracker({ storage, clock, report: () => reports++ });
  tabA.begin();
  tabA.touch();
  assert.equal(reports, 0, "login itself was activity: nothing due yet");
  await clock.advance(30000);
  tabA.touch();
  tabB.touch();
  assert.equal(reports, 0);
  await clock.advance(30000);
  tabB.touch();
  assert.equal(reports, 1, "due after a minute");
  await clock.advance(1000);
  tabA.touch();
  assert.equal(reports, 1, "tab A sees tab B's report in storage");
  await clock.advance(60000);
  tabA.touch();
  assert.equal(reports, 2);
});

test("activity: idle logout after the timeout, postponed by activity in any tab or a reload", async () => {
  const clock = new FakeClock();
  const storage = new MemoryStorage();
  let idleA = 0;
  let idleB = 0;
  const tabA = new ActivityTracker({ storage, clock, idleTimeoutMs: 300000, onIdle: () => idleA++ });
  tabA.begin();
  await clock.advance(200000);
  const tabB = new ActivityTracker({ storage, clock, idleTimeoutMs: 300000, onIdle: () => idleB++ });
  tabB.touch(); // activity in another tab
  await clock.advance(200000);
  assert.equal(tabA.check(), false, "tab A is not idle: tab B was used 200 s ago");
  // A reload: a new tracker reads the stored time.
  const reloaded = new ActivityTracker({ storage, clock, idleTimeoutMs: 300000, onIdle: () => {} });
  assert.equal(reloaded.lastActivity, tabB.lastActivity);
  await clock.advance(100000);
  assert.equal(tabA.check(), true);
  assert.equal(tabA.check(), false, "onIdle once");
  assert.equal(tabB.check(), true);
  assert.equal(idleA, 1);
  assert.equal(idleB, 1);
  tabA.touch();
  assert.equal(tabA.idled, true, "no activity revives an idled tracker until begin()");
  tabA.begin();
  assert.equal(tabA.idled, false);
});

test("activity: idle timeout 0 means never", async () => {
  const clock = new FakeClock();
  const t = new ActivityTracker({ storage: new MemoryStorage(), clock, idleTimeoutMs: 0, onIdle: () => assert.fail("idle") });
  t.begin();
  await clock.advance(10 * 3600 * 1000);
  assert.equal(t.check(), false);
});

test("config: expected fields, other spellings, absence", () => {
  assert.deepEqual(
    (({ heartbeatMs, idleTimeoutMs }) => ({ heartbeatMs, idleTimeoutMs }))(normalizeConfig({ heartbeat_ms: 15000, idle_timeout_ms: 300000 })),
    { heartbeatMs: 15000, idleTimeoutMs: 300000 },
  );
  assert.equal(normalizeConfig({ heartbeat: "10s", idle_timeout: "5m0s" }).idleTimeoutMs, 300000);
  assert.equal(normalizeConfig({ heartbeat: "10s" }).heartbeatMs, 10000);
  assert.equal(normalizeConfig({ heartbeat_seconds: 20 }).heartbeatMs, 20000);
  const none = normalizeConfig({});
  assert.equal(none.heartbeatMs, 15000);
  assert.equal(none.idleTimeoutMs, 0, "no idle timeout known: no client-side logout");
  assert.equal(normalizeConfig(null).heartbeatMs, 15000);
  assert.equal(normalizeConfig({ idle_timeout_ms: 0 }).idleTimeoutMs, 0);
});

test("parseDurationMs understands Go durations", () => {
  assert.equal(parseDurationMs("1h2m3.5s"), 3723500);
  assert.equal(parseDurationMs("250ms"), 250);
  assert.equal(parseDurationMs(1500), 1500);
  assert.equal(parseDurationMs("1500"), 1500);
  assert.equal(parseDurationMs("soon"), null);
  assert.equal(parseDurationMs("5 minutes"), null);
});

test("quality: offline, poor, good", () => {
  assert.equal(computeQuality({ online: false, state: "connected" }), "offline");
  assert.equal(computeQuality({ state: "disconnected" }), "offline");
  for (const s of ["connecting", "reconnecting", "polling"]) assert.equal(computeQuality({ state: s }), "poor");
  assert.equal(computeQuality({ state: "connected", silenceMs: 1000 }), "good");
  assert.equal(computeQuality({ state: "connected", silenceMs: 60000, heartbeatMs: 15000 }), "poor", "heartbeat late");
  assert.equal(computeQuality({ state: "connected", silenceMs: 1000, rttMs: 5000 }), "poor", "slow round trip");
});

test("uuid is v4 and unique", () => {
  const a = uuid();
  assert.match(a, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.notEqual(a, uuid());
});

test("Emitter: a throwing handler does not stop the others", () => {
  const e = new Emitter();
  const got = [];
  const orig = console.error;
  console.error = () => {};
  try {
    e.on("x", () => { throw new Error("bad handler"); });
    const off = e.on("x", (v) => got.push(v));
    e.emit("x", 1);
    off();
    e.emit("x", 2);
  } finally {
    console.error = orig;
  }
  assert.deepEqual(got, [1]);
});
