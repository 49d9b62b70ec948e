package browsertest

import (
	"slices"
	"testing"
	"time"
)

// TestServerKilledMidConversation: the server process is killed (SIGKILL,
// no graceful goodbye) in the middle of a conversation and started again on
// the same port and data dir. Both apps notice, reconnect by themselves, get
// what was written meanwhile, and show every message exactly once; the
// SDK's handlers got each message.created once.
func TestServerKilledMidConversation(t *testing.T) {
	rootBrowser(t)
	s := startProc(t)
	client := register(t, s.URL, "client", "client")
	pro := register(t, s.URL, "pro", "professional")
	first := "Before anything else: hello."
	convID := createConversation(t, s.URL, client, pro, "Restart", first)

	cl := inConversation(t, "client", s.URL, client.Username, convID)
	cl.countEvents()
	pr := inConversation(t, "professional", s.URL, pro.Username, convID)
	pr.countEvents()

	c1, p1 := "Client says one.", "Professional answers one."
	cl.send(c1)
	pr.waitMessage(c1, "received")
	pr.send(p1)
	cl.waitMessage(p1, "received")
	cl.waitMessage(c1, "read")

	s.kill()
	for _, p := range []*tab{cl, pr} {
		p.waitFor("the app to notice the server is gone", jsConnState+` !== "connected"`, waitLong, jsConnState)
	}
	cl.screenshot("12-connection-lost")

	s.start()
	// Written as soon as the server is back, probably before the apps have
	// reconnected: it reaches them by replay, not live.
	p2 := "Written right after the restart."
	postMessage(t, s.URL, pro, convID, p2)
	for _, p := range []*tab{cl, pr} {
		p.waitReconnected()
		p.waitMessage(p2, "")
	}
	c2, p3 := "Client after the restart.", "Professional after the restart."
	cl.send(c2)
	pr.waitMessage(c2, "received")
	pr.send(p3)
	cl.waitMessage(p3, "received")
	cl.screenshot("13-reconnected")

	want := []string{first, c1, p1, p2, c2, p3}
	for _, p := range []*tab{cl, pr} {
		p.assertMessagesOnce(want)
		p.assertEventsOnce(5) // all but the first, which came before countEvents
	}
	assertHistoryOnce(t, s.URL, client, convID, want)

	// A graceful restart (SIGTERM: the server tells the streams to go)
	// works the same way.
	s.stop()
	for _, p := range []*tab{cl, pr} {
		p.waitFor("the app to notice the shutdown", jsConnState+` !== "connected"`, waitLong, jsConnState)
	}
	s.start()
	p4 := "After a graceful restart."
	postMessage(t, s.URL, pro, convID, p4)
	want = append(want, p4)
	for _, p := range []*tab{cl, pr} {
		p.waitReconnected()
		p.waitMessage(p4, "")
		p.assertMessagesOnce(want)
		p.assertEventsOnce(6)
	}
}

// TestSendsWhileServerDown: messages written while the server is down show
// as pending, are delivered once it is back (retried with the same
// client_id), in the order they were written, and then exist exactly once:
// on the sender's page, on the peer's page and in the history over REST.
func TestSendsWhileServerDown(t *testing.T) {
	rootBrowser(t)
	s := startProc(t)
	client := register(t, s.URL, "client", "client")
	pro := register(t, s.URL, "pro", "professional")
	first := "Hello before the outage."
	convID := createConversation(t, s.URL, client, pro, "Outage", first)

	cl := inConversation(t, "client", s.URL, client.Username, convID)
	cl.countEvents()
	pr := inConversation(t, "professional", s.URL, pro.Username, convID)
	pr.countEvents()

	s.kill()
	cl.waitFor("the app to notice the server is gone", jsConnState+` !== "connected"`, waitLong, jsConnState)
	down := []string{"Written while the server is down (1).", "Written while the server is down (2).", "Written while the server is down (3)."}
	for _, b := range down {
		cl.send(b)
	}
	for _, b := range down {
		cond := `(m => m && !m.dataset.seq && m.dataset.status === "pending" && m.querySelector('[data-testid="message-status"] svg[data-icon="clock"]'))(` + jsMsg(b) + `)`
		cl.waitFor("pending "+q(b), cond, waitLong, jsMessages)
	}
	var outbox int
	cl.eval(`window.parleyApp.parley.outbox.filter(i => i.status === "pending").length`, &outbox)
	if outbox != len(down) {
		t.Fatalf("outbox holds %d pending items, want %d", outbox, len(down))
	}
	cl.screenshot("14-pending-while-down")

	s.start()
	for _, b := range down {
		cl.waitMessage(b, "")
		pr.waitMessage(b, "received")
	}
	for _, p := range []*tab{cl, pr} {
		p.waitReconnected()
	}
	cl.waitFor("the outbox to empty", `window.parleyApp.parley.outbox.length === 0`, waitLong, `JSON.stringify(window.parleyApp.parley.outbox)`)
	for _, b := range down {
		cl.waitMessage(b, "read") // the professional has the chat open
	}
	cl.screenshot("15-sent-after-restart")

	want := append([]string{first}, down...)
	for _, p := range []*tab{cl, pr} {
		p.assertMessagesOnce(want)
		p.assertEventsOnce(len(down))
	}
	assertHistoryOnce(t, s.URL, pro, convID, want)
}

// waitReconnected waits until the app is live again: streaming, or on the
// long-poll fallback the SDK uses after several failed streams (it tries
// streaming again later).
func (tb *tab) waitReconnected() {
	tb.t.Helper()
	tb.waitFor("the app to reconnect", `["connected", "polling"].includes(`+jsConnState+`)`, waitLong, jsConnState)
	var state string
	tb.eval(jsConnState, &state)
	tb.t.Logf("%s: reconnected (%s)", tb.name, state)
}

// countEvents makes the page count, per event id and per message id, the
// message.created events the SDK hands to its handlers from now on.
func (tb *tab) countEvents() {
	tb.t.Helper()
	tb.eval(`(() => {
		if (!window.__seen) {
			window.__seen = { byEvent: {}, byMessage: {} };
			window.parleyApp.parley.on("message.created", (d, ev) => {
				const s = window.__seen;
				s.byEvent[ev.id] = (s.byEvent[ev.id] || 0) + 1;
				s.byMessage[d.id] = (s.byMessage[d.id] || 0) + 1;
			});
		}
		return true;
	})()`, nil)
}

// assertEventsOnce checks that the SDK handed over n message.created events
// since countEvents, each event id and each message once.
func (tb *tab) assertEventsOnce(n int) {
	tb.t.Helper()
	var seen struct {
		ByEvent   map[string]int `json:"byEvent"`
		ByMessage map[string]int `json:"byMessage"`
	}
	tb.eval(`window.__seen`, &seen)
	bad := len(seen.ByEvent) != n || len(seen.ByMessage) != n
	for _, c := range seen.ByEvent {
		bad = bad || c != 1
	}
	for _, c := range seen.ByMessage {
		bad = bad || c != 1
	}
	if bad {
		tb.t.Fatalf("%s: message.created handed to the app: by event id %v, by message id %v; want %d, each once", tb.name, seen.ByEvent, seen.ByMessage, n)
	}
}

func assertHistoryOnce(t *testing.T, base string, as account, convID string, want []string) {
	t.Helper()
	h := history(t, base, as, convID)
	var bodies []string
	for i, m := range h {
		bodies = append(bodies, m.Body)
		if m.Seq != i+1 {
			t.Fatalf("history seqs: %+v", h)
		}
	}
	if !slices.Equal(bodies, want) {
		t.Fatalf("history over REST: %q\nwant %q", bodies, want)
	}
}

// recordAll makes the page record every event the SDK hands to its "*"
// handlers from now on: type, id, and the message id of message events.
func (tb *tab) recordAll() {
	tb.t.Helper()
	tb.eval(`(() => {
		if (!window.__all) {
			window.__all = [];
			window.parleyApp.parley.on("*", (d, ev) => {
				window.__all.push({ type: ev.type, id: ev.id, msg: ev.type.startsWith("message.") && d ? d.id : "" });
			});
		}
		return true;
	})()`, nil)
}

type recorded struct {
	Type string `json:"type"`
	ID   *int64 `json:"id"`
	Msg  string `json:"msg"`
}

// assertRecordedOnce checks what recordAll saw: durable ids following on
// one by one from the first, none twice, and a message.created for each of
// msgIDs, once.
func (tb *tab) assertRecordedOnce(msgIDs []string) {
	tb.t.Helper()
	var all []recorded
	tb.eval(`window.__all`, &all)
	var last int64
	created := map[string]int{}
	for _, e := range all {
		if e.ID == nil {
			continue
		}
		if last != 0 && *e.ID != last+1 {
			tb.t.Errorf("%s: event id %d (%s) after %d", tb.name, *e.ID, e.Type, last)
		}
		last = *e.ID
		if e.Type == "message.created" {
			created[e.Msg]++
		}
	}
	for _, id := range msgIDs {
		if created[id] != 1 {
			tb.t.Errorf("%s: message.created of %s handed over %d times, want once", tb.name, id, created[id])
		}
	}
	if len(created) != len(msgIDs) {
		tb.t.Errorf("%s: message.created for %d messages, want %d: %v", tb.name, len(created), len(msgIDs), created)
	}
}

const (
	jsMode     = `window.parleyApp.parley._ctl && window.parleyApp.parley._ctl.mode`
	jsFailures = `window.parleyApp.parley._ctl ? window.parleyApp.parley._ctl.failures : -1`
	jsStreamOn = jsConnState + ` === "connected" && ` + jsMode + ` === "stream"`
)

// TestServerRestartBackToStreaming: the server is killed (SIGKILL) with the
// page open, stays down for about 10 s, and starts again on the same
// address and data dir. A server that is down is not a network that blocks
// streams: the SDK must not settle for long-polling, and is streaming again
// within the reconnect backoff delay it was waiting out when the server came
// back. Messages written before the outage, during it (from the page: its
// outbox holds them), right after the restart (before the page is back: by
// replay) and after (live) reach the page's "*" handler once each, with the
// event ids following on.
func TestServerRestartBackToStreaming(t *testing.T) {
	rootBrowser(t)
	s := startProc(t)
	client := register(t, s.URL, "client", "client")
	pro := register(t, s.URL, "pro", "professional")
	convID := createConversation(t, s.URL, client, pro, "Restart", "Hello.")

	cl := inConversation(t, "client", s.URL, client.Username, convID)
	cl.recordAll()
	var msgIDs []string
	before := postMessage(t, s.URL, pro, convID, "Before the outage.")
	msgIDs = append(msgIDs, before.ID)
	cl.waitMessage(before.Body, "received")

	s.kill()
	cl.waitFor("the app to notice the server is gone", jsConnState+` !== "connected"`, waitLong, jsConnState)
	during := "Written by the page while the server is down."
	cl.send(during)
	time.Sleep(10 * time.Second)
	var mode string
	cl.eval(jsMode, &mode)
	if mode != "stream" {
		t.Errorf("after 10 s of a dead server the SDK is in mode %q; a server that is down is not a network that blocks streams", mode)
	}

	s.start()
	back := time.Now()
	// The failures so far set the delay of the retry being waited for now:
	// at most baseMs * 2^(failures-1), capped (SDK defaults: 1 s, 30 s).
	var failures int
	cl.eval(jsFailures, &failures)
	pending := time.Duration(min(30000, 1000<<max(failures-1, 0))) * time.Millisecond
	right := postMessage(t, s.URL, pro, convID, "Written right after the restart.")
	msgIDs = append(msgIDs, right.ID)
	// 3 s for the stream to open and say ready on a busy 2-core machine.
	bound := pending + 3*time.Second
	cl.waitFor("the stream back", jsStreamOn, bound, `[`+jsConnState+`, `+jsMode+`, `+jsFailures+`]`)
	t.Logf("streaming again %v after the restart (%d failures: the pending retry was at most %v away)", time.Since(back).Round(time.Millisecond), failures, pending)

	after := postMessage(t, s.URL, pro, convID, "After the page is back.")
	msgIDs = append(msgIDs, after.ID)
	for _, b := range []string{during, right.Body, after.Body} {
		cl.waitMessage(b, "")
	}
	// The page's own message goes out when its outbox retries, before or
	// after the one written right after the restart: history has the order.
	var want []string
	for _, m := range history(t, s.URL, pro, convID) {
		want = append(want, m.Body)
		if m.Body == during {
			msgIDs = append(msgIDs, m.ID)
		}
	}
	if len(want) != 5 {
		t.Fatalf("history holds %q", want)
	}
	cl.assertMessagesOnce(want)
	cl.assertRecordedOnce(msgIDs)
}

// TestBlockedStreamsFallBackToPolling: a network that lets ordinary
// requests through but not the event stream (some proxies) is what the
// long-poll fallback is for: after three stream attempts that fail while
// polls get through, the SDK polls, events arrive by poll exactly once, and
// once streams get through again the Reconnect button brings the stream
// back at once.
func TestBlockedStreamsFallBackToPolling(t *testing.T) {
	rootBrowser(t)
	s := startProc(t)
	client := register(t, s.URL, "client", "client")
	pro := register(t, s.URL, "pro", "professional")
	first := "Before the streams are blocked."
	convID := createConversation(t, s.URL, client, pro, "Blocked streams", first)

	cl := inConversation(t, "client", s.URL, client.Username, convID)
	cl.countEvents()

	// The stream's path exactly (any query); polls are /api/events/poll.
	cl.blockURLs("*://*:*/api/events?*")
	// The Reconnect button is hidden while connected: drop the open
	// stream the way the button would.
	cl.eval(`window.parleyApp.parley.reconnect(), true`, nil)
	// Three failed streams, each followed by a poll that got through
	// (about 1 s + 2 s of backoff between them).
	cl.waitFor("the switch to long-polling", jsMode+` === "polling"`, waitLong, `[`+jsMode+`, `+jsConnState+`]`)
	p1 := "Delivered by long-poll."
	postMessage(t, s.URL, pro, convID, p1)
	cl.waitMessage(p1, "received")
	cl.waitFor("the polling state", jsConnState+` === "polling"`, waitLong, jsConnState)
	cl.screenshot("20-connected-polling")

	cl.blockURLs()
	cl.click("#reconnect-button")
	cl.waitFor("the stream back", jsStreamOn, waitLong, `[`+jsMode+`, `+jsConnState+`]`)
	p2 := "Delivered by the stream again."
	postMessage(t, s.URL, pro, convID, p2)
	cl.waitMessage(p2, "received")
	cl.assertMessagesOnce([]string{first, p1, p2})
	cl.assertEventsOnce(2)
}
