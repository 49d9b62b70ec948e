package browsertest

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/servertest"
)

const jsURL = `location.pathname + location.search`

// jsChatOf is true when the chat view shows that conversation with its
// messages loaded.
func jsChatOf(id string) string {
	return `(() => { const v = document.getElementById("chat-view"); const st = window.parleyApp.state.messages.get(` + q(id) + `);
		return !v.hidden && v.dataset.conversationId === ` + q(id) + ` && st && !st.loading })()`
}

// twoPros is a client with a conversation with each of two professionals
// (B the newer, so first in the list), signed in to the web app.
type twoPros struct {
	n            *servertest.Node
	cl           *tab
	pro2         account
	convA, convB string
}

func twoConversations(t *testing.T) twoPros {
	t.Helper()
	n := servertest.Start(t)
	client := register(t, n.URL, "client", "client")
	pro1 := register(t, n.URL, "pro", "professional")
	pro2 := register(t, n.URL, "pro", "professional")
	convA := createConversation(t, n.URL, client, pro1, "First", "Hello, first professional.")
	convB := createConversation(t, n.URL, client, pro2, "Second", "Hello, second professional.")
	cl := newUser(t, "client")
	cl.open(n.URL)
	cl.login(client.Username)
	return twoPros{n: n, cl: cl, pro2: pro2, convA: convA, convB: convB}
}

// TestConversationInURL: the open conversation is in the address (/?c=…), a
// reload opens it again, and back/forward move between what was open: two
// conversations, the directory, the list.
func TestConversationInURL(t *testing.T) {
	rootBrowser(t)
	t.Parallel()
	f := twoConversations(t)
	n, cl, convA, convB := f.n, f.cl, f.convA, f.convB
	if got := evalString(cl, jsURL); got != "/" {
		t.Fatalf("URL after login = %q, want /", got)
	}
	cl.openConversation(convA)
	cl.waitFor("the URL of A", jsURL+` === `+q("/?c="+convA), waitLong, jsURL)
	cl.openConversation(convB)
	cl.waitFor("the URL of B", jsURL+` === `+q("/?c="+convB), waitLong, jsURL)

	// Reload: B again, with its messages.
	cl.do("reload", chromedp.Reload())
	cl.waitFor("the app after reload", `document.getElementById("app").dataset.screen === "main"`, waitLong, `document.getElementById("app").dataset.screen`)
	cl.waitFor("B open after reload", jsChatOf(convB), waitLong, jsURL)
	cl.waitMessage("Hello, second professional.", "")

	// Back to A, forward to B.
	cl.eval(`history.back(), true`, nil)
	cl.waitFor("A after back", jsChatOf(convA)+` && `+jsURL+` === `+q("/?c="+convA), waitLong, jsURL)
	cl.waitMessage("Hello, first professional.", "")
	cl.eval(`history.forward(), true`, nil)
	cl.waitFor("B after forward", jsChatOf(convB)+` && `+jsURL+` === `+q("/?c="+convB), waitLong, jsURL)

	// The directory has an address too; back returns to B.
	cl.click("#new-conversation-button")
	cl.waitFor("the directory", `document.getElementById("app").dataset.pane === "directory" && `+jsURL+` === "/?view=directory"`, waitLong, jsURL)
	cl.eval(`history.back(), true`, nil)
	cl.waitFor("B after leaving the directory", jsChatOf(convB), waitLong, jsURL)

	// On a phone, the back arrow goes to the list (/), and back returns to B.
	cl.viewport(phoneW, phoneH)
	cl.click("#back-button")
	cl.waitFor("the list", `document.getElementById("app").dataset.pane === "list" && `+jsURL+` === "/"`, waitLong, jsURL)
	cl.eval(`history.back(), true`, nil)
	cl.waitFor("B after back on the phone", jsChatOf(convB)+` && document.getElementById("app").dataset.pane === "chat"`, waitLong, jsURL)

	// A conversation that is not (or no longer) yours: the list, and the URL says so.
	cl.navigate(n.URL + "/?c=nope")
	cl.waitFor("the list for an unknown conversation", `document.getElementById("app").dataset.screen === "main" && window.parleyApp.state.loaded && `+jsURL+` === "/"`, waitLong, jsURL)
}

// TestOfflineShell: a tab opened while the server is down shows the app from
// the service worker's cache: the conversation from the last snapshot, the
// offline banner, and the message written while offline waiting in the
// outbox (with the time it was written). When the server is back, it goes.
func TestOfflineShell(t *testing.T) {
	rootBrowser(t)
	t.Parallel()
	s := startProc(t)
	client := register(t, s.URL, "client", "client")
	pro := register(t, s.URL, "pro", "professional")
	first := "Before the outage."
	convID := createConversation(t, s.URL, client, pro, "Offline", first)

	profile := newUser(t, "client-profile") // stays on about:blank: the context outlives the tabs
	cl := profile.openTab("client")
	cl.open(s.URL)
	cl.login(client.Username)
	cl.openConversation(convID)
	// The service worker controls the page and has the whole shell.
	cl.waitFor("the service worker", `navigator.serviceWorker.controller !== null`, waitLong, `navigator.serviceWorker.controller`)
	cl.waitFor("the shell in the cache", `caches.open("parley-shell-v1").then(c => c.keys()).then(k => k.length >= 26)`, waitLong,
		`caches.open("parley-shell-v1").then(c => c.keys()).then(k => k.map(r => new URL(r.url).pathname))`)
	cl.waitFor("the session snapshot", `!!localStorage.getItem("parley:app:last-session")`, waitLong, "")

	s.kill()
	cl.waitFor("the offline banner", `!document.getElementById("offline-banner").hidden`, waitLong, `document.getElementById("offline-banner").dataset.kind`)
	offline := "Written while the server is down."
	cl.send(offline)
	cl.waitFor("the message pending", `(m => m && m.dataset.status === "pending" && m.querySelector('[data-testid="message-status"] svg[data-icon="clock"]'))(`+jsMsg(offline)+`)`, waitLong, jsMessages)
	var written string
	cl.eval(`(`+jsMsg(offline)+`).querySelector('[data-testid="message-time"]').getAttribute("datetime")`, &written)
	cl.screenshot("offline-pending-message")

	// A new tab, opened with the server down.
	tb := profile.openTab("offline-tab")
	tb.navigate(s.URL + "/?c=" + convID)
	tb.waitFor("the app from the cache", `document.getElementById("app")?.dataset.screen === "main"`, waitLong,
		`[document.getElementById("app")?.dataset.screen, document.title, document.body.innerText.slice(0, 200)]`)
	tb.waitFor("the offline banner", `!document.getElementById("offline-banner").hidden && document.getElementById("offline-banner").dataset.kind === "offline"`, waitLong,
		`document.getElementById("offline-banner").textContent`)
	var banner string
	tb.eval(`document.getElementById("offline-banner").textContent`, &banner)
	if !strings.Contains(banner, "Offline") || !strings.Contains(banner, "sent when you're back") {
		t.Errorf("banner = %q", banner)
	}
	tb.waitFor("the conversation from the snapshot", `!document.getElementById("chat-view").hidden`, waitLong, "")
	tb.waitFor("the earlier message", jsMsg(first), waitLong, jsMessages)
	tb.waitFor("the outbox", `(m => m && m.dataset.status === "pending")(`+jsMsg(offline)+`)`, waitLong, jsMessages)
	tb.screenshot("offline-shell-desktop")
	tb.viewport(phoneW, phoneH)
	tb.screenshot("offline-shell-phone")

	// Back online: sent once, keeping the time it was written.
	s.start()
	for _, p := range []*tab{cl, tb} {
		p.waitFor("the banner to go", `document.getElementById("offline-banner").hidden`, waitLong+15*time.Second, `document.getElementById("offline-banner").textContent`)
		p.waitMessage(offline, "")
	}
	var after string
	tb.eval(`(`+jsMsg(offline)+`).querySelector('[data-testid="message-time"]').getAttribute("datetime")`, &after)
	if after != written {
		t.Errorf("the message's time moved from %s (written) to %s once sent", written, after)
	}
	assertHistoryOnce(t, s.URL, client, convID, []string{first, offline})
}

// TestIdleWarning: before the idle logout, a dialog counts down; "Stay signed
// in" closes it and keeps the session past the moment it would have ended.
// (TestScreensAccessible runs axe-core on the dialog.)
func TestIdleWarning(t *testing.T) {
	rootBrowser(t)
	t.Parallel()
	// The warning shows for the last half of a timeout this short (the last
	// 60 s of a long one).
	const idle = 12 * time.Second
	n := servertest.Start(t, func(c *config.Config) { c.IdleTimeout = idle })
	client := register(t, n.URL, "client", "client")

	cl := newUser(t, "client")
	cl.open(n.URL)
	cl.login(client.Username)
	start := time.Now()
	cl.waitFor("the idle warning", `document.getElementById("idle-dialog").open`, idle+waitLong, "")
	if d := time.Since(start); d < idle/2-2*time.Second {
		t.Fatalf("the warning came %v after login, want about %v", d, idle/2)
	}
	var left int
	cl.eval(`Number(document.getElementById("idle-countdown").textContent)`, &left)
	if left <= 0 || left > int(idle/2/time.Second) {
		t.Errorf("countdown shows %d, want 1..%d", left, idle/2/time.Second)
	}
	cl.screenshot("idle-dialog")
	cl.click("#idle-stay")
	stayed := time.Now()
	cl.waitFor("the dialog to close", `!document.getElementById("idle-dialog").open`, waitLong, "")

	// Past the deadline the dialog spoke of: still signed in, here and on the server.
	time.Sleep(time.Until(start.Add(idle + 2*time.Second)))
	if got := evalString(cl, `document.getElementById("app").dataset.screen`); got != "main" {
		t.Fatalf("screen = %s %v after staying, want main", got, time.Since(stayed))
	}
	cookie := cl.cookie(n.URL, "parley_session")
	if r := call(t, n.URL, "GET", "/api/me", "cookie:parley_session="+cookie, nil, nil); r.Status != http.StatusOK {
		t.Fatalf("GET /api/me after staying signed in: %d %s", r.Status, r.Body)
	}
}

// TestNotificationForHiddenTab: with notifications allowed (granted through
// the DevTools protocol, as a person answering the prompt) and switched on in
// the profile, a message arriving while the tab is hidden (its window
// minimised) shows a notification through the service worker and plays the
// sound; a muted conversation shows nothing. The notifications are seen by
// wrapping ServiceWorkerRegistration.showNotification (and Notification) in
// the page: see recordNotifications.
func TestNotificationForHiddenTab(t *testing.T) {
	rootBrowser(t)
	t.Parallel()
	n := servertest.Start(t)
	client := register(t, n.URL, "client", "client")
	pro := register(t, n.URL, "pro", "professional")
	convID := createConversation(t, n.URL, client, pro, "Notify", "Hello.")
	other := register(t, n.URL, "client", "client")
	otherConv := createConversation(t, n.URL, other, pro, "Other", "Hello from another client.")

	pr := newUser(t, "professional")
	pr.grant(n.URL, "notifications")
	pr.open(n.URL)
	pr.login(pro.Username)
	pr.waitFor("the service worker", `navigator.serviceWorker.ready.then(r => !!r.active)`, waitLong, "")
	pr.click("#profile-button")
	pr.waitFor("the profile", `document.getElementById("app").dataset.pane === "profile"`, waitLong, "")
	pr.click("#setting-notifications")
	pr.waitFor("notifications on", `document.getElementById("setting-notifications").checked`, waitLong,
		`[Notification.permission, document.getElementById("setting-notifications-note").textContent]`)
	pr.click("#profile-back")

	pr.recordNotifications()
	pr.setHidden(true)
	body := "Are you free on Tuesday?"
	postMessage(t, n.URL, client, convID, body)
	pr.waitFor("a notification", `(window.__shown || []).some(n => n.body === `+q(body)+`)`, waitLong, jsNotifyDiag)
	ns := pr.notifications()
	if len(ns) != 1 || ns[0].Via != "service-worker" || ns[0].Tag != "parley:"+convID || ns[0].Data["url"] != "/?c="+convID || !strings.HasPrefix(ns[0].Title, "Client ") {
		t.Errorf("notifications = %s", jsonString(ns))
	}
	var sounds int
	pr.eval(`window.parleyApp.sounds || 0`, &sounds)
	if sounds < 1 {
		t.Errorf("no sound played for a message in a hidden tab")
	}

	// Muted: nothing from that conversation, while another still notifies.
	pr.setHidden(false)
	pr.openConversation(convID)
	pr.click("#mute-button")
	pr.waitFor("muted", `document.getElementById("mute-button").getAttribute("aria-pressed") === "true"`, waitLong, "")
	pr.setHidden(true)
	muted := "This one is muted."
	postMessage(t, n.URL, client, convID, muted)
	pr.waitFor("the muted message to arrive", `window.parleyApp.state.conversations.get(`+q(convID)+`).last_message.body === `+q(muted), waitLong, "")
	loud := "From a conversation that is not muted."
	postMessage(t, n.URL, other, otherConv, loud)
	pr.waitFor("the other conversation's notification", `(window.__shown || []).some(n => n.body === `+q(loud)+`)`, waitLong, jsNotifyDiag)
	for _, n := range pr.notifications()[1:] {
		if n.Body == muted || n.Tag == "parley:"+convID {
			t.Errorf("a muted conversation showed %s", jsonString(n))
		}
	}
	pr.setHidden(false)
}

// jsNotifyDiag shows what the page knows about notifications, for failures.
const jsNotifyDiag = `({shown: window.__shown, permission: Notification.permission, visibility: document.visibilityState, sounds: window.parleyApp.sounds || 0,
	settings: Object.entries(localStorage).filter(([k]) => k.includes("settings"))})`

// pngFile writes a small PNG (w×h, a gradient) for uploads.
func pngFile(t *testing.T, dir, name string, w, h int) string {
	t.Helper()
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.Set(x, y, color.RGBA{uint8(40 + 180*x/w), uint8(90 + 100*y/h), 200, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, m); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAttachmentSentToPeer: the client attaches an image and a PDF (the
// file picker), sees them upload, and sends them with a link; the
// professional sees the image inline (loaded), opens it in the viewer, sees
// the PDF as a download card and the link as a safe anchor.
func TestAttachmentSentToPeer(t *testing.T) {
	rootBrowser(t)
	t.Parallel()
	n := servertest.Start(t)
	client := register(t, n.URL, "client", "client")
	pro := register(t, n.URL, "pro", "professional")
	convID := createConversation(t, n.URL, client, pro, "Lease", "I have the lease.")

	cl := inConversation(t, "client", n.URL, client.Username, convID)
	pr := inConversation(t, "professional", n.URL, pro.Username, convID)

	dir := t.TempDir()
	img := pngFile(t, dir, "floor-plan.png", 320, 200)
	pdf := filepath.Join(dir, "lease.pdf")
	if err := os.WriteFile(pdf, append([]byte("%PDF-1.4\n"), bytes.Repeat([]byte("lease terms\n"), 2000)...), 0o644); err != nil {
		t.Fatal(err)
	}
	cl.do("pick files", chromedp.SetUploadFiles(chromedp.CSS("#attach-input"), []string{img, pdf}))
	cl.waitFor("two uploads done", `[...document.querySelectorAll('[data-testid="tray-item"]')].filter(e => e.dataset.state === "done").length === 2`, waitLong,
		`[...document.querySelectorAll('[data-testid="tray-item"]')].map(e => e.dataset.state + " " + e.textContent)`)
	cl.screenshot("attachments-tray")
	body := "Here it is, also online: https://example.com/lease.pdf."
	cl.send(body)
	cl.waitMessage(body, "")

	pr.waitMessage(body, "received")
	sel := jsMsg(body)
	pr.waitFor("the image shown inline", `(m => { const i = m.querySelector('[data-testid="attachment-image"] img'); return i && i.complete && i.naturalWidth === 320 })(`+sel+`)`, waitLong, "")
	var card struct {
		Name, Href, Link, Rel, Target string
	}
	pr.eval(`(m => { const f = m.querySelector('[data-testid="attachment-file"]'); const a = m.querySelector('[data-testid="message-link"]');
		return {Name: f.textContent, Href: f.getAttribute("href"), Link: a.href, Rel: a.rel, Target: a.target} })(`+sel+`)`, &card)
	if !strings.Contains(card.Name, "lease.pdf") || !strings.HasPrefix(card.Href, "/api/attachments/") {
		t.Errorf("file card = %+v", card)
	}
	if card.Link != "https://example.com/lease.pdf" || card.Rel != "noopener noreferrer" || card.Target != "_blank" {
		t.Errorf("link = %+v, want https://example.com/lease.pdf (without the full stop), rel=noopener noreferrer", card)
	}
	pr.click(`[data-testid="attachment-image"]`)
	pr.waitFor("the viewer", `document.getElementById("image-viewer").open && document.getElementById("image-viewer-img").naturalWidth === 320`, waitLong, "")
	pr.screenshot("attachment-viewer")
	pr.click("#image-viewer-close")
	pr.waitFor("the viewer closed", `!document.getElementById("image-viewer").open`, waitLong, "")
	pr.screenshot("attachments-received")

	// The server serves the PDF as a download to the peer.
	var href string
	pr.eval(`(`+sel+`).querySelector('[data-testid="attachment-file"]').getAttribute("href")`, &href)
	r := call(t, n.URL, "GET", href, pro.Token, nil, nil)
	if r.Status != http.StatusOK || !bytes.HasPrefix(r.Body, []byte("%PDF-1.4")) {
		t.Errorf("GET %s = %d (%d bytes)", href, r.Status, len(r.Body))
	}
}

// TestSearchFindsAndJumps: in a conversation of 150 messages, the search box
// over the list finds an old message by a word; the result opens the
// conversation at that message (the page around it loaded, the message
// highlighted), far from the newest; "Jump to the latest" goes back. The
// search inside the conversation finds it too.
func TestSearchFindsAndJumps(t *testing.T) {
	rootBrowser(t)
	t.Parallel()
	n := servertest.Start(t)
	client := register(t, n.URL, "client", "client")
	pro := register(t, n.URL, "pro", "professional")
	convID := createConversation(t, n.URL, client, pro, "Long", "Message 1.")
	for i := 2; i <= 150; i++ {
		body := "Routine message number " + strconv.Itoa(i) + "."
		if i == 12 {
			body = "The boiler certificate is in the blue folder."
		}
		from := client
		if i%2 == 0 {
			from = pro
		}
		postMessage(t, n.URL, from, convID, body)
	}
	cl := newUser(t, "client")
	cl.open(n.URL)
	cl.login(client.Username)
	cl.typeInto("#search-input", "boiler cert")
	res := `[data-testid="search-result"][data-seq="12"]`
	cl.waitFor("the result", `document.querySelector(`+q(res)+`)`, waitLong, `document.getElementById("search-view").innerText`)
	var marked string
	cl.eval(`[...document.querySelectorAll('`+res+` mark')].map(m => m.textContent).join(",")`, &marked)
	if !strings.Contains(strings.ToLower(marked), "boiler") {
		t.Errorf("highlighted words = %q, want boiler", marked)
	}
	cl.screenshot("search-results")
	cl.click(res)
	cl.waitFor("message 12 shown and highlighted", `(m => m && m.dataset.found === "true")(document.querySelector('#message-list [data-testid="message"][data-seq="12"]'))`, waitLong,
		`[...document.querySelectorAll('#message-list [data-testid="message"]')].map(m => m.dataset.seq).join(",")`)
	var span struct{ Min, Max int }
	cl.eval(`(() => { const s = [...document.querySelectorAll('#message-list [data-testid="message"]')].map(m => Number(m.dataset.seq)); return {Min: Math.min(...s), Max: Math.max(...s)} })()`, &span)
	if span.Min > 12 || span.Max >= 150 || span.Max < 20 {
		t.Errorf("loaded seqs %d..%d around 12, want the page around it, not the newest", span.Min, span.Max)
	}
	var inView bool
	cl.eval(`(() => { const r = document.querySelector('#message-list [data-seq="12"]').getBoundingClientRect(); const s = document.getElementById("message-scroller").getBoundingClientRect(); return r.top >= s.top && r.bottom <= s.bottom })()`, &inView)
	if !inView {
		t.Error("message 12 is not scrolled into view")
	}
	cl.screenshot("search-jumped")
	cl.waitFor("the jump-to-latest button", `!document.getElementById("jump-latest").hidden`, waitLong, "")
	cl.click("#jump-latest")
	cl.waitMessage("Routine message number 150.", "")

	// In the conversation.
	cl.click("#chat-search-button")
	cl.typeInto("#chat-search-input", "blue folder")
	cl.waitFor("the result in the conversation", `document.querySelector('#chat-search-results [data-testid="search-result"][data-seq="12"]')`, waitLong,
		`document.getElementById("chat-search").innerText`)
	cl.click(`#chat-search-results [data-testid="search-result"][data-seq="12"]`)
	cl.waitFor("message 12 again", `document.querySelector('#message-list [data-testid="message"][data-seq="12"]')?.dataset.found === "true"`, waitLong, "")
}

// TestDeleteWithUndo: deleting shows the message as deleted with Undo; Undo
// brings it back and nothing reaches the server; a delete left alone is sent
// when the 5 s window closes, and the peer then sees it deleted.
func TestDeleteWithUndo(t *testing.T) {
	rootBrowser(t)
	t.Parallel()
	n := servertest.Start(t)
	client := register(t, n.URL, "client", "client")
	pro := register(t, n.URL, "pro", "professional")
	convID := createConversation(t, n.URL, client, pro, "Undo", "Hello.")
	cl := inConversation(t, "client", n.URL, client.Username, convID)
	pr := inConversation(t, "professional", n.URL, pro.Username, convID)

	body := "I sent this to the wrong person."
	cl.send(body)
	pr.waitMessage(body, "received")
	// The peer's read receipt rebuilds the item; a click whose press and
	// release straddle that lands on no button.
	cl.waitMessage(body, "read")
	sel := jsMsg(body)
	bodyOnServer := func() string {
		for _, m := range history(t, n.URL, client, convID) {
			if m.Seq == 2 {
				return m.Body
			}
		}
		return "?"
	}
	byID := func() string {
		var id string
		cl.eval(`(`+sel+`).dataset.messageId`, &id)
		return `#message-list [data-message-id=` + q(id) + `]`
	}
	item := byID()

	cl.click(item + ` [data-testid="delete-button"]`)
	cl.waitFor("the undo offer", `document.querySelector(`+q(item)+`)?.dataset.undo === "true"`, waitLong, "")
	cl.screenshot("delete-undo")
	cl.click(item + ` [data-testid="undo-delete"]`)
	cl.waitFor("the message back", `(m => m && !m.dataset.undo && m.dataset.deleted === "false" && m.querySelector('[data-testid="message-body"]').textContent === `+q(body)+`)(document.querySelector(`+q(item)+`))`, waitLong, "")
	time.Sleep(5500 * time.Millisecond) // past the undo window: still nothing sent
	if got := bodyOnServer(); got != body {
		t.Fatalf("after Undo the server has %q, want the message untouched", got)
	}

	start := time.Now()
	cl.click(item + ` [data-testid="delete-button"]`)
	cl.waitFor("the undo offer", `document.querySelector(`+q(item)+`)?.dataset.undo === "true"`, waitLong, "")
	if got := bodyOnServer(); got != body {
		t.Fatalf("during the undo window the server has %q, want the message untouched", got)
	}
	pr.waitFor("the peer to see it deleted", `document.querySelector(`+q(item)+`)?.dataset.deleted === "true"`, waitLong, jsMessages)
	if d := time.Since(start); d < 4500*time.Millisecond {
		t.Errorf("the delete reached the peer %v after the click, before the 5 s undo window closed", d)
	}
	if got := bodyOnServer(); got != "" {
		t.Errorf("after the window the server has %q, want the body erased", got)
	}
	cl.waitFor("deleted for good", `document.querySelector(`+q(item)+`)?.dataset.deleted === "true" && !document.querySelector(`+q(item)+`).dataset.undo`, waitLong, "")
}

// TestCallRecords: a declined call and an unanswered one leave records in
// both timelines, in the words of each side; a reload keeps them (they are
// read back from the user's event log).
func TestCallRecords(t *testing.T) {
	rootBrowser(t)
	t.Parallel()
	n := servertest.Start(t, func(c *config.Config) { c.CallTimeout = 2 * time.Second })
	client := register(t, n.URL, "client", "client")
	pro := register(t, n.URL, "pro", "professional")
	convID := createConversation(t, n.URL, client, pro, "Calls", "Can we talk?")
	cl := inConversation(t, "client", n.URL, client.Username, convID)
	pr := inConversation(t, "professional", n.URL, pro.Username, convID)

	jsCall := `document.getElementById("call-panel").dataset.callState`
	jsRecords := `[...document.querySelectorAll('[data-testid="call-record"]')].map(e => e.dataset.outcome + ": " + e.textContent)`
	cl.click("#call-audio-button")
	pr.waitFor("the incoming call", jsCall+` === "incoming"`, waitLong, jsCall)
	pr.click("#call-decline")
	cl.waitFor("the declined record", `document.querySelector('[data-testid="call-record"][data-outcome="declined"]')?.textContent.includes("Audio call declined")`, waitLong, jsRecords)
	pr.waitFor("the declined record", `document.querySelector('[data-testid="call-record"][data-outcome="declined"]')?.textContent.includes("You declined an audio call")`, waitLong, jsRecords)
	cl.waitFor("the panel to go", jsCall+` === "none"`, waitLong, jsCall)

	cl.click("#call-audio-button")
	pr.waitFor("the second call", jsCall+` === "incoming"`, waitLong, jsCall)
	// Nobody answers: missed after the 2 s call timeout.
	pr.waitFor("the missed record", `document.querySelector('[data-testid="call-record"][data-outcome="missed"]')?.textContent.includes("Missed audio call")`, waitLong, jsRecords)
	cl.waitFor("the unanswered record", `document.querySelector('[data-testid="call-record"][data-outcome="missed"]')?.textContent.includes("no answer")`, waitLong, jsRecords)
	pr.screenshot("call-records")

	// A fresh page with nothing kept in this browser reads them back from the log.
	pr.eval(`Object.keys(localStorage).filter(k => k.endsWith(":calls")).forEach(k => localStorage.removeItem(k)) || true`, nil)
	pr.do("reload", chromedp.Reload())
	pr.waitFor("the records after a reload", `document.querySelectorAll('[data-testid="call-record"]').length === 2`, waitLong, jsRecords)
}

// TestClickSurvivesListRender: a message that arrives between the press on
// a conversation and its release re-renders the list (the conversation
// stays where it is, its last message changes); the click still opens it
// (it was lost when the list replaced its items).
func TestClickSurvivesListRender(t *testing.T) {
	rootBrowser(t)
	t.Parallel()
	f := twoConversations(t)
	n, cl, convB := f.n, f.cl, f.convB
	sel := `[data-testid="conversation-item"][data-conversation-id=` + q(convB) + `] [data-testid="conversation-name"]`
	cl.waitFor("B in the list", `document.querySelector(`+q(sel)+`)`, waitLong, "")
	var at struct{ X, Y float64 }
	cl.eval(`(() => { const r = document.querySelector(`+q(sel)+`).getBoundingClientRect(); return {X: r.x + r.width / 2, Y: r.y + r.height / 2}; })()`, &at)
	cl.do("press on B", chromedp.MouseEvent(chromedp.MousePressed, at.X, at.Y, chromedp.ButtonLeft, chromedp.ClickCount(1)))
	postMessage(t, n.URL, f.pro2, convB, "A new message for the list")
	cl.waitFor("the list showing the new message", `[...document.querySelectorAll('[data-testid="conversation-last"]')].some((e) => e.textContent.includes("A new message for the list"))`, waitLong, "")
	cl.do("release on B", chromedp.MouseEvent(chromedp.MouseReleased, at.X, at.Y, chromedp.ButtonLeft, chromedp.ClickCount(1)))
	cl.waitFor("B open", jsChatOf(convB), 5*time.Second, jsURL)
}
