package store

import "testing"

// A head moved by a request counts only once the request succeeds and its
// transaction commits; a failed request or a rolled-back transaction leaves
// the head where it was.
func TestHeadCacheLayers(t *testing.T) {
	h := NewHeadCache()
	c := h.load("u_a", 5)
	check := func(step string, want int64) {
		t.Helper()
		if got := h.lookup("u_a").head(); got != want {
			t.Fatalf("%s: head %d, want %d", step, got, want)
		}
	}
	check("loaded", 5)

	h.move(c, 6)
	check("moved by the request", 6)
	h.EndRequest(false)
	check("request rolled back", 5)

	h.move(c, 6)
	h.EndRequest(true)
	h.move(c, 8)
	check("second request", 8)
	h.EndRequest(true)
	h.EndTransaction(false)
	check("transaction rolled back", 5)

	h.move(c, 6)
	h.EndRequest(true)
	h.move(c, 9)
	h.EndRequest(false)
	check("second request failed", 6)
	h.EndTransaction(true)
	check("committed", 6)

	// A transaction that ends with a request still running drops it.
	h.move(c, 7)
	h.EndTransaction(true)
	check("request left running", 6)
}
