package browsertest

// The harness: one headless Chromium for the whole test binary, a browser
// context (own cookies, storage, Web Locks) per user, tabs in it, polling
// waits on the page's DOM hooks (internal/web/static/app.js lists them), a
// small REST client, screenshots, and the built binary run as a subprocess.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

const (
	password = "password123"
	// waitLong bounds one wait for something the app does by itself (a
	// message to arrive, a status to change). Generous for -race on a busy
	// 2-core CI machine; a passing wait returns as soon as it holds.
	waitLong = 25 * time.Second
	// stepTimeout bounds one browser command (a click, a navigation).
	stepTimeout = 20 * time.Second
	viewportW   = 1280
	viewportH   = 800
)

func TestMain(m *testing.M) {
	code := m.Run()
	browser.stop()
	if binary.dir != "" {
		os.RemoveAll(binary.dir)
	}
	os.Exit(code)
}

// ---------------------------------------------------------------------------
// The browser

type browserState struct {
	mu      sync.Mutex
	ctx     context.Context // a chromedp context that owns the running browser
	cancel  func()
	dataDir string
	err     error
}

var browser browserState

func (b *browserState) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cancel != nil {
		b.cancel()
		b.cancel = nil
		b.ctx = nil
	}
	if b.dataDir != "" {
		os.RemoveAll(b.dataDir)
		b.dataDir = ""
	}
}

// chromiumPath finds the browser: $PARLEY_CHROMIUM, Debian's
// /usr/bin/chromium, or a chromium on PATH. "" when there is none.
func chromiumPath() string {
	if p := os.Getenv("PARLEY_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
		return ""
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// rootBrowser starts the shared browser on first use. Without Chromium the
// test is skipped, or failed when CI=true (CI must run these tests). Each
// test calls it first, so it skips before starting any server.
func rootBrowser(t *testing.T) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("browser tests do not run with -short")
	}
	path := chromiumPath()
	if path == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium not installed (CI=true, so this fails instead of skipping): apt-get install chromium")
		}
		t.Skip("chromium not installed: apt-get install chromium")
	}
	browser.mu.Lock()
	defer browser.mu.Unlock()
	if browser.ctx != nil {
		return browser.ctx
	}
	if browser.err != nil {
		t.Fatalf("browser did not start earlier: %v", browser.err)
	}
	dir, err := os.MkdirTemp("", "parley-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// Calls: grant the microphone/camera with fake devices instead of a
		// permission prompt nobody can answer.
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.UserDataDir(dir),
		chromedp.WindowSize(viewportW, viewportH),
	)
	allocCtx, allocCancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	// The first Do starts the browser and binds its life to ctx, so it gets
	// no timeout of its own; a watchdog bounds it instead.
	done := make(chan error, 1)
	go func() { done <- chromedp.Do(ctx) }()
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		err = errors.New("no answer from chromium within 60s")
	}
	if err != nil {
		cancel()
		allocCancel()
		os.RemoveAll(dir)
		browser.err = err
		t.Fatalf("start chromium (%s): %v", path, err)
	}
	browser.ctx = ctx
	browser.dataDir = dir
	browser.cancel = func() { cancel(); allocCancel() }
	return ctx
}

// ---------------------------------------------------------------------------
// Tabs

// tab is one page of a browser context.
type tab struct {
	t      *testing.T
	name   string
	ctx    context.Context
	cancel context.CancelFunc
	closed bool

	mu      sync.Mutex
	dialogs []string // JavaScript dialogs that opened (and were dismissed)
	logs    []string // uncaught exceptions and console errors, for failure reports
}

// inConversation is a browser of its own for the user, logged in through the
// form and showing the conversation.
func inConversation(t *testing.T, name, url, username, convID string) *tab {
	t.Helper()
	u := newUser(t, name)
	u.open(url)
	u.login(username)
	u.openConversation(convID)
	return u
}

// newUser opens a fresh browser context (its own cookie jar, storage, Web
// Locks and BroadcastChannels, like another browser profile) with one tab.
// Closing that tab (close or the end of the test) disposes of the context.
func newUser(t *testing.T, name string) *tab {
	t.Helper()
	return newTab(t, rootBrowser(t), name, chromedp.WithNewBrowserContext())
}

// openTab opens another tab in the browser context of owner (same cookies,
// same origin storage): a second tab of the same person.
func (owner *tab) openTab(name string) *tab {
	owner.t.Helper()
	return newTab(owner.t, owner.ctx, name)
}

func newTab(t *testing.T, parent context.Context, name string, opts ...chromedp.ContextOption) *tab {
	t.Helper()
	tb := &tab{t: t, name: name}
	opts = append(opts, chromedp.WithListener(tb.onEvent))
	ctx, cancel := chromedp.NewContext(parent, opts...)
	tb.ctx, tb.cancel = ctx, cancel
	// The first Do creates and attaches the target, whose event loop lives
	// as long as the context given here: the tab's own, without a timeout.
	done := make(chan error, 1)
	go func() {
		done <- chromedp.Do(ctx, chromedp.EmulateViewport(viewportW, viewportH))
	}()
	select {
	case err := <-done:
		if err != nil {
			cancel()
			t.Fatalf("%s: open tab: %v", name, err)
		}
	case <-time.After(stepTimeout):
		cancel()
		t.Fatalf("%s: open tab: no answer within %v", name, stepTimeout)
	}
	t.Cleanup(func() {
		// An uncaught exception (or unhandled rejection) in the app is a bug
		// even when the page went on working.
		for _, l := range tb.pageLogs() {
			if strings.Contains(l, " exception: ") {
				t.Errorf("%s page: %s", tb.name, l)
			}
		}
		if t.Failed() {
			tb.dump()
		} else if os.Getenv("PARLEY_BROWSER_LOG") != "" {
			for _, l := range tb.pageLogs() {
				t.Logf("%s page: %s", tb.name, l)
			}
		}
		tb.close()
	})
	return tb
}

// onEvent runs in the tab's event loop: it must return fast and send no
// command itself.
func (tb *tab) onEvent(ev any) {
	switch e := ev.(type) {
	case *page.EventJavascriptDialogOpening:
		tb.mu.Lock()
		tb.dialogs = append(tb.dialogs, fmt.Sprintf("%s: %q", e.Type, e.Message))
		tb.mu.Unlock()
		go func() {
			ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
			defer cancel()
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}()
	case *runtime.EventExceptionThrown:
		d := e.ExceptionDetails
		text := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			text += " " + d.Exception.Description
		}
		tb.log("exception: " + text)
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning {
			var parts []string
			for _, a := range e.Args {
				if a.Description != "" {
					parts = append(parts, a.Description)
				} else {
					parts = append(parts, string(a.Value))
				}
			}
			tb.log(fmt.Sprintf("console.%s: %s", e.Type, strings.Join(parts, " ")))
		}
	}
}

func (tb *tab) log(s string) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if len(tb.logs) < 200 {
		tb.logs = append(tb.logs, time.Now().Format("15:04:05.000")+" "+s)
	}
}

func (tb *tab) pageLogs() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.logs...)
}

func (tb *tab) dialogsOpened() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.dialogs...)
}

// dump reports what the page logged and saves a screenshot of it (for a
// failed test).
func (tb *tab) dump() {
	for _, l := range tb.pageLogs() {
		tb.t.Logf("%s page: %s", tb.name, l)
	}
	if tb.closed {
		return
	}
	if state, err := tb.evalErr(`JSON.stringify({screen: document.getElementById("app")?.dataset.screen, pane: document.getElementById("app")?.dataset.pane, conn: document.getElementById("connection-status")?.dataset.state, role: window.parleyApp && window.parleyApp.parley.role, last: window.parleyApp && window.parleyApp.parley.lastEventId, outbox: window.parleyApp && window.parleyApp.parley.outbox.map(i => i.status)})`); err == nil {
		tb.t.Logf("%s page state: %s", tb.name, state)
	}
	tb.screenshot("FAILED-" + tb.t.Name() + "-" + tb.name)
}

// close closes the tab (the whole browser context for a newUser tab).
func (tb *tab) close() {
	if tb.closed {
		return
	}
	tb.closed = true
	done := make(chan struct{})
	go func() { tb.cancel(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		tb.t.Logf("%s: closing the tab took over 15s", tb.name)
	}
}

// do runs browser actions with a timeout.
func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("%s: %s: %v", tb.name, what, err)
	}
}

// viewport resizes the page (e.g. to a phone's width, where the app shows
// one pane at a time).
func (tb *tab) viewport(w, h int64) {
	tb.t.Helper()
	tb.do("resize", chromedp.EmulateViewport(w, h))
}

func (tb *tab) navigate(url string) {
	tb.t.Helper()
	tb.do("navigate to "+url, chromedp.Navigate(url))
}

// click clicks the element. The app re-renders lists in place, so a node
// found by the query can be replaced before the click lands; that is tried
// again (a few times) rather than failed.
func (tb *tab) click(sel string) {
	tb.t.Helper()
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
		err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel)))
		cancel()
		if err == nil {
			return
		}
		if i < 3 && strings.Contains(err.Error(), "Could not find node") {
			continue
		}
		tb.t.Fatalf("%s: click %s: %v", tb.name, sel, err)
	}
}

// typeInto focuses the field and types text key by key (input events fire,
// as for a person typing).
func (tb *tab) typeInto(sel, text string) {
	tb.t.Helper()
	tb.do("type into "+sel, chromedp.SendKeys(chromedp.CSS(sel), text))
}

// evalErr evaluates a JavaScript expression and returns its JSON value.
func (tb *tab) evalErr(js string) (string, error) {
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](js, chromedp.EvalAwaitPromise))
	return string(raw), err
}

// eval evaluates js and decodes its value into out.
func (tb *tab) eval(js string, out any) {
	tb.t.Helper()
	raw, err := tb.evalErr(js)
	if err != nil {
		tb.t.Fatalf("%s: eval %s: %v", tb.name, js, err)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(raw), out); err != nil {
			tb.t.Fatalf("%s: eval %s: decode %s: %v", tb.name, js, raw, err)
		}
	}
}

// waitFor polls the expression until it is truthy. The failure names what
// was awaited and shows the value of show (a JS expression) at the end.
func (tb *tab) waitFor(what, cond string, timeout time.Duration, show string) {
	tb.t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		raw, err := tb.evalErr("(async () => !!(await (" + cond + ")))()")
		if err == nil && raw == "true" {
			return
		}
		lastErr = err
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	detail := ""
	if show != "" {
		if v, err := tb.evalErr(show); err == nil {
			detail = "; now: " + v
		}
	}
	if lastErr != nil {
		detail += fmt.Sprintf("; last error: %v", lastErr)
	}
	tb.t.Fatalf("%s: waited %v for %s (%s)%s", tb.name, timeout, what, cond, detail)
}

// screenshot writes a PNG of the whole page to the screenshot folder.
func (tb *tab) screenshot(name string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Logf("%s: screenshot %s: %v", tb.name, name, err)
		return
	}
	dir := screenshotDir(tb.t)
	if dir == "" {
		return
	}
	file := filepath.Join(dir, safeName(name)+".png")
	if err := os.WriteFile(file, buf, 0o644); err != nil {
		tb.t.Logf("screenshot %s: %v", file, err)
	}
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func safeName(s string) string { return strings.Trim(unsafeChars.ReplaceAllString(s, "_"), "_") }

// screenshotDir is $PARLEY_SCREENSHOTS or test-artifacts/screenshots at the
// repository root (found from the test's working directory). "" if it
// cannot be made; screenshots are a by-product, never a failure.
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("PARLEY_SCREENSHOTS")
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			t.Logf("screenshots: %v", err)
			return ""
		}
		dir = filepath.Join(root, "test-artifacts", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("screenshots: %v", err)
		return ""
	}
	return dir
}

// repoRoot walks up from the working directory to the go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// cookie returns the value of the named cookie the tab's browser context
// holds for url ("" if none). HttpOnly cookies are included.
func (tb *tab) cookie(url, name string) string {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
	if err != nil {
		tb.t.Fatalf("%s: get cookies: %v", tb.name, err)
	}
	for _, c := range res.Cookies {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// blockURLs makes the tab's requests to URLs matching the patterns fail as
// network errors (URLPattern syntax, e.g. "*://*:*/api/*/read"); no
// patterns unblocks.
func (tb *tab) blockURLs(patterns ...string) {
	tb.t.Helper()
	var ps []*network.BlockPattern
	for _, p := range patterns {
		ps = append(ps, &network.BlockPattern{URLPattern: p, Block: true})
	}
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	if _, err := chromedp.Call(ctx, network.SetBlockedURLs, network.SetBlockedURLsParams{URLPatterns: ps}); err != nil {
		tb.t.Fatalf("%s: block URLs: %v", tb.name, err)
	}
}

// ---------------------------------------------------------------------------
// The app, through its DOM hooks

// q quotes a string for a CSS attribute selector or a JS string literal.
func q(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

const jsConnState = `document.getElementById("connection-status").dataset.state`

// open loads the app and waits until it has decided between the login
// screen and the main screen.
func (tb *tab) open(base string) {
	tb.t.Helper()
	tb.navigate(base + "/")
	tb.waitFor("the app to boot", `["auth","main"].includes(document.getElementById("app")?.dataset.screen)`, waitLong,
		`document.getElementById("app")?.dataset.screen`)
}

// waitMain waits for the main screen with a live connection.
func (tb *tab) waitMain() {
	tb.t.Helper()
	tb.waitFor("the main screen", `document.getElementById("app").dataset.screen === "main"`, waitLong,
		`[document.getElementById("app").dataset.screen, document.getElementById("auth-error").textContent]`)
	tb.waitConnected()
}

func (tb *tab) waitConnected() {
	tb.t.Helper()
	tb.waitFor("the connection", jsConnState+` === "connected"`, waitLong, jsConnState)
}

// login logs in through the login form (the app must show it).
func (tb *tab) login(username string) {
	tb.t.Helper()
	tb.waitFor("the login form", `!document.getElementById("login-form").hidden && document.getElementById("app").dataset.screen === "auth"`, waitLong, "")
	tb.typeInto("#login-username", username)
	tb.typeInto("#login-password", password)
	tb.click("#login-submit")
	tb.waitMain()
}

// register creates an account through the registration form.
func (tb *tab) register(username, displayName, role string) {
	tb.t.Helper()
	tb.waitFor("the login form", `document.getElementById("app").dataset.screen === "auth"`, waitLong, "")
	tb.click(`[data-testid="show-register"]`)
	tb.typeInto("#register-username", username)
	tb.typeInto("#register-display-name", displayName)
	tb.typeInto("#register-password", password)
	tb.click(`[data-testid="register-role-` + role + `"]`)
	tb.click("#register-submit")
	tb.waitMain()
}

// openConversation clicks the conversation in the list and waits for its
// messages to be shown.
func (tb *tab) openConversation(id string) {
	tb.t.Helper()
	sel := `[data-testid="conversation-item"][data-conversation-id=` + q(id) + `]`
	tb.waitFor("conversation "+id+" in the list", `document.querySelector(`+q(sel)+`)`, waitLong, "")
	tb.click(sel)
	tb.waitFor("the chat view of "+id,
		`(() => { const v = document.getElementById("chat-view"); const st = window.parleyApp.state.messages.get(`+q(id)+`);
		  return !v.hidden && v.dataset.conversationId === `+q(id)+` && st && !st.loading })()`, waitLong, "")
}

// send types a message in the open conversation and presses Send.
func (tb *tab) send(body string) {
	tb.t.Helper()
	tb.typeInto("#message-input", body)
	tb.click("#send-button")
}

// msgView is one [data-testid=message] item as the page shows it.
type msgView struct {
	Seq      int    `json:"seq"` // 0 while pending
	Body     string `json:"body"`
	Status   string `json:"status"`
	Own      bool   `json:"own"`
	ClientID string `json:"client_id"`
	Mark     string `json:"mark"` // text of the status mark: ✓, ✓✓, …
}

const jsMessages = `[...document.querySelectorAll('#message-list [data-testid="message"]')].map(li => ({
	seq: li.dataset.seq ? Number(li.dataset.seq) : 0,
	body: li.querySelector('[data-testid="message-body"]')?.textContent ?? "",
	status: li.dataset.status,
	own: li.dataset.own === "true",
	client_id: li.dataset.clientId || "",
	mark: li.querySelector('[data-testid="message-status"]')?.textContent ?? "",
}))`

func (tb *tab) messages() []msgView {
	tb.t.Helper()
	var out []msgView
	tb.eval(jsMessages, &out)
	return out
}

// jsMsg selects the message item with that body (the first one).
func jsMsg(body string) string {
	return `[...document.querySelectorAll('#message-list [data-testid="message"]')].find(li => li.querySelector('[data-testid="message-body"]')?.textContent === ` + q(body) + `)`
}

// waitMessage waits until a message with that body is shown with a seq (not
// pending) and, when status is not "", that data-status.
func (tb *tab) waitMessage(body, status string) {
	tb.t.Helper()
	cond := `(m => m && m.dataset.seq && (` + q(status) + ` === "" || m.dataset.status === ` + q(status) + `))(` + jsMsg(body) + `)`
	tb.waitFor(fmt.Sprintf("message %q (status %q)", body, status), cond, waitLong, jsMessages)
}

// assertMessagesOnce checks that the open conversation shows exactly the
// bodies in want, in that order, each once, with seqs 1..n each once and
// nothing pending.
func (tb *tab) assertMessagesOnce(want []string) {
	tb.t.Helper()
	got := tb.messages()
	seqs := map[int]int{}
	var bodies []string
	for _, m := range got {
		seqs[m.Seq]++
		bodies = append(bodies, m.Body)
	}
	ok := len(got) == len(want)
	for i := 1; ok && i <= len(want); i++ {
		ok = seqs[i] == 1
	}
	for i := 0; ok && i < len(want); i++ {
		ok = got[i].Body == want[i] && got[i].Seq == i+1
	}
	if !ok {
		tb.t.Fatalf("%s: messages shown (seq → count %v):\n%s\nwant each once, in order:\n%q", tb.name, seqs, fmtMsgs(got), want)
	}
}

func fmtMsgs(ms []msgView) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "  seq=%d own=%v status=%s mark=%q body=%q\n", m.Seq, m.Own, m.Status, m.Mark, m.Body)
	}
	return b.String()
}

// ---------------------------------------------------------------------------
// REST

var nameSeq atomic.Int64

// uniqueName makes a valid, unique username.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s%d%d", prefix, nameSeq.Add(1), time.Now().UnixNano()%1e7)
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

type account struct {
	ID, Username, Token string
}

type apiResult struct {
	Status int
	Body   []byte
}

// call sends a JSON request to base+path with bearer token (or cookie
// "name=value" when token starts with "cookie:") and decodes a 2xx answer.
func call(t *testing.T, base, method, path, token string, body, out any) apiResult {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c, ok := strings.CutPrefix(token, "cookie:"); ok {
		req.Header.Set("Cookie", c)
	} else if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, path, err)
	}
	if out != nil && res.StatusCode/100 == 2 && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	return apiResult{Status: res.StatusCode, Body: b}
}

func register(t *testing.T, base, prefix, role string) account {
	t.Helper()
	name := uniqueName(prefix)
	var out struct {
		User  struct{ ID string } `json:"user"`
		Token string              `json:"token"`
	}
	r := call(t, base, "POST", "/api/auth/register", "", map[string]any{
		"username": name, "password": password, "role": role, "display_name": strings.ToUpper(prefix[:1]) + prefix[1:] + " " + name[len(prefix):],
	}, &out)
	if r.Status != http.StatusCreated {
		t.Fatalf("register %s: %d %s", name, r.Status, r.Body)
	}
	return account{ID: out.User.ID, Username: name, Token: out.Token}
}

type message struct {
	ID       string `json:"id"`
	Seq      int    `json:"seq"`
	Body     string `json:"body"`
	SenderID string `json:"sender_id"`
	ClientID string `json:"client_id"`
}

// createConversation opens a conversation from client to pro with a first message.
func createConversation(t *testing.T, base string, client, pro account, subject, first string) string {
	t.Helper()
	var conv struct{ ID string }
	r := call(t, base, "POST", "/api/conversations", client.Token, map[string]any{
		"professional_id": pro.ID, "subject": subject, "message": map[string]any{"body": first},
	}, &conv)
	if r.Status != http.StatusCreated {
		t.Fatalf("create conversation: %d %s", r.Status, r.Body)
	}
	return conv.ID
}

func postMessage(t *testing.T, base string, from account, convID, body string) message {
	t.Helper()
	var m message
	r := call(t, base, "POST", "/api/conversations/"+convID+"/messages", from.Token, map[string]any{"body": body}, &m)
	if r.Status != http.StatusCreated {
		t.Fatalf("post message: %d %s", r.Status, r.Body)
	}
	return m
}

// history returns all messages of a conversation over REST.
func history(t *testing.T, base string, as account, convID string) []message {
	t.Helper()
	var out struct {
		Messages []message `json:"messages"`
	}
	r := call(t, base, "GET", "/api/conversations/"+convID+"/messages?limit=200", as.Token, nil, &out)
	if r.Status != http.StatusOK {
		t.Fatalf("history: %d %s", r.Status, r.Body)
	}
	return out.Messages
}

// streamsOpen reads the parley_streams_open gauge from /metrics.
func streamsOpen(t *testing.T, base string) int {
	t.Helper()
	r := call(t, base, "GET", "/metrics", "", nil, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("metrics: %d", r.Status)
	}
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "parley_streams_open "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			return int(v)
		}
	}
	t.Fatalf("no parley_streams_open in /metrics")
	return 0
}

// ---------------------------------------------------------------------------
// The binary as a subprocess (for a real kill -9)

var binary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// parleyBinary builds ./cmd/parley once per test binary.
func parleyBinary(t *testing.T) string {
	t.Helper()
	binary.once.Do(func() {
		root, err := repoRoot()
		if err != nil {
			binary.err = err
			return
		}
		dir, err := os.MkdirTemp("", "parley-bin-")
		if err != nil {
			binary.err = err
			return
		}
		binary.dir = dir
		binary.path = filepath.Join(dir, "parley")
		gobin, err := exec.LookPath("go")
		if err != nil {
			gobin = filepath.Join(goruntime.GOROOT(), "bin", "go")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, gobin, "build", "-o", binary.path, "./cmd/parley")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binary.err = fmt.Errorf("go build ./cmd/parley: %v\n%s", err, out)
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

// procServer is a parley process on a fixed port and data dir, so that it
// can be killed and started again in the same place.
type procServer struct {
	t       *testing.T
	bin     string
	addr    string
	URL     string
	dataDir string
	args    []string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

func startProc(t *testing.T, extraArgs ...string) *procServer {
	t.Helper()
	s := &procServer{t: t, bin: parleyBinary(t), dataDir: t.TempDir(), args: extraArgs}
	s.logPath = filepath.Join(t.TempDir(), "parley.log")
	s.addr = freeAddr(t)
	s.URL = "http://" + s.addr
	s.start()
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(s.logPath); err == nil {
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				if len(lines) > 40 {
					lines = lines[len(lines)-40:]
				}
				t.Logf("parley log (last %d lines):\n%s", len(lines), strings.Join(lines, "\n"))
			}
		}
		s.stop()
	})
	return s
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs the process and waits until /readyz answers 200.
func (s *procServer) start() {
	s.t.Helper()
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logf.Close()
	args := append([]string{"serve",
		"--addr", s.addr,
		"--data-dir", s.dataDir,
		"--jwt-secret", "browser-test-secret-browser-test-secret",
		"--password-cost", "4",
		"--rate-limit", "0",
		"--log-level", "info",
	}, s.args...)
	cmd := exec.Command(s.bin, args...)
	// Only the flags configure it: no PARLEY_* from the environment.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PARLEY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start parley: %v", err)
	}
	s.cmd = cmd
	exited := make(chan struct{})
	s.exited = exited
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(s.URL + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(s.logPath)
			s.t.Fatalf("parley exited at start: %s", b)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("parley not ready on %s within 30s: %v", s.addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL: no graceful shutdown, no flush.
func (s *procServer) kill() {
	s.t.Helper()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.t.Fatalf("parley did not die within 10s of SIGKILL")
	}
	s.cmd = nil
}

// stop sends SIGTERM (graceful shutdown) and waits for the exit; after 20 s
// it kills the process and fails the test.
func (s *procServer) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		s.t.Errorf("parley did not exit within 20s of SIGTERM")
	}
	s.cmd = nil
}
