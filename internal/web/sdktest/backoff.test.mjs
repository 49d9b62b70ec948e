import { test } from "node:test";
import assert from "node:assert/strict";
import { Backoff, backoffDelay } from "../static/sdk/core.js";

test("backoff starts at 1 s and doubles up to a 30 s cap (no jitter)", () => {
  const got = [];
  for (let i = 0; i < 10; i++) got.push(backoffDelay(i, { jitter: 0 }));
  assert.deepEqual(got, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000, 30000]);
  assert.equal(backoffDelay(1000, { jitter: 0 }), 30000, "huge attempt numbers stay at the cap");
  assert.equal(backoffDelay(-3, { jitter: 0 }), 1000, "negative attempts count as the first");
});

test("jitter stays within [nominal*(1-j), nominal] and never exceeds the cap", () => {
  for (const r of [0, 0.25, 0.5, 0.999999]) {
    for (let i = 0; i < 12; i++) {
      const nominal = Math.min(30000, 1000 * 2 ** i);
      const d = backoffDelay(i, { jitter: 0.2, random: () => r });
      assert.ok(d <= nominal, `attempt ${i} r=${r}: ${d} > ${nominal}`);
      assert.ok(d >= Math.floor(nominal * 0.8), `attempt ${i} r=${r}: ${d} < ${nominal * 0.8}`);
      assert.ok(d <= 30000);
    }
  }
  // random() = 0 means no reduction, random() → 1 the full jitter.
  assert.equal(backoffDelay(0, { jitter: 0.2, random: () => 0 }), 1000);
  assert.equal(backoffDelay(0, { jitter: 0.2, random: () => 0.5 }), 900);
  assert.equal(backoffDelay(3, { jitter: 0.5, random: () => 1 }), 4000);
});

test("jitter actually varies the delay", () => {
  const seen = new Set();
  for (let i = 0; i < 50; i++) seen.add(backoffDelay(4));
  assert.ok(seen.size > 5, "Math.random jitter should spread delays");
});

test("Backoff gives up after maxFailures consecutive failures and resets", () => {
  const b = new Backoff({ maxFailures: 3, jitter: 0 });
  assert.equal(b.fail(), 1000);
  assert.equal(b.fail(), 2000);
  assert.equal(b.exhausted, false);
  assert.equal(b.fail(), null, "third failure of three: give up");
  assert.equal(b.exhausted, true);
  assert.equal(b.failures, 3);
  b.reset();
  assert.equal(b.failures, 0);
  assert.equal(b.exhausted, false);
  assert.equal(b.fail(), 1000, "after a reset the delay starts at 1 s again");
});

test("Backoff defaults: cap 30 s, never gives up; maxFailures 10 gives up at the tenth", () => {
  const b = new Backoff({ jitter: 0 });
  const delays = [];
  for (let i = 0; i < 9; i++) delays.push(b.fail());
  assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]);
  for (let i = 0; i < 100; i++) assert.equal(b.fail(), 30000);
  const ten = new Backoff({ maxFailures: 10, jitter: 0 });
  for (let i = 0; i < 9; i++) assert.ok(ten.fail() > 0);
  assert.equal(ten.fail(), null);
});
