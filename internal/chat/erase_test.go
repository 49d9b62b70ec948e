package chat_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/store"
	"github.com/parley-chat/parley/internal/store/sqlite"
)

// TestEraseFinishesWhatACrashCut: an erasure cut short after its first
// step (the account marked erased, its sessions revoked; its messages
// still whole) refuses the account's tokens and is finished by erasing
// again; erasing a finished one changes nothing and fails nothing.
func TestEraseFinishesWhatACrashCut(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "parley.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	svc := chat.New(db, nil, nil, chat.Options{}, nil)
	mk := func(ext, role string) *parley.User {
		u := &parley.User{ID: parley.NewID("u"), ExternalID: parley.Ptr(ext), DisplayName: ext, Role: role, CreatedAt: store.Now()}
		if err := db.Update(ctx, func(tx *store.Tx) error { return tx.CreateUser(u) }); err != nil {
			t.Fatal(err)
		}
		return u
	}
	gone, pro := mk("gone", parley.RoleClient), mk("pro", parley.RoleProfessional)
	conv, _, err := svc.Open(ctx, gone, chat.Opening{ProfessionalExternalID: "pro", Message: &chat.Message{Body: "secret one"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Send(ctx, gone.ID, conv.ID, chat.Message{Body: "secret two"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Send(ctx, pro.ID, conv.ID, chat.Message{Body: "reply"}); err != nil {
		t.Fatal(err)
	}
	// The first step only, as a crash right after it would leave things.
	if err := db.Update(ctx, func(tx *store.Tx) error {
		if err := tx.MarkErased(gone.ID, store.Now()); err != nil {
			return err
		}
		_, err := tx.RevokeUserSessions(gone.ID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// Meanwhile the account gets no session from a new token of its sub,
	// so nothing it sends can escape the tombstones still to come.
	secret := []byte("erase-test-app-secret-erase-test-app-secret-erase-test-app-0123")
	a := auth.New(db, []byte("erase-test-parley-secret-erase-test"), time.Hour, time.Hour, 4)
	a.App = &auth.AppTokens{Secret: secret, Leeway: time.Minute}
	tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "gone", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
	if _, err := a.Authenticate(ctx, tok, true); parley.ErrorCode(err) != parley.EUnauthorized {
		t.Fatalf("a token of the account being erased: %v, want unauthorized", err)
	}
	for range 2 {
		if _, err := svc.Erase(ctx, gone.ID); err != nil {
			t.Fatalf("erase: %v", err)
		}
	}
	err = db.View(ctx, func(tx *store.Tx) error {
		u, err := tx.UserByID(gone.ID)
		if err != nil {
			return err
		}
		if !u.Erased || u.ExternalID != nil || u.Username != nil || u.DisplayName != store.ErasedName {
			t.Errorf("erased account = %+v", u)
		}
		if _, err := tx.UserByExternalID("gone"); !errors.Is(err, parley.NotFound) {
			t.Errorf("the external id still finds someone: %v", err)
		}
		if _, _, err := tx.LogBounds(gone.ID); !errors.Is(err, parley.NotFound) {
			t.Errorf("the erased user's log is still there: %v", err)
		}
		msgs, _, err := tx.Messages(conv.ID, 0, 0, false, 10)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.SentBy(gone.ID) != m.Deleted || (m.Deleted && m.Body != "") {
				t.Errorf("message %d after erasure: %+v", m.Seq, m)
			}
		}
		if len(msgs) != 3 {
			t.Errorf("%d messages, want 3", len(msgs))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
