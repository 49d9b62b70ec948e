// Package browsertest drives the web app (internal/web) in a real headless
// Chromium through chromedp, against real Parley nodes: in-process ones from
// servertest, and the built binary as a subprocess where a test kills and
// restarts the server.
//
// The tests are in the _test.go files; this package has no other code. They
// run with the normal `go test ./...`. Chromium is found at $PARLEY_CHROMIUM,
// else /usr/bin/chromium (or chromium / chromium-browser on PATH); without
// it the tests are skipped, except when CI=true, where they fail.
// Screenshots of the main screens go to test-artifacts/screenshots/ at the
// repository root ($PARLEY_SCREENSHOTS to change it); they are git-ignored.
package browsertest
