package browsertest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/servertest"
)

// uploadAttachment posts a file to a conversation over REST and returns the
// attachment's id.
func uploadAttachment(t *testing.T, base string, as account, convID, name, ctype string, data []byte) string {
	t.Helper()
	req, err := http.NewRequest("POST", base+"/api/conversations/"+convID+"/attachments?name="+name, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Authorization", "Bearer "+as.Token)
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var a struct{ ID string }
	if err := json.NewDecoder(res.Body).Decode(&a); err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("upload %s: %d %v", name, res.StatusCode, err)
	}
	return a.ID
}

// screensWorld is a server with a client, two professionals of one name
// (with bios), and a conversation holding text, a link, an image, a file and
// replies: enough for every screen to show what it shows.
type screensWorld struct {
	n      *servertest.Node
	client account
	pros   []account
	bios   []string
	convID string
}

func newScreensWorld(t *testing.T) *screensWorld {
	t.Helper()
	w := &screensWorld{}
	n := servertest.Start(t)
	w.n = n
	client := register(t, n.URL, "client", "client")
	var pros []account
	bios := []string{"Tax adviser in Lyon. Returns, VAT, small companies.", "Family law, Paris. Divorce and custody."}
	for i, bio := range bios {
		p := register(t, n.URL, "pro", "professional")
		r := call(t, n.URL, "PATCH", "/api/me", p.Token, map[string]any{"display_name": "Dana Smith", "bio": bio}, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("PATCH /api/me (pro %d): %d %s", i, r.Status, r.Body)
		}
		pros = append(pros, p)
	}
	pro := pros[0]
	convID := createConversation(t, n.URL, client, pro, "Tax return 2024", "Hello, I need help with my tax return.")
	postMessage(t, n.URL, pro, convID, "Of course. Could you send me last year's return and your payslips?")
	dir := t.TempDir()
	img, err := os.ReadFile(pngFile(t, dir, "payslip.png", 480, 300))
	if err != nil {
		t.Fatal(err)
	}
	imgID := uploadAttachment(t, n.URL, client, convID, "payslip.png", "image/png", img)
	pdfID := uploadAttachment(t, n.URL, client, convID, "return-2023.pdf", "application/pdf", append([]byte("%PDF-1.4\n"), bytes.Repeat([]byte("x"), 40000)...))
	var m message
	if r := call(t, n.URL, "POST", "/api/conversations/"+convID+"/messages", client.Token, map[string]any{"body": "Here they are. The form is at https://www.impots.gouv.fr/formulaire/2042/", "attachment_ids": []string{imgID, pdfID}}, &m); r.Status != http.StatusCreated {
		t.Fatalf("message with attachments: %d %s", r.Status, r.Body)
	}
	postMessage(t, n.URL, pro, convID, "Thank you, I have everything. I will get back to you on Monday.")
	postMessage(t, n.URL, pro, convID, "One more question: did you move house last year?")

	w.client, w.pros, w.bios, w.convID = client, pros, bios, convID
	_ = m
	return w
}

// screensCheck runs axe-core on a screen in every look and takes its
// screenshots, through a report summarised at the end of the test.
type screensCheck struct {
	t   *testing.T
	rep axeReport
}

func (c *screensCheck) each(tb *tab, screen string, prepare func()) {
	c.t.Helper()
	for _, l := range looks {
		tb.setLook(l)
		if prepare != nil {
			prepare()
		}
		c.rep.check(c.t, tb, screen, l)
	}
}

func (c *screensCheck) summary() {
	c.t.Logf("axe-core summary (serious or critical violations fail the test):\n%s", c.rep.summary())
	if dir := screenshotDir(c.t); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, "axe-summary-"+safeName(c.t.Name())+".txt"), []byte(c.rep.summary()+"\n"), 0o644)
	}
}

// TestAuthScreensAccessible: login, and register with every error shown at
// once (each field marked aria-invalid and described by its error; the
// username lower-cased as typed), through axe-core in light and dark at
// 1280×800 and 390×844, with screenshots.
func TestAuthScreensAccessible(t *testing.T) {
	rootBrowser(t)
	t.Parallel()
	n := servertest.Start(t)
	c := &screensCheck{t: t}
	each := c.each
	// Login and register (with every error shown at once).
	guest := newUser(t, "guest")
	guest.open(n.URL)
	each(guest, "login", nil)
	guest.click("#show-register")
	guest.typeInto("#register-username", "Al")
	if got := evalString(guest, `document.getElementById("register-username").value`); got != "al" {
		t.Errorf("username typed as Al shows %q, want it lower-cased", got)
	}
	guest.typeInto("#register-password", "short")
	guest.click("#register-submit")
	guest.waitFor("both errors at once", `document.getElementById("register-username").getAttribute("aria-invalid") === "true" && document.getElementById("register-password").getAttribute("aria-invalid") === "true" && !document.getElementById("register-username-error").hidden && !document.getElementById("register-password-error").hidden`, waitLong,
		`[document.getElementById("register-username-error").textContent, document.getElementById("register-password-error").textContent]`)
	var described string
	guest.eval(`document.getElementById("register-password").getAttribute("aria-describedby")`, &described)
	if !strings.Contains(described, "register-password-error") {
		t.Errorf("the password field is described by %q, not its error", described)
	}
	each(guest, "register-errors", nil)
	guest.close()

	c.summary()
}

// TestScreensAccessible: the main screens of a signed-in client — the
// conversation list, the chat (day separator, new-messages divider, link,
// image, file), search results, the directory (two people of one name told
// apart by handle and bio), the profile (bio saved) and the idle warning
// dialog (opened here directly; TestIdleWarning checks when it comes) — in
// light and dark at 1280×800 and 390×844: axe-core finds no serious or
// critical violation, and a screenshot of each goes to
// test-artifacts/screenshots/<screen>-<size>-<theme>.png. A summary per
// screen is logged.
func TestScreensAccessible(t *testing.T) {
	rootBrowser(t)
	t.Parallel()
	w := newScreensWorld(t)
	n, client, pros, bios, convID := w.n, w.client, w.pros, w.bios, w.convID
	c := &screensCheck{t: t}
	each := c.each
	cl := newUser(t, "client")
	cl.open(n.URL)
	cl.login(client.Username)
	cl.waitFor("the conversation", `document.querySelector('[data-testid="conversation-item"]')`, waitLong, "")
	each(cl, "conversation-list", nil)

	cl.openConversation(convID)
	cl.waitFor("the image", `(i => i && i.complete && i.naturalWidth === 480)(document.querySelector('[data-testid="attachment-image"] img'))`, waitLong, "")
	cl.waitFor("the day separator and the divider", `document.querySelector('[data-testid="day-separator"]') && document.querySelector('[data-testid="new-divider"]')`, waitLong, "")
	each(cl, "chat", func() {
		cl.eval(`document.getElementById("message-scroller").scrollTop = 1e6, true`, nil)
	})

	cl.setLook(looks[2])
	cl.click("#back-button")
	cl.waitFor("the list", `document.getElementById("app").dataset.pane === "list"`, waitLong, "")
	// Search results over the list.
	cl.setLook(looks[0])
	cl.typeInto("#search-input", "payslips")
	cl.waitFor("a result", `document.querySelector('[data-testid="search-result"]')`, waitLong, `document.getElementById("search-view").innerText`)
	each(cl, "search-results", nil)
	cl.eval(`(() => { const i = document.getElementById("search-input"); i.value = ""; i.dispatchEvent(new Event("input")); return true })()`, nil)

	// The directory: two people named Dana Smith, told apart by handle and bio.
	cl.setLook(looks[0])
	cl.click("#new-conversation-button")
	cl.typeInto("#directory-search", "dana")
	cl.waitFor("both Danas", `document.querySelectorAll('[data-testid="professional-item"]').length === 2`, waitLong, `document.getElementById("professional-list").innerText`)
	var handles []string
	cl.eval(`[...document.querySelectorAll('[data-testid="professional-item"]')].map(b => b.querySelector('[data-testid="professional-username"]').textContent + " " + b.querySelector('[data-testid="professional-bio"]').textContent)`, &handles)
	for i, p := range pros {
		if len(handles) != 2 || !strings.Contains(strings.Join(handles, "|"), "@"+p.Username+" "+bios[i]) {
			t.Errorf("directory entries %q, want @%s with its bio", handles, p.Username)
		}
	}
	cl.typeInto("#directory-search", " lyon")
	cl.waitFor("one Dana from Lyon", `document.querySelectorAll('[data-testid="professional-item"]').length === 1`, waitLong, `document.getElementById("professional-list").innerText`)
	each(cl, "directory", nil)

	// The profile, with a bio saved through the form.
	cl.setLook(looks[0])
	cl.click("#profile-button")
	cl.waitFor("the profile", `document.getElementById("app").dataset.pane === "profile"`, waitLong, "")
	cl.eval(`document.getElementById("profile-bio").value = "", true`, nil)
	cl.typeInto("#profile-bio", "Freelance translator, moving to Lyon.")
	cl.click("#profile-save")
	cl.waitFor("saved", `document.getElementById("profile-saved").textContent === "Saved."`, waitLong, `document.getElementById("profile-error").textContent`)
	var me struct {
		Bio string `json:"bio"`
	}
	if r := call(t, n.URL, "GET", "/api/me", client.Token, nil, &me); r.Status != http.StatusOK || me.Bio != "Freelance translator, moving to Lyon." {
		t.Errorf("bio on the server = %q (%d)", me.Bio, r.Status)
	}
	each(cl, "profile", nil)

	// The idle warning, as the app shows it (TestIdleWarning checks when).
	cl.eval(`(() => { document.getElementById("idle-countdown").textContent = "42"; document.getElementById("idle-dialog").showModal(); return true })()`, nil)
	each(cl, "idle-dialog", nil)
	cl.eval(`document.getElementById("idle-dialog").close(), true`, nil)

	c.summary()
}

// TestCallScreensAccessible: a call incoming and active (mute on, the Send
// button never covered, at both sizes) and its record in the timeline,
// through axe-core in light and dark at 1280×800 and 390×844.
func TestCallScreensAccessible(t *testing.T) {
	rootBrowser(t)
	t.Parallel()
	w := newScreensWorld(t)
	n, client, convID := w.n, w.client, w.convID
	pro := w.pros[0]
	c := &screensCheck{t: t}
	each := c.each
	cl := newUser(t, "client")
	cl.open(n.URL)
	cl.login(client.Username)
	cl.openConversation(convID)
	// A call: incoming for the professional, active for both.
	pr := newUser(t, "professional")
	pr.open(n.URL)
	pr.login(pro.Username)
	pr.openConversation(convID)
	jsCall := `document.getElementById("call-panel").dataset.callState`
	cl.setLook(looks[0])
	cl.click("#call-video-button")
	pr.waitFor("the incoming call", jsCall+` === "incoming"`, waitLong, jsCall)
	each(pr, "call-incoming", nil)
	pr.setLook(looks[0])
	pr.click("#call-accept")
	cl.waitFor("the call active", jsCall+` === "active" && !document.getElementById("call-duration").hidden`, waitLong, jsCall)
	cl.waitFor("mute and camera", `!document.getElementById("call-mute").hidden && !document.getElementById("call-camera").hidden`, waitLong, "")
	cl.click("#call-mute")
	cl.waitFor("muted", `document.getElementById("call-mute").getAttribute("aria-pressed") === "true"`, waitLong, "")
	each(cl, "call-active", nil)
	// The composer and Send stay visible and usable during the call.
	for _, l := range []look{looks[0], looks[2]} {
		cl.setLook(l)
		var hidden string
		cl.eval(`(() => { const p = document.getElementById("call-panel").getBoundingClientRect(); const s = document.getElementById("send-button").getBoundingClientRect();
			const overlap = !(s.bottom <= p.top || s.top >= p.bottom || s.right <= p.left || s.left >= p.right);
			const onTop = document.elementFromPoint(s.left + s.width / 2, s.top + s.height / 2) === document.getElementById("send-button");
			return overlap || !onTop || s.bottom > innerHeight ? "covered" : "" })()`, &hidden)
		if hidden != "" {
			t.Errorf("%s: the Send button is covered during a call", l.name)
		}
	}
	cl.setLook(looks[0])
	time.Sleep(1100 * time.Millisecond) // a call of a second or more
	cl.click("#call-end")
	cl.waitFor("the call record", `document.querySelector('[data-testid="call-record"][data-outcome="completed"]')`, waitLong,
		`[...document.querySelectorAll('[data-testid="call-record"]')].map(e => e.dataset.outcome + " " + e.textContent)`)
	pr.waitFor("the call record", `document.querySelector('[data-testid="call-record"][data-outcome="completed"]')`, waitLong, "")
	cl.waitFor("the panel to go", jsCall+` === "none"`, waitLong, jsCall)
	each(cl, "chat-call-record", func() {
		cl.eval(`document.getElementById("message-scroller").scrollTop = 1e6, true`, nil)
	})

	c.summary()
}
