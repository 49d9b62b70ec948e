import { test } from "node:test";
import assert from "node:assert/strict";
import { ConnectionController } from "../static/sdk/core.js";
import { FakeClock, fakeTransport, settle } from "./helpers.mjs";

function setup(opts = {}) {
  const clock = new FakeClock();
  clock.rand = 0; // no jitter: delays are exactly 1 s, 2 s, 4 s…
  const transport = opts.transport || fakeTransport();
  const events = [];
  const states = [];
  const lastIds = [];
  const ctl = new ConnectionController({
    transport,
    clock,
    onEvent: (e) => events.push(e),
    onState: (s) => states.push(s),
    onLastId: (id) => lastIds.push(id),
    ...opts.ctl,
  });
  return { ctl, clock, transport, events, states, lastIds, durable: () => events.filter((e) => e.id != null).map((e) => e.id) };
}

/**
 * The current stream fails while the server answers polls (a network that
 * blocks streams): the poll that checks the server after an early failure
 * gets a 200, so the failure counts toward the poll fallback.
 */
async function failWhileServerAnswers(transport, events = []) {
  const before = transport.polls.length;
  transport.last.fail();
  await settle();
  assert.equal(transport.polls.length, before + 1, "an early stream failure is followed by a poll that checks the server");
  const check = transport.polls.at(-1);
  assert.equal(check.wait, 0);
  check.answer(200, events);
  await settle();
}

/** The current stream fails and so does the poll that checks the server (it is down). */
async function failWhileServerDown(transport) {
  const before = transport.polls.length;
  transport.last.fail();
  await settle();
  for (const p of transport.polls.slice(before)) if (!p.answered) p.reject(new TypeError("Failed to fetch"));
  await settle();
}

test("connect → connecting, ready → connected; a fresh stream takes the head as baseline", async () => {
  const { ctl, transport, states, events } = setup();
  assert.equal(ctl.state, "disconnected");
  ctl.connect();
  assert.equal(ctl.state, "connecting");
  assert.equal(transport.streams.length, 1);
  assert.equal(transport.last.lastId, null, "no resume point on the very first stream");
  transport.last.ready(41);
  assert.equal(ctl.state, "connected");
  assert.equal(ctl.lastEventId, 41);
  assert.deepEqual(states, ["connecting", "connected"]);
  assert.equal(events[0].type, "ready");
  ctl.connect();
  assert.equal(transport.streams.length, 1, "connect() while active is a no-op");
});

test("durable events are handed on once, in order; ephemeral ones pass without moving lastId", async () => {
  const { ctl, transport, events, durable } = setup({ ctl: { lastEventId: 5 } });
  ctl.connect();
  const s = transport.last;
  assert.equal(s.lastId, 5, "resumes from the given id");
  s.ready(8);
  s.send(6);
  s.send(7);
  s.send(7); // duplicate
  s.send(5); // old
  s.sink.event({ type: "typing", data: { state: "start" }, id: null });
  s.send(8);
  assert.deepEqual(durable(), [6, 7, 8]);
  assert.equal(ctl.lastEventId, 8);
  const typing = events.find((e) => e.type === "typing");
  assert.ok(typing && typing.id == null);
});

test("a dropped stream reconnects with backoff 1 s, 2 s, 4 s… resuming from the last id", async () => {
  const { ctl, clock, transport, states } = setup({ ctl: { badStreamsBeforePolling: 100 } });
  ctl.connect();
  transport.last.ready(10);
  transport.last.send(11);
  transport.last.fail();
  assert.equal(ctl.state, "reconnecting");
  assert.equal(transport.streams[0].closed, true, "the failed stream is closed (no browser auto-retry)");
  await clock.advance(999);
  assert.equal(transport.streams.length, 1);
  await clock.advance(1);
  assert.equal(transport.streams.length, 2);
  assert.equal(transport.last.lastId, 11, "resume point is the last delivered id");
  transport.last.fail();
  await clock.advance(1999);
  assert.equal(transport.streams.length, 2);
  await clock.advance(1);
  assert.equal(transport.streams.length, 3);
  transport.last.fail();
  await clock.advance(4000);
  assert.equal(transport.streams.length, 4);
  transport.last.ready(11);
  assert.equal(ctl.state, "connected");
  assert.equal(ctl.failures, 0, "ready resets the failure count");
  assert.deepEqual(states, ["connecting", "connected", "reconnecting", "connected"]);
});

test("after maxFailures the state is disconnected until reconnect()", async () => {
  const { ctl, clock, transport } = setup({ ctl: { maxFailures: 3, badStreamsBeforePolling: 100 } });
  ctl.connect();
  transport.last.fail();
  await clock.advance(1000);
  transport.last.fail();
  await clock.advance(2000);
  transport.last.fail();
  assert.equal(ctl.state, "disconnected");
  assert.equal(ctl.gaveUp, true);
  await clock.advance(600000);
  assert.equal(transport.streams.length, 3, "no more attempts once given up");
  ctl.reconnect();
  assert.equal(ctl.state, "connecting");
  assert.equal(transport.streams.length, 4);
  transport.last.ready(0);
  assert.equal(ctl.state, "connected");
});

test("reconnect() while connected drops the stream and resumes at once", async () => {
  const { ctl, transport, states } = setup();
  ctl.connect();
  transport.last.ready(3);
  ctl.reconnect();
  assert.equal(transport.streams[0].closed, true);
  assert.equal(transport.streams.length, 2);
  assert.equal(transport.last.lastId, 3);
  assert.equal(ctl.state, "reconnecting");
  transport.last.ready(3);
  assert.deepEqual(states, ["connecting", "connected", "reconnecting", "connected"]);
});

test("close() stops everything: disconnected, no timers left, stale callbacks ignored", async () => {
  const { ctl, clock, transport, events } = setup();
  ctl.connect();
  const s = transport.last;
  s.ready(1);
  ctl.close();
  assert.equal(ctl.state, "disconnected");
  assert.equal(s.closed, true);
  s.send(2);
  s.fail();
  assert.equal(events.filter((e) => e.id != null).length, 0, "events from a closed stream are ignored");
  await clock.advance(120000);
  assert.equal(transport.streams.length, 1);
  assert.equal(clock.pending, 0);
});

test("a stream without ready within readyTimeoutMs counts as a failure", async () => {
  const { ctl, clock, transport } = setup({ ctl: { readyTimeoutMs: 5000, badStreamsBeforePolling: 100 } });
  ctl.connect();
  await clock.advance(4999);
  assert.equal(ctl.state, "connecting");
  await clock.advance(1);
  assert.equal(ctl.state, "reconnecting");
  assert.equal(transport.streams[0].closed, true);
});

test("streams that keep failing fast while polls get through fall back to long-polling, which delivers events", async () => {
  const { ctl, clock, transport, durable, states } = setup({ ctl: { lastEventId: 20, badStreamsBeforePolling: 3 } });
  ctl.connect();
  transport.last.ready(20);
  await clock.advance(1000); // short-lived: closes 1 s after ready
  await failWhileServerAnswers(transport);
  assert.equal(ctl.badStreams, 1);
  await clock.advance(1000);
  await failWhileServerAnswers(transport); // never got ready
  await clock.advance(2000);
  assert.equal(ctl.state, "reconnecting");
  await failWhileServerAnswers(transport);
  assert.equal(ctl.state, "polling", "switches as soon as the third check answers, without waiting for the retry");
  assert.equal(ctl.mode, "polling");
  const poll = transport.polls.at(-1);
  assert.equal(transport.polls.length, 4, "three checks, then the long-poll");
  assert.equal(poll.after, 20);
  assert.equal(poll.wait, 25);
  poll.answer(200, [
    { id: 21, type: "message.created", data: {} },
    { id: 22, type: "receipt", data: {} },
  ]);
  await settle();
  assert.deepEqual(durable(), [21, 22]);
  assert.equal(transport.polls.length, 5, "polls again at once after events");
  assert.equal(transport.polls[4].after, 22);
  assert.ok(states.includes("polling"));
  assert.equal(transport.streams.length, 3, "no stream attempt once polling");
});

test("a server that is down is not a network that blocks streams: no polling, streaming again within the backoff of its return", async () => {
  const { ctl, clock, transport, states, durable } = setup({ ctl: { lastEventId: 7, badStreamsBeforePolling: 3 } });
  ctl.connect();
  transport.last.ready(7);
  await clock.advance(60000);
  // The server goes away: the long-lived stream drops, then every attempt
  // and every check fails.
  transport.last.fail();
  await settle();
  assert.equal(transport.polls.length, 0, "a long-lived stream's end says nothing about the network");
  const delays = [];
  let at = clock.now();
  for (let i = 0; i < 5; i++) {
    await clock.advance(clock.nextDelay());
    delays.push(clock.now() - at);
    at = clock.now();
    assert.equal(transport.last.closed, false, "a new stream attempt");
    await failWhileServerDown(transport);
  }
  assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000], "plain backoff");
  assert.equal(ctl.mode, "stream");
  assert.equal(ctl.badStreams, 0, "failures while the server answers nothing do not count");
  assert.ok(!states.includes("polling"), `states: ${states}`);
  // The server is back: the next retry (30 s) opens a stream and that is it.
  const wait = clock.nextDelay();
  assert.equal(wait, 30000);
  await clock.advance(wait);
  assert.equal(transport.last.lastId, 7);
  transport.last.ready(8);
  transport.last.send(8);
  assert.equal(ctl.state, "connected");
  assert.equal(ctl.mode, "stream");
  assert.deepEqual(durable(), [8]);
});

test("an error answer (502 from a proxy in front of a down server) does not count either", async () => {
  const { ctl, clock, transport } = setup({ ctl: { lastEventId: 1, badStreamsBeforePolling: 1 } });
  ctl.connect();
  transport.last.fail();
  await settle();
  transport.polls.at(-1).answer(502);
  await settle();
  assert.equal(ctl.mode, "stream");
  assert.equal(ctl.state, "reconnecting");
  await clock.advance(1000);
  assert.equal(transport.streams.length, 2, "retried as a stream");
});

test("a check answered after reconnect() does not count", async () => {
  const { ctl, transport } = setup({ ctl: { lastEventId: 1, badStreamsBeforePolling: 1 } });
  ctl.connect();
  transport.last.fail();
  await settle();
  const check = transport.polls.at(-1);
  ctl.reconnect();
  check.answer(200, [{ id: 2, type: "message.created", data: {} }]);
  await settle();
  assert.equal(ctl.badStreams, 0);
  assert.equal(ctl.mode, "stream");
  assert.equal(ctl.lastEventId, 1, "its events are not taken either: the new stream brings them");
});

test("a check answered after a stream got ready does not count", async () => {
  const { ctl, clock, transport } = setup({ ctl: { lastEventId: 1, badStreamsBeforePolling: 1 } });
  ctl.connect();
  transport.last.fail();
  await settle();
  const check = transport.polls.at(-1);
  await clock.advance(1000);
  transport.last.ready(1); // the retry worked before the check came back
  check.answer(200, []);
  await settle();
  assert.equal(ctl.badStreams, 0);
  assert.equal(ctl.mode, "stream");
  assert.equal(ctl.state, "connected");
});

test("the check poll delivers what it returns; the next stream resumes after it", async () => {
  const { ctl, clock, transport, durable } = setup({ ctl: { lastEventId: 3, badStreamsBeforePolling: 5 } });
  ctl.connect();
  await failWhileServerAnswers(transport, [
    { id: 4, type: "message.created", data: {} },
    { id: 5, type: "message.created", data: {} },
  ]);
  assert.deepEqual(durable(), [4, 5]);
  await clock.advance(1000);
  assert.equal(transport.last.lastId, 5);
  transport.last.ready(5);
  transport.last.send(5);
  transport.last.send(6);
  assert.deepEqual(durable(), [4, 5, 6]);
});

test("polling: a poll that succeeds after failed ones tries a stream at once", async () => {
  const { ctl, clock, transport, states, durable } = setup({ ctl: { lastEventId: 5, badStreamsBeforePolling: 1, streamRetryMs: 60000 } });
  ctl.connect();
  await failWhileServerAnswers(transport);
  assert.equal(ctl.mode, "polling");
  const streams = transport.streams.length;
  // The server restarts: polls fail for a while.
  transport.polls.at(-1).reject(new TypeError("Failed to fetch"));
  await settle();
  assert.equal(ctl.state, "reconnecting");
  await clock.advance(1000);
  transport.polls.at(-1).reject(new TypeError("Failed to fetch"));
  await settle();
  await clock.advance(2000);
  // Back: this poll gets through, with what was written meanwhile.
  const polls = transport.polls.length;
  transport.polls.at(-1).answer(200, [{ id: 6, type: "message.created", data: {} }]);
  await settle();
  assert.deepEqual(durable(), [6]);
  assert.equal(transport.streams.length, streams + 1, "a stream at once, not after streamRetryMs");
  assert.equal(transport.last.lastId, 6);
  assert.equal(transport.polls.length, polls, "no long-poll beside the trial stream");
  transport.last.ready(6);
  assert.equal(ctl.state, "connected");
  assert.equal(ctl.mode, "stream");
  assert.ok(!states.slice(states.lastIndexOf("reconnecting")).includes("polling"), `no polling between the outage and the stream: ${states}`);
});

test("polling: a poll that succeeds after failures in a network that blocks streams goes back to polling", async () => {
  const { ctl, clock, transport } = setup({ ctl: { lastEventId: 5, badStreamsBeforePolling: 1, streamRetryMs: 60000 } });
  ctl.connect();
  await failWhileServerAnswers(transport);
  transport.polls.at(-1).answer(503);
  await settle();
  await clock.advance(1000);
  transport.polls.at(-1).answer(200, []);
  await settle();
  assert.equal(transport.streams.length, 2, "the trial");
  transport.last.fail();
  await settle();
  assert.equal(ctl.state, "polling");
  assert.equal(ctl.mode, "polling");
  const streams = transport.streams.length;
  // Healthy polls from now on: no more trials until streamRetryMs.
  for (let i = 0; i < 5; i++) {
    await clock.advance(1000);
    const p = transport.polls.at(-1);
    if (!p.answered) p.answer(200, []);
    await settle();
  }
  assert.equal(transport.streams.length, streams);
});

test("polling periodically tries streaming again and returns to it on ready", async () => {
  const { ctl, clock, transport } = setup({ ctl: { lastEventId: 5, badStreamsBeforePolling: 1, streamRetryMs: 60000 } });
  ctl.connect();
  await failWhileServerAnswers(transport);
  assert.equal(ctl.state, "polling");
  const streamsBefore = transport.streams.length;
  // Keep the long-poll answering empty after its wait.
  await clock.advance(59000);
  assert.equal(transport.streams.length, streamsBefore);
  await clock.advance(1000);
  assert.equal(transport.streams.length, streamsBefore + 1, "a trial stream after streamRetryMs");
  assert.equal(transport.last.lastId, 5);
  assert.ok(transport.polls.at(-1).signal.aborted, "the long-poll in flight is aborted for the trial");
  transport.last.ready(5);
  assert.equal(ctl.state, "connected");
  assert.equal(ctl.mode, "stream");
});

test("a failed trial stream goes back to polling (not to backoff)", async () => {
  const { ctl, clock, transport } = setup({ ctl: { lastEventId: 5, badStreamsBeforePolling: 1, streamRetryMs: 10000 } });
  ctl.connect();
  await failWhileServerAnswers(transport);
  await clock.advance(10000);
  const polls = transport.polls.length;
  transport.last.fail();
  assert.equal(ctl.state, "polling");
  await settle();
  assert.equal(transport.polls.length, polls + 1);
  await clock.advance(10000);
  assert.equal(transport.streams.length, 3, "and tries again later");
});

test("poll failures back off and give up after maxFailures; 401 on poll expires the session", async () => {
  const { ctl, clock, transport, events } = setup({ ctl: { lastEventId: 1, badStreamsBeforePolling: 1, maxFailures: 2, streamRetryMs: 600000 } });
  ctl.connect();
  await failWhileServerAnswers(transport);
  transport.polls[1].answer(503);
  await settle();
  assert.equal(ctl.state, "reconnecting");
  await clock.advance(1000);
  assert.equal(transport.polls.length, 3);
  transport.polls[2].answer(200, []);
  await settle();
  assert.equal(ctl.failures, 0, "a good poll clears the failure count");
  // ...and, after failures, tries a stream; here streams still fail.
  transport.last.fail();
  await settle();
  assert.equal(ctl.state, "polling");
  transport.polls.at(-1).answer(200, []);
  await settle();
  await clock.advance(1000); // empty answer came back at once: minimum poll interval
  transport.polls.at(-1).answer(401);
  await settle();
  assert.equal(ctl.state, "disconnected");
  assert.equal(ctl.expired, true);
  assert.equal(events.at(-1).type, "session.expired");
});

test("a polling client without a resume point starts from the head", async () => {
  const { ctl, transport, durable } = setup({ ctl: { badStreamsBeforePolling: 1 } });
  ctl.connect();
  transport.last.fail();
  await settle();
  const p = transport.polls[0];
  assert.equal(p.after, 0);
  assert.equal(p.wait, 0);
  p.answer(200, [{ id: 1, type: "message.created", data: {} }], 30);
  await settle();
  assert.equal(transport.polls[1].after, 30, "a page with events may not be the last");
  assert.equal(transport.polls[1].wait, 0);
  transport.polls[1].answer(200, [], 30);
  await settle();
  assert.deepEqual(durable(), [], "history before the head is not replayed");
  assert.equal(ctl.lastEventId, 30);
  assert.equal(ctl.mode, "polling", "the head poll was the check: the server answers");
  assert.equal(transport.polls[2].after, 30);
});

test("reset: handlers get it, lastEventId becomes its last_id, events after it flow", async () => {
  const { ctl, transport, events, durable } = setup({ ctl: { lastEventId: 3 } });
  ctl.connect();
  const s = transport.last;
  s.ready(100);
  s.sink.event({ type: "reset", data: { reason: "history_expired", last_id: 100 }, id: null });
  assert.equal(ctl.lastEventId, 100);
  const reset = events.find((e) => e.type === "reset");
  assert.equal(reset.data.last_id, 100);
  s.send(101);
  assert.deepEqual(durable(), [101]);
});

test("session.expired: emitted, state disconnected, no reconnect", async () => {
  const { ctl, clock, transport, events } = setup();
  ctl.connect();
  transport.last.ready(1);
  transport.last.sink.event({ type: "session.expired", data: {}, id: null });
  assert.equal(ctl.state, "disconnected");
  assert.equal(ctl.expired, true);
  assert.equal(events.at(-1).type, "session.expired");
  transport.last.fail();
  await clock.advance(300000);
  assert.equal(transport.streams.length, 1);
});

test("a stream refused before opening is probed; a 401 means the session expired", async () => {
  const t = fakeTransport();
  t.probeStatus = 401;
  const { ctl, events } = setup({ transport: t });
  ctl.connect();
  t.last.fail();
  await settle();
  assert.equal(t.probes.length, 1);
  assert.equal(ctl.state, "disconnected");
  assert.equal(ctl.expired, true);
  assert.equal(events.at(-1).type, "session.expired");
  assert.equal(events.at(-1).data.reason, "unauthorized");
});

test("a gap in the stream (unseen event type) is filled by a poll of the missing range", async () => {
  const { ctl, clock, transport, durable } = setup({ ctl: { lastEventId: 10 } });
  ctl.connect();
  const s = transport.last;
  s.ready(10);
  s.send(12); // 11 was an app.* type this EventSource had no listener for
  assert.deepEqual(durable(), []);
  await settle();
  assert.equal(transport.polls.length, 1);
  assert.equal(transport.polls[0].after, 10);
  assert.equal(transport.polls[0].wait, 0);
  transport.polls[0].answer(200, [
    { id: 11, type: "app.thing", data: { x: 1 } },
    { id: 12, type: "message.created", data: {} },
  ]);
  await settle();
  assert.deepEqual(durable(), [11, 12]);
  assert.equal(ctl.lastEventId, 12);
  await clock.advance(10000);
  assert.deepEqual(durable(), [11, 12], "nothing delivered twice");
});

test("an unfillable gap is given up after gapTimeoutMs, keeping order", async () => {
  const { ctl, clock, transport, durable } = setup({ ctl: { lastEventId: 10, gapTimeoutMs: 3000 } });
  ctl.connect();
  transport.last.ready(10);
  transport.last.send(13);
  transport.last.send(12);
  await settle();
  transport.polls[0].answer(500);
  await clock.advance(2999);
  assert.deepEqual(durable(), []);
  await clock.advance(1);
  assert.deepEqual(durable(), [12, 13]);
  transport.last.send(14);
  assert.deepEqual(durable(), [12, 13, 14]);
});

test("ready from another user's log moves the baseline to its head", async () => {
  const { ctl, transport, durable } = setup({ ctl: { lastEventId: 50, userId: "alice" } });
  ctl.connect();
  const s = transport.last;
  assert.equal(s.lastId, 50);
  s.ready(7, "bob");
  assert.equal(ctl.lastEventId, 7);
  s.send(8);
  assert.deepEqual(durable(), [8]);
  assert.equal(ctl.userId, "bob");
});

test("a healthy long-lived stream resets the short-lived count", async () => {
  const { ctl, clock, transport } = setup({ ctl: { badStreamsBeforePolling: 2, shortLivedMs: 5000 } });
  ctl.connect();
  transport.last.fail(); // bad 1
  await clock.advance(1000);
  transport.last.ready(0);
  await clock.advance(6000); // stays up: healthy
  assert.equal(ctl.badStreams, 0);
  transport.last.fail(); // lived long: not bad
  assert.equal(ctl.state, "reconnecting");
  assert.equal(ctl.badStreams, 0);
});

test("no EventSource at all: straight to polling", async () => {
  const t = fakeTransport();
  t.openStream = () => {
    throw new Error("no EventSource");
  };
  const { ctl } = setup({ transport: t, ctl: { lastEventId: 2 } });
  ctl.connect();
  assert.equal(ctl.state, "polling");
  assert.equal(t.polls.length, 1);
  ctl.close();
});

test("a stream failing before ready, with no resume point, takes the head by poll so the next stream resumes", async () => {
  const { ctl, clock, transport, durable } = setup({ ctl: { badStreamsBeforePolling: 100 } });
  ctl.connect();
  transport.last.fail();
  await settle();
  assert.equal(transport.polls.length, 1);
  assert.equal(transport.polls[0].after, 0);
  assert.equal(transport.polls[0].wait, 0);
  // Any page but an empty one may have more after it (the server cuts pages at
  // 500 events or by size): keep paging to the head.
  const page = Array.from({ length: 500 }, (_, i) => ({ id: i + 1, type: "message.created", data: {} }));
  transport.polls[0].answer(200, page, 500);
  await settle();
  assert.equal(transport.polls[1].after, 500);
  transport.polls[1].answer(200, [{ id: 501, type: "receipt", data: {} }], 501);
  await settle();
  assert.equal(transport.polls[2].after, 501, "a short page (cut by size) is not the end");
  transport.polls[2].answer(200, [], 501);
  await settle();
  assert.equal(ctl.lastEventId, 501);
  assert.deepEqual(durable(), [], "history is not replayed to handlers");
  await clock.advance(1000);
  assert.equal(transport.last.lastId, 501, "the next stream resumes from the head taken by poll");
  transport.last.ready(503);
  transport.last.send(502);
  transport.last.send(503);
  assert.deepEqual(durable(), [502, 503], "events between the baseline and the stream are not lost");
});

test("a poll answering reset (position outside the log) emits reset and continues from its last_id", async () => {
  const { ctl, transport, events } = setup({ ctl: { lastEventId: 900, badStreamsBeforePolling: 1 } });
  ctl.connect();
  await failWhileServerAnswers(transport);
  const poll = transport.polls[1];
  assert.equal(poll.after, 900);
  poll.resolve({ status: 200, events: [], last_id: 40, reset: { reason: "history_expired", last_id: 40 } });
  await settle();
  assert.equal(ctl.lastEventId, 40);
  const reset = events.find((e) => e.type === "reset");
  assert.deepEqual(reset.data, { reason: "history_expired", last_id: 40 });
  assert.equal(transport.polls[2].after, 40);
  ctl.close();
});

test("checkStream: a quiet but healthy stream is left alone; one that missed events is replaced", async () => {
  const { ctl, clock, transport, durable } = setup({ ctl: { lastEventId: 10 } });
  ctl.connect();
  transport.last.ready(10);
  let check = ctl.checkStream();
  assert.equal(transport.polls[0].after, 10);
  assert.equal(transport.polls[0].wait, 0);
  transport.polls[0].answer(200, []);
  let r = await check;
  assert.deepEqual([r.ok, r.stale], [true, false]);
  assert.equal(ctl.state, "connected");
  assert.equal(transport.streams.length, 1);

  check = ctl.checkStream();
  transport.polls[1].answer(200, [
    { id: 11, type: "message.created", data: {} },
    { id: 12, type: "message.created", data: {} },
  ]);
  r = await check;
  assert.equal(r.stale, true);
  assert.deepEqual(durable(), [11, 12], "the events the stream missed are delivered");
  assert.equal(transport.streams[0].closed, true);
  assert.equal(ctl.state, "reconnecting");
  await clock.advance(1000);
  assert.equal(transport.last.lastId, 12, "the new stream resumes after them");
  transport.last.ready(12);
  transport.last.send(12);
  assert.deepEqual(durable(), [11, 12]);
});

test("checkStream: events only of types the stream has no listener for are delivered and listened for, the stream kept", async () => {
  const t = fakeTransport();
  const heard = new Set(["message.created"]);
  t.hears = (type) => heard.has(type);
  t.listen = (type) => heard.add(type);
  const { ctl, transport, durable } = setup({ transport: t, ctl: { lastEventId: 10 } });
  ctl.connect();
  transport.last.ready(10);
  const check = ctl.checkStream();
  transport.polls[0].answer(200, [{ id: 11, type: "app.invoice", data: {} }]);
  const r = await check;
  assert.deepEqual([r.ok, r.stale], [true, false]);
  assert.deepEqual(durable(), [11], "delivered");
  assert.ok(heard.has("app.invoice"), "listened for from now on");
  assert.equal(transport.streams.length, 1);
  assert.equal(transport.streams[0].closed, false, "the stream is alive: kept");
  assert.equal(ctl.state, "connected");
  transport.last.send(12, "app.invoice");
  assert.deepEqual(durable(), [11, 12]);
  ctl.close();
});

test("checkStream does nothing unless connected by stream", async () => {
  const { ctl, transport } = setup({ ctl: { lastEventId: 1 } });
  assert.equal((await ctl.checkStream()).ok, false);
  ctl.connect();
  assert.equal((await ctl.checkStream()).ok, false, "not before ready");
  assert.equal(transport.polls.length, 0);
});

test("by default a server down for an hour is retried every 30 s and the stream comes back by itself", async () => {
  const { ctl, clock, transport } = setup({ ctl: { lastEventId: 5 } });
  ctl.connect();
  transport.last.ready(5);
  let attempts = 0;
  for (let elapsed = 0; elapsed < 3600000; elapsed += 30000) {
    await failWhileServerDown(transport);
    attempts++;
    await clock.advance(30000);
    assert.notEqual(ctl.state, "disconnected", `gave up after ${attempts} failures`);
  }
  assert.ok(transport.streams.length >= 100, `only ${transport.streams.length} attempts in an hour`);
  transport.last.ready(5);
  assert.equal(ctl.state, "connected");
});
