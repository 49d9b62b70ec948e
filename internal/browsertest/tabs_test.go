package browsertest

import (
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/servertest"
)

// TestTabsShareOneStream: three tabs of one user in one browser share a
// single event stream (the parley_streams_open gauge, on a node of their
// own, stays at 1); the leader relays every event to the followers, so a
// message from the peer appears once in every tab, and a message sent from
// a follower tab too. When the leader tab is closed another tab takes over:
// the gauge comes back to 1 and the remaining tabs keep receiving, once.
// Logging out in one tab logs out the others and closes the stream.
func TestTabsShareOneStream(t *testing.T) {
	rootBrowser(t)
	n := servertest.Start(t)
	client := register(t, n.URL, "client", "client")
	pro := register(t, n.URL, "pro", "professional")
	first := "Opening message."
	convID := createConversation(t, n.URL, client, pro, "Tabs", first)

	// The first tab of the browser context stays on about:blank, so that
	// closing any of the app's tabs leaves the context (and its cookie) alive.
	profile := newUser(t, "client-profile")
	var tabs []*tab
	for i := range 3 {
		tb := profile.openTab(fmt.Sprintf("tab%d", i+1))
		tb.open(n.URL)
		if i == 0 {
			tb.login(client.Username)
		} else {
			tb.waitMain() // the session cookie is shared
		}
		tb.openConversation(convID)
		tb.countEvents()
		tabs = append(tabs, tb)
	}
	leader := waitOneLeader(t, tabs)
	waitGauge(t, n.URL, 1)
	for range 5 { // and it stays there
		if got := streamsOpen(t, n.URL); got != 1 {
			t.Fatalf("parley_streams_open = %d with three tabs open, want 1", got)
		}
		time.Sleep(100 * time.Millisecond)
	}

	m1 := "From the professional, to every tab."
	postMessage(t, n.URL, pro, convID, m1)
	for _, tb := range tabs {
		tb.waitMessage(m1, "received")
	}
	follower := tabs[(leader+1)%3]
	m2 := "Sent from a follower tab."
	follower.send(m2)
	for _, tb := range tabs {
		tb.waitMessage(m2, "")
		tb.assertMessagesOnce([]string{first, m1, m2})
		tb.assertEventsOnce(2)
	}
	tabs[leader].screenshot("19-tab-leader")

	// Close the leader: another tab takes the lock and opens the stream. A
	// message posted during the handover reaches the new leader by replay.
	t.Logf("closing %s, the leader", tabs[leader].name)
	tabs[leader].close()
	m3 := "During the handover."
	postMessage(t, n.URL, pro, convID, m3)
	rest := append(append([]*tab{}, tabs[:leader]...), tabs[leader+1:]...)
	waitOneLeader(t, rest)
	for _, tb := range rest {
		tb.waitConnected()
	}
	waitGauge(t, n.URL, 1)

	m4 := "After the leader tab closed."
	postMessage(t, n.URL, pro, convID, m4)
	for _, tb := range rest {
		tb.waitMessage(m3, "received")
		tb.waitMessage(m4, "received")
		tb.assertMessagesOnce([]string{first, m1, m2, m3, m4})
		tb.assertEventsOnce(4)
	}
	if got := streamsOpen(t, n.URL); got != 1 {
		t.Fatalf("parley_streams_open = %d with two tabs left, want 1", got)
	}

	// Logging out in one tab logs out the others at once, and the stream goes.
	rest[0].click("#logout-button")
	for _, tb := range rest {
		tb.waitFor("the login screen", `document.getElementById("app").dataset.screen === "auth"`, waitLong, "")
	}
	waitGauge(t, n.URL, 0)
}

// waitOneLeader waits until exactly one tab leads and the others follow,
// and returns the leader's index.
func waitOneLeader(t *testing.T, tabs []*tab) int {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		leader, followers := -1, 0
		var roles []string
		for i, tb := range tabs {
			var role string
			tb.eval(`window.parleyApp.parley.role`, &role)
			roles = append(roles, tb.name+"="+role)
			switch role {
			case "leader":
				if leader >= 0 {
					leader = -2
				} else if leader == -1 {
					leader = i
				}
			case "follower":
				followers++
			}
		}
		if leader >= 0 && followers == len(tabs)-1 {
			return leader
		}
		if time.Now().After(deadline) {
			t.Fatalf("want one leader and %d followers, roles: %v", len(tabs)-1, roles)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitGauge(t *testing.T, base string, want int) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		got := streamsOpen(t, base)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("parley_streams_open = %d, want %d", got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
