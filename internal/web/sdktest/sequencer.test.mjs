import { test } from "node:test";
import assert from "node:assert/strict";
import { EventSequencer } from "../static/sdk/core.js";

const ev = (id, type = "message.created") => ({ id, type, data: { n: id } });
const ids = (list) => list.map((e) => e.id);

test("in-order events are delivered and advance lastId", () => {
  const s = new EventSequencer({ lastId: 4 });
  assert.deepEqual(ids(s.push(ev(5))), [5]);
  assert.deepEqual(ids(s.push(ev(6))), [6]);
  assert.equal(s.lastId, 6);
});

test("duplicates and old ids are dropped", () => {
  const s = new EventSequencer({ lastId: 10 });
  assert.deepEqual(s.push(ev(3)), []);
  assert.deepEqual(s.push(ev(10)), []);
  assert.deepEqual(ids(s.push(ev(11))), [11]);
  assert.deepEqual(s.push(ev(11)), [], "the same event twice is delivered once");
  assert.equal(s.duplicates, 3);
  assert.equal(s.lastId, 11);
});

test("out-of-order events are held and released in order once the gap fills", () => {
  const s = new EventSequencer({ lastId: 1 });
  assert.deepEqual(s.push(ev(4)), []);
  assert.deepEqual(s.push(ev(3)), []);
  assert.equal(s.hasGap, true);
  assert.deepEqual(s.gap, [2, 2]);
  assert.deepEqual(s.push(ev(4)), [], "a held duplicate is not held twice");
  assert.deepEqual(ids(s.push(ev(2))), [2, 3, 4]);
  assert.equal(s.hasGap, false);
  assert.equal(s.lastId, 4);
});

test("flush gives up on a gap and delivers held events in id order", () => {
  const s = new EventSequencer({ lastId: 1 });
  s.push(ev(7));
  s.push(ev(5));
  assert.deepEqual(ids(s.flush()), [5, 7]);
  assert.equal(s.lastId, 7);
  assert.equal(s.skipped, 4, "ids 2, 3, 4 and 6 were never seen");
  assert.deepEqual(s.push(ev(6)), [], "a late event below lastId is a duplicate now");
});

test("ephemeral events (no id) pass straight through without touching lastId", () => {
  const s = new EventSequencer({ lastId: 3 });
  const typing = { id: null, type: "typing", data: {} };
  assert.deepEqual(s.push(typing), [typing]);
  const presence = { type: "presence", data: {} };
  assert.deepEqual(s.push(presence), [presence]);
  assert.equal(s.lastId, 3);
  // Even while a gap is open, ephemeral events are not held back.
  s.push(ev(6));
  assert.deepEqual(s.push(typing), [typing]);
});

test("with no baseline the first durable event sets it", () => {
  const s = new EventSequencer();
  assert.equal(s.lastId, null);
  assert.deepEqual(ids(s.push(ev(42))), [42]);
  assert.equal(s.lastId, 42);
  assert.deepEqual(ids(s.push(ev(43))), [43]);
});

test("reset moves the baseline, drops held events at or below it and releases those after", () => {
  const s = new EventSequencer({ lastId: 2 });
  s.push(ev(9));
  s.push(ev(11));
  s.push(ev(12));
  const out = s.reset(10);
  assert.deepEqual(ids(out), [11, 12]);
  assert.equal(s.lastId, 12);
  assert.equal(s.hasGap, false);
  assert.deepEqual(s.push(ev(9)), []);
});

test("maxHeld bounds memory: overflowing the hold flushes", () => {
  const s = new EventSequencer({ lastId: 0, maxHeld: 3 });
  s.push(ev(2));
  s.push(ev(3));
  s.push(ev(4));
  assert.deepEqual(ids(s.push(ev(5))), [2, 3, 4, 5]);
  assert.equal(s.lastId, 5);
});
