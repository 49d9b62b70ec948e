package auth

import (
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// TestDummyHashCost: a login for a user that does not exist compares the
// password against a dummy hash so that it takes as long as a wrong
// password. That only holds if the dummy has the cost real hashes get; the
// time itself is too noisy on a busy machine to test, so the cost is.
func TestDummyHashCost(t *testing.T) {
	for _, cost := range []int{bcrypt.MinCost, 5, 6} {
		s := New(nil, []byte("secret"), 0, time.Hour, cost)
		got, err := bcrypt.Cost(s.dummy())
		if err != nil || got != cost {
			t.Fatalf("dummy hash of a service with cost %d has cost %d (%v)", cost, got, err)
		}
		if bcrypt.CompareHashAndPassword(s.dummy(), []byte("password123")) == nil {
			t.Fatalf("the dummy hash matches a password")
		}
	}
}
