package server

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"strings"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/store"
)

// DemoAccount is one account SeedDemo made, with the password it was given.
type DemoAccount struct {
	Role        string
	Username    string
	Password    string
	DisplayName string
}

// Demo is what SeedDemo made: a professional, a client, and a conversation
// between them.
type Demo struct {
	Professional   DemoAccount
	Client         DemoAccount
	ConversationID string
}

// ErrNotEmpty is SeedDemo's refusal: the database already has users, and a
// demo must not mix its accounts (with passwords printed on a terminal)
// into them.
var ErrNotEmpty = fmt.Errorf("--demo needs an empty database, and this one has users already: " +
	"give a new --data-dir (or PARLEY_DATABASE_URL), or start without --demo")

// SeedDemo fills an empty database with a professional and a client, each
// with a generated password, and a conversation the client opened, which
// the professional has read and answered. Call it before Start. On a
// database that has any user it changes nothing and returns ErrNotEmpty.
func (s *Server) SeedDemo(ctx context.Context) (*Demo, error) {
	d := &Demo{
		Professional: DemoAccount{Role: parley.RoleProfessional, Username: "demo-pro", DisplayName: "Dana Reyes", Password: demoPassword()},
		Client:       DemoAccount{Role: parley.RoleClient, Username: "demo-client", DisplayName: "Sam Carter", Password: demoPassword()},
	}
	users := make([]*parley.User, 2)
	for i, a := range []DemoAccount{d.Professional, d.Client} {
		u, err := s.auth.NewUser(auth.Registration{Username: a.Username, Password: a.Password, DisplayName: a.DisplayName, Role: a.Role})
		if err != nil {
			return nil, fmt.Errorf("demo account %s: %w", a.Username, err)
		}
		users[i] = u
	}
	pro, client := users[0], users[1]
	// Checked and created in one transaction, so a demo never lands in a
	// database that gained a user meanwhile (another node's registration).
	err := s.store.Update(ctx, func(tx *store.Tx) error {
		if has, err := tx.HasUsers(); err != nil || has {
			return cmp.Or(err, ErrNotEmpty)
		}
		for _, u := range users {
			if err := tx.CreateUser(u); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The conversation goes through the chat service like any other, so
	// both users' event logs hold it: the first stream replays it.
	conv, _, err := s.chat.Open(ctx, client, chat.Opening{
		ProfessionalID: pro.ID,
		Subject:        "First consultation",
		Message:        &chat.Message{Body: "Hello! I would like to book a first consultation. Are you free this week?"},
	})
	if err != nil {
		return nil, fmt.Errorf("demo conversation: %w", err)
	}
	d.ConversationID = conv.ID
	if err := s.chat.MarkRead(ctx, pro.ID, conv.ID, 1); err != nil {
		return nil, fmt.Errorf("demo read receipt: %w", err)
	}
	_, _, err = s.chat.Send(ctx, pro.ID, conv.ID, chat.Message{
		Body: "Hi Sam, welcome! Thursday at 10:00 works for me. Shall we talk by video? The camera button is at the top right.",
	})
	if err != nil {
		return nil, fmt.Errorf("demo reply: %w", err)
	}
	return d, nil
}

// WriteTo prints how to sign in to the demo at url.
func (d *Demo) WriteTo(w io.Writer, url string) {
	fmt.Fprintf(w, "\nParley demo: two accounts and a conversation between them.\n"+
		"These passwords are shown only now.\n\n")
	for _, a := range []DemoAccount{d.Professional, d.Client} {
		fmt.Fprintf(w, "  %-13s username: %-12s password: %s   (%s)\n", a.Role, a.Username, a.Password, a.DisplayName)
	}
	fmt.Fprintf(w, "\nOpen %s and sign in as the client; sign in as the professional\n"+
		"in a private window or another browser, and chat between the two.\n\n", url)
}

// demoPassword is 12 random characters in groups of four, from an alphabet
// without look-alikes (0/o, 1/l), easy to type from a terminal: about 59
// bits.
func demoPassword() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
	b := make([]byte, 12)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	var sb strings.Builder
	for i, c := range b {
		if i > 0 && i%4 == 0 {
			sb.WriteByte('-')
		}
		sb.WriteByte(alphabet[int(c)%len(alphabet)])
	}
	return sb.String()
}
