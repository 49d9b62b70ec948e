package client_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/internal/servertest"
)

// TestAgainstServer runs the client against a real node: accounts, publish,
// the stream with resume, poll, the subscriber, and logout.
func TestAgainstServer(t *testing.T) {
	n := servertest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := fmt.Sprintf("alice_%d", time.Now().UnixNano()%1e9)

	c := client.New(n.URL)
	a, err := c.Register(ctx, client.Register{Username: name, Password: "password123", DisplayName: "Alice", Role: client.RoleClient})
	if err != nil {
		t.Fatal(err)
	}
	if a.User.Username != name || a.User.Role != client.RoleClient || a.Token == "" || a.ExpiresAt.Before(time.Now()) {
		t.Errorf("register answer %+v", a)
	}
	if _, err := client.New(n.URL).Register(ctx, client.Register{Username: name, Password: "password123", Role: client.RoleClient}); client.StatusCode(err) != http.StatusConflict {
		t.Errorf("second register: %v, want 409", err)
	}
	if _, err := client.New(n.URL).Login(ctx, name, "wrong-password"); client.StatusCode(err) != http.StatusUnauthorized || client.ErrorCode(err) != "unauthorized" {
		t.Errorf("bad login: %v, want 401 unauthorized", err)
	}
	me, err := c.Me(ctx)
	if err != nil || me.ID != a.User.ID || me.DisplayName != "Alice" {
		t.Fatalf("Me: %+v, %v", me, err)
	}
	if u, err := c.User(ctx, a.User.ID); err != nil || u.Username != name {
		t.Errorf("User: %+v, %v", u, err)
	}
	if cfg, err := c.Config(ctx); err != nil || cfg["heartbeat_ms"] == nil {
		t.Errorf("Config: %v, %v", cfg, err)
	}

	backend := client.New(n.URL, client.WithAPIKey(servertest.APIKey))
	if _, err := c.Publish(ctx, []string{me.ID}, "app.x", nil); client.StatusCode(err) != http.StatusUnauthorized {
		t.Errorf("publish without the API key: %v, want 401", err)
	}
	if _, err := backend.Publish(ctx, []string{"no-such-user"}, "app.x", nil); client.StatusCode(err) != http.StatusNotFound {
		t.Errorf("publish to an unknown user: %v, want 404", err)
	}

	st, err := c.Stream(ctx, client.StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ev, err := st.Next()
	var ready client.Ready
	if err != nil || ev.Type != client.EventReady || ev.HasID || ev.Decode(&ready) != nil || ready.UserID != me.ID || ready.LastID != 0 {
		t.Fatalf("first event %+v (%v), ready %+v", ev, err, ready)
	}
	for i := 1; i <= 2; i++ {
		ids, err := backend.Publish(ctx, []string{me.ID}, "app.note", map[string]int{"n": i})
		if err != nil || ids[me.ID] != int64(i) {
			t.Fatalf("publish %d: %v, %v", i, ids, err)
		}
	}
	for i := 1; i <= 2; i++ {
		ev, err := st.Next()
		if err != nil || ev.ID != int64(i) || !ev.HasID || ev.Type != "app.note" || string(ev.Data) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("live event %d: %+v, %v", i, ev, err)
		}
	}
	st.Close()

	// Resuming after 1 replays 2 only.
	st, err = c.Stream(ctx, client.StreamOptions{LastEventID: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if ev, err := st.Next(); err != nil || ev.Type != client.EventReady {
		t.Fatalf("%+v %v", ev, err)
	}
	if ev, err := st.Next(); err != nil || ev.ID != 2 {
		t.Fatalf("replay: %+v %v", ev, err)
	}
	st.Close()

	pr, err := c.Poll(ctx, 0, -1)
	if err != nil || len(pr.Events) != 2 || pr.LastID != 2 || pr.Events[1].Type != "app.note" || pr.Reset != nil {
		t.Fatalf("Poll: %+v, %v", pr, err)
	}
	// A position past the head (a log rebuilt): the poll says so.
	if pr, err := c.Poll(ctx, 99, -1); err != nil || pr.Reset == nil || pr.Reset.Reason != "history_expired" || pr.Reset.LastID != 2 || pr.LastID != 2 {
		t.Fatalf("Poll past the head: %+v, %v", pr, err)
	}

	// The subscriber from the start hands each id once, then follows live.
	var got []int64
	sub := &client.Subscriber{Client: c, FromStart: true, Handler: func(ev client.Event) error {
		if ev.HasID {
			got = append(got, ev.ID)
			if ev.ID == 2 {
				go backend.Publish(ctx, []string{me.ID}, "app.note", map[string]int{"n": 3})
			}
			if ev.ID == 3 {
				return context.Canceled
			}
		}
		return nil
	}}
	if err := sub.Run(ctx); err != context.Canceled {
		t.Fatalf("Subscriber: %v", err)
	}
	if fmt.Sprint(got) != "[1 2 3]" {
		t.Errorf("subscriber handed %v, want [1 2 3]", got)
	}

	if err := c.Activity(ctx); err != nil {
		t.Error(err)
	}
	token := c.Token()
	if err := c.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WithToken(token).Me(ctx); client.StatusCode(err) != http.StatusUnauthorized {
		t.Errorf("Me after logout: %v, want 401", err)
	}
	if _, err := c.WithToken(token).Stream(ctx, client.StreamOptions{}); client.StatusCode(err) != http.StatusUnauthorized {
		t.Errorf("stream after logout: %v, want 401", err)
	}
}

// TestChatAgainstServer covers conversations, messages and calls on a real
// node, from both roles, and checks that the professional's stream carries
// the events.
func TestChatAgainstServer(t *testing.T) {
	n := servertest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	suffix := time.Now().UnixNano() % 1e9
	register := func(role string) (*client.Client, client.User) {
		t.Helper()
		c := client.New(n.URL)
		a, err := c.Register(ctx, client.Register{Username: fmt.Sprintf("%s_%d", role[:3], suffix), Password: "password123", Role: role})
		if err != nil {
			t.Fatal(err)
		}
		return c, a.User
	}
	cli, cliUser := register(client.RoleClient)
	pro, proUser := register(client.RoleProfessional)

	pros, err := cli.Users(ctx, client.RoleProfessional)
	if err != nil || !containsUser(pros, proUser.ID) || containsUser(pros, cliUser.ID) {
		t.Fatalf("Users(professional): %+v, %v", pros, err)
	}
	proStream, err := pro.Stream(ctx, client.StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer proStream.Close()

	conv, err := cli.CreateConversation(ctx, client.CreateConversation{ProfessionalID: proUser.ID, Subject: "Hello",
		Message: client.NewMessage{Body: "first <b>message</b>", ClientID: "c-1"}})
	if err != nil {
		t.Fatal(err)
	}
	if conv.Client.ID != cliUser.ID || conv.Professional.ID != proUser.ID || conv.Subject != "Hello" ||
		conv.LastMessage == nil || conv.LastMessage.Body != "first <b>message</b>" || conv.LastMessage.Seq != 1 {
		t.Fatalf("conversation %+v", conv)
	}
	if _, err := pro.CreateConversation(ctx, client.CreateConversation{ProfessionalID: proUser.ID, Message: client.NewMessage{Body: "x"}}); client.ErrorCode(err) != "role_forbidden" {
		t.Errorf("a professional opened a conversation: %v", err)
	}

	m2, err := pro.SendMessage(ctx, conv.ID, client.SendMessage{Body: "reply", ClientID: "p-1", ReplyToID: conv.LastMessage.ID})
	if err != nil || m2.Seq != 2 || m2.SenderID != proUser.ID || m2.ReplyTo == nil || m2.ReplyTo.Preview != "first <b>message</b>" {
		t.Fatalf("SendMessage: %+v, %v", m2, err)
	}
	again, err := pro.SendMessage(ctx, conv.ID, client.SendMessage{Body: "reply", ClientID: "p-1"})
	if err != nil || again.ID != m2.ID {
		t.Errorf("retry with the same client_id: %+v, %v; want the original %s", again, err, m2.ID)
	}
	m3, err := cli.SendMessage(ctx, conv.ID, client.SendMessage{Body: "third"})
	if err != nil {
		t.Fatal(err)
	}
	page, err := pro.Messages(ctx, conv.ID, client.MessagesQuery{AfterSeq: 1, Limit: 10})
	if err != nil || len(page.Messages) != 2 || page.Messages[0].Seq != 2 || page.Messages[1].Seq != 3 {
		t.Fatalf("Messages: %+v, %v", page, err)
	}
	if ed, err := cli.EditMessage(ctx, m3.ID, "third, edited"); err != nil || ed.EditedAt == nil || ed.Body != "third, edited" {
		t.Errorf("EditMessage: %+v, %v", ed, err)
	}
	if del, err := cli.DeleteMessage(ctx, m3.ID); err != nil || !del.Deleted || del.Body != "" || del.Seq != 3 {
		t.Errorf("DeleteMessage: %+v, %v", del, err)
	}
	if _, err := cli.EditMessage(ctx, m3.ID, "again"); client.StatusCode(err) != http.StatusConflict {
		t.Errorf("editing a deleted message: %v, want 409", err)
	}
	if _, err := pro.EditMessage(ctx, conv.LastMessage.ID, "not mine"); err == nil {
		t.Error("a professional edited the client's message")
	}
	if err := pro.MarkRead(ctx, conv.ID, 3); err != nil {
		t.Error(err)
	}
	if err := cli.Typing(ctx, conv.ID, "start"); err != nil {
		t.Error(err)
	}
	if list, err := pro.Conversations(ctx); err != nil || len(list) != 1 || list[0].ID != conv.ID || list[0].LastReadSeq != 3 {
		t.Errorf("Conversations: %+v, %v", list, err)
	}

	call, err := cli.StartCall(ctx, conv.ID, client.MediaVideo)
	if err != nil || call.State != client.CallRinging || call.CalleeID != proUser.ID {
		t.Fatalf("StartCall: %+v, %v", call, err)
	}
	if _, err := cli.StartCall(ctx, conv.ID, client.MediaAudio); client.StatusCode(err) != http.StatusConflict {
		t.Errorf("second call while ringing: %v, want 409", err)
	}
	if c, err := pro.AcceptCall(ctx, call.ID); err != nil || c.State != client.CallActive || c.AnsweredAt == nil {
		t.Errorf("AcceptCall: %+v, %v", c, err)
	}
	if err := cli.Signal(ctx, call.ID, map[string]string{"type": "offer", "sdp": "v=0"}); err != nil {
		t.Error(err)
	}
	if c, err := pro.EndCall(ctx, call.ID); err != nil || c.State != client.CallEnded {
		t.Errorf("EndCall: %+v, %v", c, err)
	}
	if _, err := cli.DeclineCall(ctx, call.ID); err == nil {
		t.Error("declined an ended call")
	}

	// The professional's stream saw it all, in id order.
	want := []string{"conversation.created", "message.created", "message.created", "message.created",
		"message.updated", "message.deleted", "call.ringing", "call.accepted", "call.signal", "call.ended"}
	var seen []string
	var last int64
	for len(seen) < len(want) {
		ev, err := proStream.Next()
		if err != nil {
			t.Fatalf("stream after %v: %v", seen, err)
		}
		if !ev.HasID || ev.Type == client.EventReceipt {
			continue
		}
		if ev.ID <= last {
			t.Fatalf("id %d after %d", ev.ID, last)
		}
		last = ev.ID
		seen = append(seen, ev.Type)
		if ev.Type == client.EventCallSignal {
			var sig client.CallSignal
			if err := ev.Decode(&sig); err != nil || sig.FromUserID != cliUser.ID || string(sig.Payload) != `{"sdp":"v=0","type":"offer"}` {
				t.Errorf("call.signal %s: %+v, %v", ev.Data, sig, err)
			}
		}
	}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("stream events\n %v\nwant\n %v", seen, want)
	}
}

func containsUser(us []client.User, id string) bool {
	for _, u := range us {
		if u.ID == id {
			return true
		}
	}
	return false
}

// TestServerAPI runs the client's server-API calls against a real node:
// an app user is put, found, given a token, talked to by a system
// message, logged out and erased.
func TestServerAPI(t *testing.T) {
	n := servertest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	backend := client.New(n.URL, client.WithAPIKey(servertest.APIKey))
	ext := fmt.Sprintf("pro/%d", time.Now().UnixNano()) // a slash, to be escaped
	pro, created, err := backend.PutUser(ctx, ext, client.AppUser{DisplayName: "Dr. Who", Role: client.RoleProfessional})
	if err != nil || !created || pro.ExternalID != ext || pro.Username != "" || pro.DisplayName != "Dr. Who" {
		t.Fatalf("PutUser: %+v %v %v", pro, created, err)
	}
	if again, created, err := backend.PutUser(ctx, ext, client.AppUser{Role: client.RoleProfessional}); err != nil || created || again.ID != pro.ID || again.DisplayName != "Dr. Who" {
		t.Fatalf("PutUser again: %+v %v %v", again, created, err)
	}
	if got, err := backend.GetUser(ctx, ext); err != nil || got.ID != pro.ID {
		t.Fatalf("GetUser: %+v %v", got, err)
	}
	if _, err := client.New(n.URL).GetUser(ctx, ext); client.StatusCode(err) != http.StatusUnauthorized {
		t.Fatalf("GetUser without the key: %v", err)
	}
	cli := client.New(n.URL)
	if _, err := cli.Register(ctx, client.Register{Username: fmt.Sprintf("c%d", time.Now().UnixNano()%1e9), Password: "password123", Role: client.RoleClient}); err != nil {
		t.Fatal(err)
	}
	conv, err := cli.CreateConversation(ctx, client.CreateConversation{ProfessionalExternalID: ext, Message: client.NewMessage{Body: "hello"}})
	if err != nil || conv.Professional.ID != pro.ID {
		t.Fatalf("CreateConversation by external id: %+v %v", conv, err)
	}
	auth, err := backend.MintToken(ctx, ext, time.Hour)
	if err != nil || auth.User.ID != pro.ID || time.Until(auth.ExpiresAt) > time.Hour+time.Minute {
		t.Fatalf("MintToken: %+v %v", auth, err)
	}
	proc := client.New(n.URL, client.WithToken(auth.Token))
	sys, err := backend.SystemMessage(ctx, conv.ID, client.SendMessage{Body: "Appointment confirmed", ClientID: "s1"})
	if err != nil || sys.Kind != client.KindSystem || sys.SenderID != "" || sys.Seq != 2 {
		t.Fatalf("SystemMessage: %+v %v", sys, err)
	}
	page, err := proc.Messages(ctx, conv.ID, client.MessagesQuery{})
	if err != nil || len(page.Messages) != 2 || page.Messages[1].Kind != client.KindSystem || page.Messages[0].Kind != client.KindUser {
		t.Fatalf("Messages with the minted token: %+v %v", page, err)
	}
	if err := backend.LogoutUser(ctx, ext); err != nil {
		t.Fatal(err)
	}
	if _, err := proc.Me(ctx); client.StatusCode(err) != http.StatusUnauthorized {
		t.Fatalf("the minted token after LogoutUser: %v", err)
	}
	if err := backend.EraseUser(ctx, ext); err != nil {
		t.Fatal(err)
	}
	if _, err := backend.GetUser(ctx, ext); client.StatusCode(err) != http.StatusNotFound {
		t.Fatalf("GetUser after EraseUser: %v", err)
	}
}
