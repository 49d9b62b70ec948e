package chat_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/servertest"
)

func TestOpenConversation(t *testing.T) {
	t.Parallel()
	n := servertest.Start(t)
	client := n.Register(t, "c", parley.RoleClient)
	pro := n.Register(t, "p", parley.RoleProfessional)
	proStream := n.OpenStream(t, pro.Token, -1)
	clientStream := n.OpenStream(t, client.Token, -1)

	var c parley.Conversation
	res := n.Do(t, "POST", "/api/conversations", client.Token, map[string]any{
		"professional_id": pro.ID, "subject": "  Tax question ",
		"message": map[string]any{"body": "Hi there", "client_id": "first-1"},
		// Fields the server owns are ignored.
		"id": "conv_mine", "unread_count": 42,
	}, &c)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("open: %d %s", res.StatusCode, res.Body)
	}
	if c.ID == "" || c.ID == "conv_mine" || c.Client.ID != client.ID || c.Professional.ID != pro.ID || c.Subject != "Tax question" {
		t.Fatalf("conversation = %+v", c)
	}
	if c.Client.Name() != client.Username || c.Professional.Role != parley.RoleProfessional {
		t.Fatalf("users = %+v / %+v", c.Client, c.Professional)
	}
	if m := c.LastMessage; m == nil || m.Seq != 1 || m.Body != "Hi there" || !m.SentBy(client.ID) || m.ClientID == nil || *m.ClientID != "first-1" {
		t.Fatalf("last_message = %+v", c.LastMessage)
	}
	if c.UnreadCount != 0 || c.LastReadSeq != 0 || c.PeerLastReadSeq != 0 {
		t.Fatalf("client view = %+v", c)
	}
	if !strings.Contains(string(res.Body), `"peer_delivered_seq":0`) || !strings.Contains(string(res.Body), `"online":true`) {
		t.Fatalf("body misses fields: %s", res.Body)
	}

	// The professional sees it from their side, unread.
	pc := getConv(t, n, pro, c.ID)
	if pc.UnreadCount != 1 || pc.LastMessage.ID != c.LastMessage.ID {
		t.Fatalf("professional view = %+v", pc)
	}

	// Both get conversation.created (each with their own view) then the
	// first message.
	for _, tc := range []struct {
		s      *servertest.Stream
		unread int
	}{{clientStream, 0}, {proStream, 1}} {
		e := tc.s.NextOf(t, parley.EventConversationCreated, 5*time.Second)
		var ec parley.Conversation
		e.Decode(t, &ec)
		if !e.HasID || ec.ID != c.ID || ec.UnreadCount != tc.unread {
			t.Fatalf("conversation.created = %+v (%s)", e, e.Data)
		}
		next := tc.s.Next(t, 5*time.Second)
		var m parley.Message
		next.Decode(t, &m)
		if next.Type != parley.EventMessageCreated || next.ID != e.ID+1 || m.Seq != 1 {
			t.Fatalf("after conversation.created: %+v", next)
		}
	}

	// A retry of the same opening answers the same conversation, 200.
	var again parley.Conversation
	res = n.Do(t, "POST", "/api/conversations", client.Token, map[string]any{
		"professional_id": pro.ID, "message": map[string]any{"body": "Hi there", "client_id": "first-1"},
	}, &again)
	if res.StatusCode != http.StatusOK || again.ID != c.ID {
		t.Fatalf("retry: %d %s", res.StatusCode, res.Body)
	}

	// The list shows it for both.
	for _, u := range []servertest.User{client, pro} {
		var list struct {
			Conversations []parley.Conversation `json:"conversations"`
		}
		n.Do(t, "GET", "/api/conversations", u.Token, nil, &list)
		if len(list.Conversations) != 1 || list.Conversations[0].ID != c.ID {
			t.Fatalf("list for %s = %+v", u.Username, list)
		}
	}
}

func TestOpenConversationErrors(t *testing.T) {
	t.Parallel()
	n := servertest.Start(t)
	client := n.Register(t, "c", parley.RoleClient)
	other := n.Register(t, "c", parley.RoleClient)
	pro := n.Register(t, "p", parley.RoleProfessional)
	pro2 := n.Register(t, "p", parley.RoleProfessional)
	msg := map[string]any{"body": "hi"}

	cases := []struct {
		name   string
		token  string
		body   any
		status int
		code   string
	}{
		{"professional may not open", pro.Token, map[string]any{"professional_id": pro2.ID, "message": msg}, 403, parley.ERoleForbidden},
		{"professional_id names a client", client.Token, map[string]any{"professional_id": other.ID, "message": msg}, 404, parley.ENotFound},
		{"professional_id names nobody", client.Token, map[string]any{"professional_id": "usr_nobody", "message": msg}, 404, parley.ENotFound},
		{"professional_id with NUL", client.Token, map[string]any{"professional_id": pro.ID + "\x00", "message": msg}, 404, parley.ENotFound},
		{"professional_id missing", client.Token, map[string]any{"message": msg}, 400, parley.EInvalid},
		{"message missing", client.Token, map[string]any{"professional_id": pro.ID}, 400, parley.EInvalid},
		{"empty body", client.Token, map[string]any{"professional_id": pro.ID, "message": map[string]any{"body": " \n\t "}}, 400, parley.EInvalid},
		{"body too long", client.Token, map[string]any{"professional_id": pro.ID, "message": map[string]any{"body": strings.Repeat("x", 4001)}}, 400, parley.EInvalid},
		{"message of the wrong type", client.Token, map[string]any{"professional_id": pro.ID, "message": "hi"}, 400, parley.EInvalid},
		{"subject too long", client.Token, map[string]any{"professional_id": pro.ID, "subject": strings.Repeat("s", 201), "message": msg}, 400, parley.EInvalid},
		{"not JSON", client.Token, []byte(`{"professional_id":`), 400, parley.EInvalidJSON},
		{"no credentials", "", map[string]any{"professional_id": pro.ID, "message": msg}, 401, parley.EUnauthorized},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, n.Do(t, "POST", "/api/conversations", tc.token, tc.body, nil), tc.status, tc.code)
		})
	}
	// None of them created anything.
	var list struct {
		Conversations []parley.Conversation `json:"conversations"`
	}
	n.Do(t, "GET", "/api/conversations", client.Token, nil, &list)
	if len(list.Conversations) != 0 {
		t.Fatalf("conversations after errors: %+v", list.Conversations)
	}
}

// Someone outside a conversation gets 404 on every path that names it, its
// messages or its calls, whatever the method.
func TestNonParticipantNotFound(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	n := p.n
	outsider := n.Register(t, "o", parley.RoleClient)
	outPro := n.Register(t, "q", parley.RoleProfessional)
	msg := send(t, n, p.pro, p.conv.ID, "reply")
	var call parley.Call
	if res := n.Do(t, "POST", "/api/conversations/"+p.conv.ID+"/calls", p.client.Token, map[string]any{"media": "audio"}, &call); res.StatusCode != 201 {
		t.Fatalf("start call: %d %s", res.StatusCode, res.Body)
	}
	conv := "/api/conversations/" + p.conv.ID
	reqs := []struct {
		method, path string
		body         any
	}{
		{"GET", conv, nil},
		{"GET", conv + "/messages", nil},
		{"POST", conv + "/messages", map[string]any{"body": "intrusion"}},
		{"POST", conv + "/read", map[string]any{"up_to_seq": 1}},
		{"POST", conv + "/typing", map[string]any{"state": "start"}},
		{"POST", conv + "/calls", map[string]any{"media": "audio"}},
		{"PATCH", "/api/messages/" + msg.ID, map[string]any{"body": "changed"}},
		{"DELETE", "/api/messages/" + msg.ID, nil},
		{"GET", "/api/calls/" + call.ID, nil},
		{"POST", "/api/calls/" + call.ID + "/accept", nil},
		{"POST", "/api/calls/" + call.ID + "/decline", nil},
		{"POST", "/api/calls/" + call.ID + "/end", nil},
		{"POST", "/api/calls/" + call.ID + "/signal", map[string]any{"payload": map[string]any{"sdp": "x"}}},
		// Ids that do not exist answer the same, also ids no store could
		// hold (NUL, invalid UTF-8: PostgreSQL would refuse them).
		{"GET", "/api/conversations/conv_nope", nil},
		{"PATCH", "/api/messages/msg_nope", map[string]any{"body": "x"}},
		{"POST", "/api/calls/call_nope/end", nil},
		{"GET", "/api/conversations/a%00b/messages", nil},
		{"POST", "/api/conversations/a%ffb/read", map[string]any{"up_to_seq": 1}},
		{"DELETE", "/api/messages/a%00b", nil},
		{"GET", "/api/calls/a%ff", nil},
		{"GET", "/api/users/a%00b", nil},
	}
	for _, u := range []servertest.User{outsider, outPro} {
		for _, r := range reqs {
			t.Run(u.Username+" "+r.method+" "+r.path, func(t *testing.T) {
				wantError(t, n.Do(t, r.method, r.path, u.Token, r.body, nil), 404, parley.ENotFound)
			})
		}
	}
	// Nothing changed for the participants.
	h := getHistory(t, n, p.client, p.conv.ID, "")
	if len(h.Messages) != 2 || h.Messages[1].Body != "reply" {
		t.Fatalf("history after intrusions: %+v", h.Messages)
	}
	// Nor did the refused sends take a seq.
	if next := send(t, n, p.client, p.conv.ID, "after"); next.Seq != h.Messages[1].Seq+1 {
		t.Fatalf("next seq %d after %d", next.Seq, h.Messages[1].Seq)
	}
}

func TestSendMessages(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	n := p.n
	proStream := n.OpenStream(t, p.pro.Token, -1)

	// Both participants may write; seq counts on from the first message.
	m2 := send(t, n, p.pro, p.conv.ID, "Good morning")
	m3 := send(t, n, p.client, p.conv.ID, "Thanks")
	if m2.Seq != 2 || m3.Seq != 3 || !m2.SentBy(p.pro.ID) || m2.ConversationID != p.conv.ID || m2.Deleted || m2.EditedAt != nil || m2.ReplyTo != nil {
		t.Fatalf("messages: %+v %+v", m2, m3)
	}

	// Bodies are stored and returned byte for byte: HTML is text, emoji
	// and combining marks survive, surrounding white space is kept.
	bodies := []string{
		`<script>alert("x")</script> & <b>bold</b> &amp;`,
		"👩‍👩‍👧 family, ☕, e\u0301, 中文, \u200bzero-width",
		"  padded\nwith lines\n  ",
		strings.Repeat("é", 4000),                 // 4,000 characters, 8,000 bytes
		" " + strings.Repeat("🙂", 4000) + "\n\t ", // 4,000 after trimming
	}
	for _, body := range bodies {
		m := send(t, n, p.client, p.conv.ID, body)
		if m.Body != body {
			t.Fatalf("sent %q, answered %q", body, m.Body)
		}
		var got parley.Message
		for got.ID != m.ID { // skip the earlier messages
			proStream.NextOf(t, parley.EventMessageCreated, 5*time.Second).Decode(t, &got)
		}
		if got.Body != body {
			t.Fatalf("stream body %q, want %q", got.Body, body)
		}
	}
	h := getHistory(t, n, p.pro, p.conv.ID, "?after_seq=3")
	if len(h.Messages) != len(bodies) {
		t.Fatalf("history has %d messages, want %d", len(h.Messages), len(bodies))
	}
	for i, m := range h.Messages {
		if m.Body != bodies[i] || m.Seq != int64(4+i) {
			t.Fatalf("history[%d] = seq %d %q", i, m.Seq, m.Body)
		}
	}

	path := "/api/conversations/" + p.conv.ID + "/messages"
	for _, tc := range []struct {
		name   string
		body   any
		ctype  string
		status int
		code   string
	}{
		{"empty", map[string]any{"body": ""}, "", 400, parley.EInvalid},
		{"only white space", map[string]any{"body": " \n\u3000\t"}, "", 400, parley.EInvalid},
		{"missing body", map[string]any{}, "", 400, parley.EInvalid},
		{"4,001 characters", map[string]any{"body": strings.Repeat("a", 4001)}, "", 400, parley.EInvalid},
		{"4,001 emoji", map[string]any{"body": strings.Repeat("🙂", 4001)}, "", 400, parley.EInvalid},
		{"NUL", map[string]any{"body": "a\x00b"}, "", 400, parley.EInvalid},
		{"body not a string", map[string]any{"body": 12}, "", 400, parley.EInvalid},
		{"invalid UTF-8", []byte("{\"body\":\"\xff\xfe\"}"), "", 400, parley.EInvalidJSON},
		{"not JSON", []byte("body=hi"), "", 400, parley.EInvalidJSON},
		{"form post", []byte("body=hi"), "application/x-www-form-urlencoded", 415, parley.EUnsupportedType},
		{"body over the limit", []byte(`{"body":"` + strings.Repeat("a", 200<<10) + `"}`), "", 413, parley.ETooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var res *servertest.Response
			if tc.ctype != "" {
				req, _ := http.NewRequest("POST", n.URL+path, strings.NewReader(string(tc.body.([]byte))))
				req.Header.Set("Content-Type", tc.ctype)
				req.Header.Set("Authorization", "Bearer "+p.client.Token)
				res = servertest.Send(t, req, nil)
			} else {
				res = n.Do(t, "POST", path, p.client.Token, tc.body, nil)
			}
			wantError(t, res, tc.status, tc.code)
		})
	}
	// The refused messages took no seq.
	if m := send(t, n, p.client, p.conv.ID, "after errors"); m.Seq != int64(4+len(bodies)) {
		t.Fatalf("seq after refused sends = %d", m.Seq)
	}
}

func TestSendIdempotent(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	n := p.n
	path := "/api/conversations/" + p.conv.ID + "/messages"
	head := logHead(t, n, p.pro)

	var first, again parley.Message
	res := n.Do(t, "POST", path, p.client.Token, map[string]any{"body": "once", "client_id": "c-1", "seq": 99, "sender_id": p.pro.ID}, &first)
	if res.StatusCode != 201 || first.ClientID == nil || *first.ClientID != "c-1" || first.Seq != 2 || !first.SentBy(p.client.ID) {
		t.Fatalf("first: %d %s", res.StatusCode, res.Body)
	}
	// The retry, even with another body, answers the original.
	res = n.Do(t, "POST", path, p.client.Token, map[string]any{"body": "once (retry)", "client_id": "c-1"}, &again)
	if res.StatusCode != 200 || again.ID != first.ID || again.Body != "once" || again.Seq != 2 {
		t.Fatalf("retry: %d %s", res.StatusCode, res.Body)
	}
	// The same client_id from the other participant is theirs, not a retry.
	var pm parley.Message
	if res := n.Do(t, "POST", path, p.pro.Token, map[string]any{"body": "mine", "client_id": "c-1"}, &pm); res.StatusCode != 201 || pm.Seq != 3 {
		t.Fatalf("same client_id, other sender: %d %s", res.StatusCode, res.Body)
	}
	// Reusing it in another conversation is a conflict, not a silent answer
	// from elsewhere.
	pro2 := n.Register(t, "p", parley.RoleProfessional)
	c2 := openConv(t, n, p.client, pro2, "other")
	wantError(t, n.Do(t, "POST", "/api/conversations/"+c2.ID+"/messages", p.client.Token, map[string]any{"body": "x", "client_id": "c-1"}, nil), 409, parley.EConflict)

	// Exactly one message.created for c-1 reached the professional's log.
	evs := poll(t, n, p.pro, head)
	var created []string
	for _, e := range evs {
		if e.Type == parley.EventMessageCreated {
			var m parley.Message
			_ = json.Unmarshal(e.Data, &m)
			created = append(created, m.ID)
		}
	}
	if !slices.Equal(created, []string{first.ID, pm.ID}) {
		t.Fatalf("message.created events = %v, want [%s %s]", created, first.ID, pm.ID)
	}

	// Concurrent retries of one send store one message.
	const tries = 8
	ids := make(chan string, tries)
	codes := make(chan int, tries)
	for range tries {
		go func() {
			var m parley.Message
			code, _, err := call(t.Context(), "POST", n.URL+path, p.client.Token, map[string]any{"body": "race", "client_id": "c-race"}, &m)
			if err != nil {
				t.Error(err)
			}
			ids <- m.ID
			codes <- code
		}()
	}
	seen := map[string]bool{}
	created201 := 0
	for range tries {
		seen[<-ids] = true
		if <-codes == 201 {
			created201++
		}
	}
	if len(seen) != 1 || created201 != 1 {
		t.Fatalf("concurrent retries: ids %v, %d created", seen, created201)
	}
}

func TestReplyTo(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	n := p.n
	long := strings.Repeat("ab🙂", 60) // 180 characters
	q := send(t, n, p.pro, p.conv.ID, long)

	var r parley.Message
	res := n.Do(t, "POST", "/api/conversations/"+p.conv.ID+"/messages", p.client.Token, map[string]any{"body": "answer", "reply_to_id": q.ID}, &r)
	if res.StatusCode != 201 || r.ReplyTo == nil {
		t.Fatalf("reply: %d %s", res.StatusCode, res.Body)
	}
	want := string([]rune(long)[:140])
	if r.ReplyTo.ID != q.ID || (r.ReplyTo.SenderID == nil || *r.ReplyTo.SenderID != p.pro.ID) || r.ReplyTo.Preview != want || utf8.RuneCountInString(r.ReplyTo.Preview) != 140 {
		t.Fatalf("reply_to = %+v", r.ReplyTo)
	}
	// The preview follows the quoted message: an edit leaves no trace of
	// the old text in the replies to it.
	if res := n.Do(t, "PATCH", "/api/messages/"+q.ID, p.pro.Token, map[string]any{"body": "edited"}, nil); res.StatusCode != 200 {
		t.Fatalf("edit: %d", res.StatusCode)
	}
	h := getHistory(t, n, p.pro, p.conv.ID, "")
	if got := h.Messages[len(h.Messages)-1]; got.ReplyTo == nil || got.ReplyTo.Preview != "edited" {
		t.Fatalf("reply in history = %+v", got.ReplyTo)
	}
	// A short body is quoted whole.
	var short parley.Message
	n.Do(t, "POST", "/api/conversations/"+p.conv.ID+"/messages", p.pro.Token, map[string]any{"body": "ok", "reply_to_id": p.conv.LastMessage.ID}, &short)
	if short.ReplyTo == nil || short.ReplyTo.Preview != "hello" || (short.ReplyTo.SenderID == nil || *short.ReplyTo.SenderID != p.client.ID) {
		t.Fatalf("short reply_to = %+v", short.ReplyTo)
	}

	// The target must be a message of this conversation.
	pro2 := n.Register(t, "p", parley.RoleProfessional)
	c2 := openConv(t, n, p.client, pro2, "elsewhere")
	for _, id := range []string{c2.LastMessage.ID, "msg_nope"} {
		wantError(t, n.Do(t, "POST", "/api/conversations/"+p.conv.ID+"/messages", p.client.Token,
			map[string]any{"body": "x", "reply_to_id": id}, nil), 400, parley.EInvalid)
	}
}

func TestEditAndDelete(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	n := p.n
	outsider := n.Register(t, "o", parley.RoleClient)
	clientStream := n.OpenStream(t, p.client.Token, -1)
	m := send(t, n, p.pro, p.conv.ID, "typo")
	clientStream.NextOf(t, parley.EventMessageCreated, 5*time.Second)

	// Only the sender edits: the other participant can see the message, so
	// they get 403; anyone else 404.
	wantError(t, n.Do(t, "PATCH", "/api/messages/"+m.ID, p.client.Token, map[string]any{"body": "hijack"}, nil), 403, parley.EForbidden)
	wantError(t, n.Do(t, "PATCH", "/api/messages/"+m.ID, outsider.Token, map[string]any{"body": "hijack"}, nil), 404, parley.ENotFound)
	wantError(t, n.Do(t, "PATCH", "/api/messages/"+m.ID, p.pro.Token, map[string]any{"body": "  "}, nil), 400, parley.EInvalid)
	wantError(t, n.Do(t, "PATCH", "/api/messages/"+m.ID, p.pro.Token, map[string]any{}, nil), 400, parley.EInvalid)
	wantError(t, n.Do(t, "PATCH", "/api/messages/"+m.ID, p.pro.Token, map[string]any{"body": strings.Repeat("x", 4001)}, nil), 400, parley.EInvalid)

	var ed parley.Message
	res := n.Do(t, "PATCH", "/api/messages/"+m.ID, p.pro.Token, map[string]any{"body": "<i>fixed</i>", "deleted": true}, &ed)
	if res.StatusCode != 200 || ed.Body != "<i>fixed</i>" || ed.EditedAt == nil || ed.Seq != m.Seq || ed.Deleted || ed.EditedAt.Before(m.CreatedAt.Time) {
		t.Fatalf("edit: %d %s", res.StatusCode, res.Body)
	}
	e := clientStream.NextOf(t, parley.EventMessageUpdated, 5*time.Second)
	var got parley.Message
	e.Decode(t, &got)
	if got.ID != m.ID || got.Body != "<i>fixed</i>" || got.EditedAt == nil {
		t.Fatalf("message.updated = %s", e.Data)
	}

	// Delete: the peer may not, the sender may; the tombstone keeps its seq.
	wantError(t, n.Do(t, "DELETE", "/api/messages/"+m.ID, p.client.Token, nil, nil), 403, parley.EForbidden)
	wantError(t, n.Do(t, "DELETE", "/api/messages/"+m.ID, outsider.Token, nil, nil), 404, parley.ENotFound)
	var tomb parley.Message
	res = n.Do(t, "DELETE", "/api/messages/"+m.ID, p.pro.Token, nil, &tomb)
	if res.StatusCode != 200 || !tomb.Deleted || tomb.Body != "" || tomb.Seq != m.Seq || tomb.ID != m.ID {
		t.Fatalf("delete: %d %s", res.StatusCode, res.Body)
	}
	e = clientStream.NextOf(t, parley.EventMessageDeleted, 5*time.Second)
	e.Decode(t, &got)
	if got.ID != m.ID || !got.Deleted || got.Body != "" {
		t.Fatalf("message.deleted = %s", e.Data)
	}
	h := getHistory(t, n, p.client, p.conv.ID, "")
	if len(h.Messages) != 2 || h.Messages[1].Seq != 2 || !h.Messages[1].Deleted || h.Messages[1].Body != "" {
		t.Fatalf("history after delete: %+v", h.Messages[1])
	}
	// Edit after delete is a conflict; a second delete answers the tombstone.
	wantError(t, n.Do(t, "PATCH", "/api/messages/"+m.ID, p.pro.Token, map[string]any{"body": "back"}, nil), 409, parley.EConflict)
	res = n.Do(t, "DELETE", "/api/messages/"+m.ID, p.pro.Token, nil, &tomb)
	if res.StatusCode != 200 || !tomb.Deleted {
		t.Fatalf("second delete: %d %s", res.StatusCode, res.Body)
	}
	// Deleted messages do not count as unread, and cannot be replied to.
	if c := getConv(t, n, p.client, p.conv.ID); c.UnreadCount != 0 || c.LastMessage == nil || !c.LastMessage.Deleted {
		t.Fatalf("client view after delete: unread %d, last %+v", c.UnreadCount, c.LastMessage)
	}
	wantError(t, n.Do(t, "POST", "/api/conversations/"+p.conv.ID+"/messages", p.client.Token,
		map[string]any{"body": "re", "reply_to_id": m.ID}, nil), 400, parley.EInvalid)
	wantError(t, n.Do(t, "GET", "/api/messages/"+m.ID, p.pro.Token, nil, nil), 405, parley.EMethod)
}

func TestHistoryPaging(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	n := p.n
	for i := 2; i <= 250; i++ {
		u := p.client
		if i%2 == 0 {
			u = p.pro
		}
		send(t, n, u, p.conv.ID, fmt.Sprintf("m%d", i))
	}
	seqs := func(h history) (lo, hi int64, count int) {
		for i, m := range h.Messages {
			if i > 0 && m.Seq != h.Messages[i-1].Seq+1 {
				t.Fatalf("not ascending and contiguous at %d: %d after %d", i, m.Seq, h.Messages[i-1].Seq)
			}
			if m.Body != fmt.Sprintf("m%d", m.Seq) && m.Seq != 1 {
				t.Fatalf("seq %d has body %q", m.Seq, m.Body)
			}
		}
		if len(h.Messages) == 0 {
			return 0, 0, 0
		}
		return h.Messages[0].Seq, h.Messages[len(h.Messages)-1].Seq, len(h.Messages)
	}
	for _, tc := range []struct {
		query    string
		lo, hi   int64
		count    int
		has_more bool
	}{
		{"", 201, 250, 50, true},
		{"?before_seq=201", 151, 200, 50, true},
		{"?before_seq=30&limit=100", 1, 29, 29, false},
		{"?after_seq=0&limit=10", 1, 10, 10, true},
		{"?after_seq=240", 241, 250, 10, false},
		{"?after_seq=240&limit=10", 241, 250, 10, false},
		{"?after_seq=239&limit=10", 240, 249, 10, true},
		{"?after_seq=100&before_seq=106", 101, 105, 5, false},
		{"?after_seq=100&before_seq=106&limit=3", 101, 103, 3, true},
		{"?limit=500", 51, 250, 200, true}, // over the maximum: served as 200
		{"?limit=200", 51, 250, 200, true},
		{"?after_seq=250", 0, 0, 0, false},
	} {
		h := getHistory(t, n, p.client, p.conv.ID, tc.query)
		lo, hi, count := seqs(h)
		if lo != tc.lo || hi != tc.hi || count != tc.count || h.HasMore != tc.has_more {
			t.Errorf("%q: seqs %d..%d (%d) has_more %v; want %d..%d (%d) %v", tc.query, lo, hi, count, h.HasMore, tc.lo, tc.hi, tc.count, tc.has_more)
		}
	}
	// Walking back with before_seq visits every message once.
	var all []int64
	q := "?limit=77"
	for {
		h := getHistory(t, n, p.pro, p.conv.ID, q)
		var page []int64
		for _, m := range h.Messages {
			page = append(page, m.Seq)
		}
		all = append(page, all...)
		if !h.HasMore {
			break
		}
		q = fmt.Sprintf("?limit=77&before_seq=%d", h.Messages[0].Seq)
	}
	if len(all) != 250 || all[0] != 1 || all[249] != 250 {
		t.Fatalf("walked %d messages: %v…", len(all), all[:min(5, len(all))])
	}
	for _, bad := range []string{"?limit=0", "?limit=-1", "?limit=x", "?before_seq=abc", "?after_seq=-1", "?before_seq=0", "?after_seq=1.5"} {
		wantError(t, n.Do(t, "GET", "/api/conversations/"+p.conv.ID+"/messages"+bad, p.client.Token, nil, nil), 400, parley.EInvalid)
	}
}

func TestConversationsNewestFirst(t *testing.T) {
	t.Parallel()
	n := servertest.Start(t)
	client := n.Register(t, "c", parley.RoleClient)
	pros := []servertest.User{n.Register(t, "p", parley.RoleProfessional), n.Register(t, "p", parley.RoleProfessional), n.Register(t, "p", parley.RoleProfessional)}
	var convs []*parley.Conversation
	for _, pro := range pros {
		convs = append(convs, openConv(t, n, client, pro, "hi"))
	}
	order := func(u servertest.User) []string {
		var list struct {
			Conversations []parley.Conversation `json:"conversations"`
		}
		if res := n.Do(t, "GET", "/api/conversations", u.Token, nil, &list); res.StatusCode != 200 {
			t.Fatalf("list: %d", res.StatusCode)
		}
		var ids []string
		for _, c := range list.Conversations {
			ids = append(ids, c.ID)
		}
		return ids
	}
	if got := order(client); !slices.Equal(got, []string{convs[2].ID, convs[1].ID, convs[0].ID}) {
		t.Fatalf("order = %v", got)
	}
	// A reply to the oldest brings it to the top.
	send(t, n, pros[0], convs[0].ID, "news")
	if got := order(client); !slices.Equal(got, []string{convs[0].ID, convs[2].ID, convs[1].ID}) {
		t.Fatalf("order after reply = %v", got)
	}
	// Each professional sees only their own conversation.
	if got := order(pros[1]); !slices.Equal(got, []string{convs[1].ID}) {
		t.Fatalf("professional's list = %v", got)
	}
}

func TestTypingIsEphemeral(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	n := p.n
	proHead, clientHead := logHead(t, n, p.pro), logHead(t, n, p.client)
	// Live, not resumed from proHead: a resume would prove the first
	// message delivered (Service.Resumed), and the log below would grow by
	// its receipt.
	proStream := n.OpenStream(t, p.pro.Token, -1)
	typing := "/api/conversations/" + p.conv.ID + "/typing"

	if res := n.Do(t, "POST", typing, p.client.Token, map[string]any{"state": "start"}, nil); res.StatusCode != 204 {
		t.Fatalf("typing: %d %s", res.StatusCode, res.Body)
	}
	e := proStream.NextOf(t, parley.EventTyping, 5*time.Second)
	var ty struct {
		ConversationID string `json:"conversation_id"`
		UserID         string `json:"user_id"`
		State          string `json:"state"`
	}
	e.Decode(t, &ty)
	if e.HasID || ty.ConversationID != p.conv.ID || ty.UserID != p.client.ID || ty.State != "start" {
		t.Fatalf("typing event = %+v %s", e, e.Data)
	}
	// A renewal right away is throttled; the stop goes through, so the next
	// typing event the professional sees is the stop.
	n.Do(t, "POST", typing, p.client.Token, map[string]any{"state": "start"}, nil)
	n.Do(t, "POST", typing, p.client.Token, map[string]any{"state": "stop"}, nil)
	e = proStream.NextOf(t, parley.EventTyping, 5*time.Second)
	e.Decode(t, &ty)
	if ty.State != "stop" {
		t.Fatalf("after a throttled start, got %s", e.Data)
	}
	// A start right after a stop is news, not a renewal: forwarded.
	n.Do(t, "POST", typing, p.client.Token, map[string]any{"state": "start"}, nil)
	e = proStream.NextOf(t, parley.EventTyping, 5*time.Second)
	e.Decode(t, &ty)
	if ty.State != "start" || ty.UserID != p.client.ID {
		t.Fatalf("a start after a stop: got %s", e.Data)
	}
	// A stop is forwarded even when this node forwarded no start before
	// it (behind a balancer the start may have gone through another node).
	n.Do(t, "POST", typing, p.client.Token, map[string]any{"state": "stop"}, nil)
	n.Do(t, "POST", typing, p.client.Token, map[string]any{"state": "stop"}, nil)
	n.Do(t, "POST", typing, p.pro.Token, map[string]any{"state": "start"}, nil)
	for _, want := range []string{p.client.ID + "/stop", p.client.ID + "/stop", p.pro.ID + "/start"} {
		e = proStream.NextOf(t, parley.EventTyping, 5*time.Second)
		e.Decode(t, &ty)
		if got := ty.UserID + "/" + ty.State; got != want {
			t.Fatalf("typing event %s, want %s", got, want)
		}
	}

	wantError(t, n.Do(t, "POST", typing, p.client.Token, map[string]any{"state": "typing"}, nil), 400, parley.EInvalid)
	wantError(t, n.Do(t, "POST", typing, p.client.Token, map[string]any{}, nil), 400, parley.EInvalid)

	// Typing never reaches the durable log: polls and replays do not hold it.
	// The client's log is read first: the professional's poll from 0 proves
	// the client's message delivered, and its receipt then joins the
	// client's log.
	for _, u := range []struct {
		user servertest.User
		head int64
	}{{p.client, clientHead}, {p.pro, proHead}} {
		if evs := poll(t, n, u.user, 0); slices.Contains(eventTypes(evs), parley.EventTyping) || (len(evs) > 0 && evs[len(evs)-1].ID != u.head) {
			t.Fatalf("log of %s after typing: %v (head was %d)", u.user.Username, eventTypes(evs), u.head)
		}
	}
	replay := n.OpenStream(t, p.pro.Token, 0)
	for {
		e := replay.Next(t, 5*time.Second)
		if e.Type == parley.EventTyping {
			t.Fatalf("typing replayed")
		}
		if e.ID == proHead {
			break
		}
	}
}

// TestSendIdempotentWithQuote: a retry of a message with a quote is looked
// up before the checks a retry would fail, answers the original, and takes
// no seq (the next message's seq follows the original's).
func TestSendIdempotentWithQuote(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	n := p.n
	path := "/api/conversations/" + p.conv.ID + "/messages"
	var quoted, first, again, next parley.Message
	if res := n.Do(t, "POST", path, p.pro.Token, map[string]any{"body": "quote me"}, &quoted); res.StatusCode != 201 {
		t.Fatalf("quoted: %d %s", res.StatusCode, res.Body)
	}
	send := map[string]any{"body": "replying", "client_id": "q-1", "reply_to_id": quoted.ID}
	if res := n.Do(t, "POST", path, p.client.Token, send, &first); res.StatusCode != 201 || first.Seq != quoted.Seq+1 {
		t.Fatalf("first: %d %s", res.StatusCode, res.Body)
	}
	for range 2 {
		if res := n.Do(t, "POST", path, p.client.Token, send, &again); res.StatusCode != 200 || again.ID != first.ID || again.Seq != first.Seq {
			t.Fatalf("retry: %d %s", res.StatusCode, res.Body)
		}
	}
	if res := n.Do(t, "POST", path, p.client.Token, map[string]any{"body": "after"}, &next); res.StatusCode != 201 || next.Seq != first.Seq+1 {
		t.Fatalf("next: %d %s, want seq %d", res.StatusCode, res.Body, first.Seq+1)
	}
}
