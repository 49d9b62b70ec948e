package browsertest

// More of the harness, for the app's screens: themes and sizes through the
// DevTools protocol, axe-core injected into the page, permissions, a hidden
// tab (its window minimised), service worker notifications.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// Phone and desktop sizes the screens are checked and photographed at.
const (
	phoneW, phoneH     = 390, 844
	desktopW, desktopH = 1280, 800
)

// look is one size and theme.
type look struct {
	name  string // "desktop-light", "phone-dark"…
	w, h  int64
	theme string // "light" | "dark"
}

var looks = []look{
	{"desktop-light", desktopW, desktopH, "light"},
	{"desktop-dark", desktopW, desktopH, "dark"},
	{"phone-light", phoneW, phoneH, "light"},
	{"phone-dark", phoneW, phoneH, "dark"},
}

// setLook resizes the page and emulates prefers-color-scheme.
func (tb *tab) setLook(l look) {
	tb.t.Helper()
	tb.viewport(l.w, l.h)
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: l.theme}},
	})
	if err != nil {
		tb.t.Fatalf("%s: emulate %s: %v", tb.name, l.theme, err)
	}
}

var axeSource = sync.OnceValues(func() (string, error) {
	b, err := os.ReadFile(filepath.Join("testdata", "axe", "axe.min.js"))
	return string(b), err
})

// axeViolation is one failed axe rule on a screen.
type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// axe runs axe-core on the page (injected once per page) and returns the
// serious and critical violations, and the count of all.
func (tb *tab) axe() (bad, others []axeViolation) {
	tb.t.Helper()
	src, err := axeSource()
	if err != nil {
		tb.t.Fatalf("axe-core: %v (run internal/browsertest/testdata/axe/fetch.sh)", err)
	}
	var has bool
	tb.eval(`typeof window.axe === "object"`, &has)
	if !has {
		if _, err := tb.evalErr(src + "\n;true"); err != nil {
			tb.t.Fatalf("%s: inject axe-core: %v", tb.name, err)
		}
	}
	var res []axeViolation
	// WCAG 2.0/2.1/2.2 A and AA rules and axe's best practices.
	tb.eval(`axe.run(document, {resultTypes: ["violations"], runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]}})
		.then(r => r.violations.map(v => ({id: v.id, impact: v.impact || "", help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ") + " — " + (n.failureSummary || "").replace(/\s+/g, " ").slice(0, 200))})))`, &res)
	for _, v := range res {
		if v.Impact == "serious" || v.Impact == "critical" {
			bad = append(bad, v)
		} else {
			others = append(others, v)
		}
	}
	return bad, others
}

// axeReport collects each screen's result for the summary at the end.
type axeReport struct {
	mu   sync.Mutex
	rows []string
	bad  int
}

func (r *axeReport) add(screen, lookName string, bad, others []axeViolation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := func(vs []axeViolation) string {
		var s []string
		for _, v := range vs {
			s = append(s, v.Impact+":"+v.ID)
		}
		return strings.Join(s, ", ")
	}
	r.bad += len(bad)
	status := "ok"
	if len(bad) > 0 {
		status = "FAIL " + ids(bad)
	}
	if len(others) > 0 {
		status += " (" + ids(others) + ")"
	}
	r.rows = append(r.rows, fmt.Sprintf("%-17s %-13s serious/critical=%d minor/moderate=%d %s", screen, lookName, len(bad), len(others), status))
}

func (r *axeReport) summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	rows := append([]string(nil), r.rows...)
	sort.Strings(rows)
	return strings.Join(rows, "\n")
}

// check runs axe on the screen as it is, fails the test on a serious or
// critical violation, and takes its screenshot.
func (r *axeReport) check(t *testing.T, tb *tab, screen string, l look) {
	t.Helper()
	bad, others := tb.axe()
	r.add(screen, l.name, bad, others)
	for _, v := range bad {
		t.Errorf("axe %s (%s) on %s, %s: %s\n  %s", v.ID, v.Impact, screen, l.name, v.Help, strings.Join(v.Nodes, "\n  "))
	}
	tb.screenshot(screen + "-" + l.name)
}

// grant allows a permission (e.g. "notifications") for the origin in the
// tab's browser context, as a person answering the browser's prompt would:
// the DevTools protocol's Browser.setPermission (this protocol version has
// no Browser.grantPermissions any more).
func (tb *tab) grant(origin string, names ...string) {
	tb.t.Helper()
	c := chromedp.FromContext(tb.ctx)
	if c == nil {
		tb.t.Fatalf("%s: no chromedp context", tb.name)
	}
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	for _, name := range names {
		_, err := chromedp.CallBrowser(ctx, cdpbrowser.SetPermission, cdpbrowser.SetPermissionParams{
			Permission:       &cdpbrowser.PermissionDescriptor{Name: name},
			Setting:          cdpbrowser.PermissionSettingGranted,
			Origin:           origin,
			BrowserContextID: c.BrowserContextID,
		})
		if err != nil {
			tb.t.Fatalf("%s: allow %s: %v", tb.name, name, err)
		}
	}
}

// setHidden minimises (or restores) the tab's window: the page's
// visibilityState becomes "hidden", as for a tab in the background.
func (tb *tab) setHidden(hidden bool) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	w, err := chromedp.Call(ctx, cdpbrowser.GetWindowForTarget, cdpbrowser.GetWindowForTargetParams{})
	if err != nil {
		tb.t.Fatalf("%s: window: %v", tb.name, err)
	}
	state := cdpbrowser.WindowStateNormal
	if hidden {
		state = cdpbrowser.WindowStateMinimized
	}
	if _, err := chromedp.Call(ctx, cdpbrowser.SetWindowBounds, cdpbrowser.SetWindowBoundsParams{WindowID: w.WindowID, Bounds: &cdpbrowser.Bounds{WindowState: state}}); err != nil {
		tb.t.Fatalf("%s: minimise: %v", tb.name, err)
	}
	want := "visible"
	if hidden {
		want = "hidden"
	}
	tb.waitFor("visibilityState "+want, `document.visibilityState === `+q(want), waitLong, `document.visibilityState`)
}

// swNotification is one notification the page asked the browser to show.
type swNotification struct {
	Title string         `json:"title"`
	Body  string         `json:"body"`
	Tag   string         `json:"tag"`
	Data  map[string]any `json:"data"`
	Via   string         `json:"via"` // "service-worker" or "page"
}

// recordNotifications wraps ServiceWorkerRegistration.showNotification and
// the Notification constructor in the page so that every notification the
// app shows is also noted in window.__shown (the real call still happens).
// ServiceWorkerRegistration.getNotifications would be the natural witness,
// but headless Chromium sometimes leaves a notification it has shown out of
// that list.
func (tb *tab) recordNotifications() {
	tb.t.Helper()
	tb.eval(`(() => {
		if (window.__shown) return true;
		window.__shown = [];
		const note = (via, title, o) => window.__shown.push({title, body: (o && o.body) || "", tag: (o && o.tag) || "", data: (o && o.data) || {}, via});
		const show = ServiceWorkerRegistration.prototype.showNotification;
		ServiceWorkerRegistration.prototype.showNotification = function (title, o) { note("service-worker", title, o); return show.call(this, title, o); };
		const N = window.Notification;
		window.Notification = class extends N { constructor(title, o) { super(title, o); note("page", title, o); } };
		return true;
	})()`, nil)
}

// notifications lists what recordNotifications noted.
func (tb *tab) notifications() []swNotification {
	tb.t.Helper()
	var out []swNotification
	tb.eval(`window.__shown || []`, &out)
	return out
}

// jsonString renders v for a failure message.
func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
