package browsertest

import (
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/servertest"
)

// TestChatBetweenTwoBrowsers: a client (registers in the UI) and a
// professional (logs in through the UI) in two separate browser profiles.
// The client starts a conversation from the directory; they write both ways
// and each sees the other's messages, the other's typing, ✓ (delivered)
// then ✓✓ (read) on their own messages, and the professional's presence
// dot go online when they connect and offline when they leave (after the
// grace period). A call is rung, accepted and ended on the way.
func TestChatBetweenTwoBrowsers(t *testing.T) {
	rootBrowser(t)
	n := servertest.Start(t, func(c *config.Config) { c.PresenceGrace = 500 * time.Millisecond })
	pro := register(t, n.URL, "pro", "professional")

	// The client registers through the form.
	cl := newUser(t, "client")
	cl.open(n.URL)
	cl.screenshot("01-login")
	clientName := uniqueName("client")
	cl.register(clientName, "Carla Client", "client")
	cl.waitFor("the empty conversation list", `!document.getElementById("conversation-empty").hidden`, waitLong, "")
	var clientID string
	cl.eval(`window.parleyApp.state.me.id`, &clientID)

	// The directory shows the professional, offline: they never connected.
	cl.click("#new-conversation-button")
	proItem := `[data-testid="professional-item"][data-user-id=` + q(pro.ID) + `]`
	cl.waitFor("the professional in the directory", `document.querySelector(`+q(proItem)+`)`, waitLong,
		`document.getElementById("professional-list").textContent`)
	cl.waitFor("the professional shown offline", `document.querySelector(`+q(proItem+` [data-testid="presence"]`)+`).dataset.online === "false"`, waitLong, "")
	cl.click(proItem)
	first := "Hello, I need help with my tax return."
	cl.typeInto("#new-conversation-subject", "Tax return")
	cl.typeInto("#new-conversation-body", first)
	cl.click("#new-conversation-submit")
	cl.waitFor("the new conversation's chat", `!document.getElementById("chat-view").hidden && document.getElementById("chat-view").dataset.conversationId`, waitLong, "")
	var convID string
	cl.eval(`document.getElementById("chat-view").dataset.conversationId`, &convID)
	cl.waitMessage(first, "sent") // nobody received it yet: one state before ✓
	jsClPresence := `document.getElementById("chat-presence").dataset.online`
	if got := evalString(cl, jsClPresence); got != "false" {
		t.Fatalf("professional shown online=%s before they connected", got)
	}

	// The professional logs in: the client sees their dot go online.
	pr := newUser(t, "professional")
	pr.open(n.URL)
	pr.login(pro.Username)
	cl.waitFor("the professional's dot to go online", jsClPresence+` === "true"`, waitLong, jsClPresence)
	cl.waitFor("the professional online in the list",
		`document.querySelector('[data-testid="conversation-item"] [data-testid="presence"]').dataset.online === "true"`, waitLong, "")
	convItem := `[data-testid="conversation-item"][data-conversation-id=` + q(convID) + `]`
	pr.waitFor("the conversation with 1 unread in the professional's list",
		`document.querySelector(`+q(convItem)+`)?.dataset.unread === "1"`, waitLong, `document.getElementById("conversation-list").innerText`)
	pr.waitFor("the client shown online to the professional",
		`document.querySelector(`+q(convItem+` [data-testid="presence"]`)+`).dataset.online === "true"`, waitLong, "")

	// The client types while the professional is on the list: the list
	// shows "typing…"; the sent message reaches the professional's stream
	// (✓ delivered) but is not read yet.
	second := "Are you there?"
	cl.typeInto("#message-input", second)
	jsProLast := `document.querySelector(` + q(convItem+` [data-testid="conversation-last"]`) + `).textContent`
	pr.waitFor("the client's typing in the professional's list", jsProLast+` === "typing…"`, waitLong, jsProLast)
	pr.screenshot("02-conversation-list-typing")
	cl.click("#send-button")
	cl.waitMessage(second, "delivered")
	assertMark(t, cl, second, "✓")
	pr.waitFor("2 unread", `document.querySelector(`+q(convItem)+`).dataset.unread === "2"`, waitLong, jsProLast)
	pr.waitFor("the preview to show the message", jsProLast+` === `+q(second), waitLong, jsProLast)
	pr.screenshot("03-conversation-list-unread")
	if got := statusOf(cl, second); got != "delivered" {
		t.Fatalf("client's message is %q before the professional opened the conversation, want delivered", got)
	}

	// The professional opens it: both messages are read (✓✓).
	pr.openConversation(convID)
	pr.waitMessage(first, "received")
	pr.waitMessage(second, "received")
	cl.waitMessage(first, "read")
	cl.waitMessage(second, "read")
	assertMark(t, cl, first, "✓✓")
	assertMark(t, cl, second, "✓✓")
	pr.waitFor("no unread left", `document.querySelector(`+q(convItem)+`).dataset.unread === "0"`, waitLong, "")

	// Both have the chat open now. The client types: the professional sees
	// the indicator, which goes when the message arrives.
	jsTyping := `document.getElementById("typing-indicator")`
	third := "It is about last year."
	cl.typeInto("#message-input", third)
	pr.waitFor("the client's typing indicator", `!`+jsTyping+`.hidden && `+jsTyping+`.textContent.includes("is typing")`, waitLong, jsTyping+`.textContent`)
	cl.click("#send-button")
	pr.waitMessage(third, "received")
	pr.waitFor("the typing indicator to go", jsTyping+`.hidden`, waitLong, jsTyping+`.textContent`)
	cl.waitMessage(third, "read")

	// The professional types: the client sees the indicator; it goes when
	// the message arrives, which the client reads at once.
	reply := "Yes, I am here."
	pr.typeInto("#message-input", reply)
	cl.waitFor("the typing indicator", `!`+jsTyping+`.hidden && `+jsTyping+`.textContent.includes("is typing")`, waitLong, jsTyping+`.textContent`)
	cl.screenshot("04-chat-typing-indicator")
	pr.click("#send-button")
	cl.waitMessage(reply, "received")
	cl.waitFor("the typing indicator to go", jsTyping+`.hidden`, waitLong, jsTyping+`.textContent`)
	pr.waitMessage(reply, "read")

	// The client, now on a phone-sized screen (one pane at a time), goes
	// back to the list: the professional's next message is delivered (✓)
	// and becomes read (✓✓) when the client opens the chat again.
	cl.viewport(390, 800)
	cl.click("#back-button")
	cl.waitFor("the list pane", `document.getElementById("chat-view").hidden && document.getElementById("app").dataset.pane === "list"`, waitLong, "")
	ask := "Could you send me last year's return?"
	pr.send(ask)
	pr.waitMessage(ask, "delivered")
	assertMark(t, pr, ask, "✓")
	cl.waitFor("1 unread for the client", `document.querySelector(`+q(convItem)+`).dataset.unread === "1"`, waitLong, "")
	if got := statusOf(pr, ask); got != "delivered" {
		t.Fatalf("professional's message is %q before the client opened the conversation, want delivered", got)
	}
	cl.screenshot("05-phone-conversation-list")
	cl.openConversation(convID)
	pr.waitMessage(ask, "read")
	assertMark(t, pr, ask, "✓✓")
	assertMark(t, pr, reply, "✓✓")
	cl.screenshot("05-phone-chat")
	cl.viewport(viewportW, viewportH)
	cl.screenshot("05-chat-client-receipts")
	pr.screenshot("06-chat-professional-receipts")

	want := []string{first, second, third, reply, ask}
	cl.assertMessagesOnce(want)
	pr.assertMessagesOnce(want)
	for _, m := range cl.messages() {
		if wantOwn := m.Body == first || m.Body == second || m.Body == third; m.Own != wantOwn {
			t.Errorf("client: message %q own=%v", m.Body, m.Own)
		}
	}

	// A call: rung by the client, accepted by the professional, ended.
	jsCall := `document.getElementById("call-panel").dataset.callState`
	cl.click("#call-audio-button")
	cl.waitFor("the outgoing call", jsCall+` === "outgoing"`, waitLong, jsCall)
	pr.waitFor("the incoming call", jsCall+` === "incoming"`, waitLong, jsCall)
	pr.screenshot("07-call-incoming")
	cl.screenshot("08-call-outgoing")
	pr.click("#call-accept")
	pr.waitFor("the call to be active", jsCall+` === "active"`, waitLong, jsCall)
	cl.waitFor("the call to be active", jsCall+` === "active"`, waitLong, jsCall)
	cl.screenshot("09-call-active")
	cl.click("#call-end")
	pr.waitFor("the call to end", `["ended", "none"].includes(`+jsCall+`)`, waitLong, jsCall)
	cl.waitFor("the call to end", `["ended", "none"].includes(`+jsCall+`)`, waitLong, jsCall)

	// The professional leaves (closes their browser): once the grace
	// period has passed, the client sees them offline with a last-seen time.
	pr.close()
	cl.waitFor("the professional's dot to go offline", jsClPresence+` === "false"`, waitLong, jsClPresence)
	cl.waitFor("offline in the list",
		`document.querySelector('[data-testid="conversation-item"] [data-testid="presence"]').dataset.online === "false"`, waitLong, "")
	cl.waitFor("a last-seen time", `document.getElementById("chat-subtitle").textContent.includes("last seen")`, waitLong,
		`document.getElementById("chat-subtitle").textContent`)
	cl.screenshot("10-chat-peer-offline")
	if d := cl.dialogsOpened(); len(d) > 0 {
		t.Errorf("dialogs opened: %v", d)
	}
}

// TestMessageBodyShownAsText: markup in a message body is shown as its
// characters: no element is created from it (no img, no request for its
// src), no dialog opens, on the sender's and the receiver's page, in the
// chat and in the conversation list's preview.
func TestMessageBodyShownAsText(t *testing.T) {
	rootBrowser(t)
	n := servertest.Start(t)
	client := register(t, n.URL, "client", "client")
	pro := register(t, n.URL, "pro", "professional")
	convID := createConversation(t, n.URL, client, pro, "Markup", "hi")

	cl := inConversation(t, "client", n.URL, client.Username, convID)
	pr := inConversation(t, "professional", n.URL, pro.Username, convID)

	img := `<img src=x onerror=alert(1)>`
	cl.send(img) // typed into the composer
	cl.waitMessage(img, "")
	script := `<script>alert(2)</script><b>bold</b><svg onload=alert(3)>`
	postMessage(t, n.URL, pro, convID, script) // and from the API

	for _, p := range []*tab{cl, pr} {
		p.waitMessage(img, "")
		p.waitMessage(script, "")
		var res struct {
			Imgs, Scripts, Bold, SVGInBody int
			ImgHTML                        string
			Preview                        string
			RequestedX                     bool
		}
		p.eval(`(() => {
			const list = document.getElementById("message-list");
			const body = `+jsMsg(img)+`.querySelector('[data-testid="message-body"]');
			return {
				Imgs: document.querySelectorAll("#message-list img, #conversation-list img").length,
				Scripts: document.querySelectorAll("#message-list script, #conversation-list script").length,
				Bold: list.querySelectorAll("b").length,
				SVGInBody: list.querySelectorAll('[data-testid="message-body"] svg').length,
				ImgHTML: body.innerHTML,
				Preview: document.querySelector('[data-testid="conversation-item"] [data-testid="conversation-last"]').textContent,
				RequestedX: performance.getEntriesByType("resource").some(e => e.name === new URL("x", location.href).href),
			};
		})()`, &res)
		if res.Imgs != 0 || res.Scripts != 0 || res.Bold != 0 || res.SVGInBody != 0 {
			t.Errorf("%s: elements made from message bodies: %+v", p.name, res)
		}
		if res.ImgHTML != "&lt;img src=x onerror=alert(1)&gt;" {
			t.Errorf("%s: body innerHTML = %q, want the escaped text", p.name, res.ImgHTML)
		}
		if !strings.HasSuffix(res.Preview, script) {
			t.Errorf("%s: list preview = %q, want it to end with the body as text", p.name, res.Preview)
		}
		if res.RequestedX {
			t.Errorf("%s: the page requested the img's src", p.name)
		}
	}
	cl.screenshot("11-chat-markup-as-text")
	for _, p := range []*tab{cl, pr} {
		if d := p.dialogsOpened(); len(d) > 0 {
			t.Errorf("%s: dialogs opened: %v", p.name, d)
		}
	}
	cl.assertMessagesOnce([]string{"hi", img, script})
}

// TestReadReceiptSurvivesAFailedRequest: the reader's "read" request fails
// (a network error); the app sends it again, so the writer still gets ✓✓
// without the reader doing anything more.
func TestReadReceiptSurvivesAFailedRequest(t *testing.T) {
	rootBrowser(t)
	n := servertest.Start(t)
	client := register(t, n.URL, "client", "client")
	pro := register(t, n.URL, "pro", "professional")
	first := "First question."
	convID := createConversation(t, n.URL, client, pro, "Receipts", first)

	cl := inConversation(t, "client", n.URL, client.Username, convID)
	pr := inConversation(t, "professional", n.URL, pro.Username, convID)
	cl.waitMessage(first, "read")

	pr.blockURLs("*://*:*/api/conversations/*/read")
	second := "Second question."
	cl.send(second)
	pr.waitMessage(second, "received")
	cl.waitMessage(second, "delivered")
	// The professional has it on screen: the app tried to mark it read.
	pr.waitFor("the read marker to move", `window.parleyApp.state.conversations.get(`+q(convID)+`).last_read_seq === 2`, waitLong, "")
	pr.blockURLs()
	cl.waitMessage(second, "read")
	assertMark(t, cl, second, "✓✓")
	var unread int
	r := call(t, n.URL, "GET", "/api/conversations/"+convID, pro.Token, nil, &struct {
		Unread *int `json:"unread_count"`
	}{&unread})
	if r.Status != 200 || unread != 0 {
		t.Fatalf("professional's unread_count on the server = %d (%d), want 0", unread, r.Status)
	}
}

func evalString(tb *tab, js string) string {
	tb.t.Helper()
	var s string
	tb.eval(js, &s)
	return s
}

func statusOf(tb *tab, body string) string {
	tb.t.Helper()
	return evalString(tb, `(`+jsMsg(body)+`)?.dataset.status ?? ""`)
}

// assertMark checks the ✓ / ✓✓ shown on an own message.
func assertMark(t *testing.T, tb *tab, body, mark string) {
	t.Helper()
	tb.waitFor("mark "+mark+" on "+q(body),
		`(`+jsMsg(body)+`)?.querySelector('[data-testid="message-status"]')?.textContent === `+q(mark), waitLong, jsMessages)
}
