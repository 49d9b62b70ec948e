package store

import (
	"encoding/json"
	"testing"

	"github.com/parley-chat/parley"
)

// FuzzStoredForm: whatever payload a conversation.created or message event
// carries, its stored form is valid JSON, and a reference found in it
// splices back into valid JSON (render's path), never a panic.
func FuzzStoredForm(f *testing.F) {
	f.Add(`{"id":"conv_1","client":{"id":"u"},"last_message":{"id":"msg_1","body":"hi"},"unread_count":0}`, true)
	f.Add(`{"id":"msg_1","body":"x"}`, false)
	f.Add(`{"last_message":null}`, true)
	f.Add(`{"a":[1,{"last_message":{"id":"n"}}],"last_message" : {"id":"m"} }`, true)
	f.Add(`[]`, false)
	f.Fuzz(func(t *testing.T, data string, conv bool) {
		if !json.Valid([]byte(data)) {
			return
		}
		typ := parley.EventMessageUpdated
		if conv {
			typ = parley.EventConversationCreated
		}
		e := storedForm(parley.Event{Type: typ, Data: json.RawMessage(data)})
		if !json.Valid(e.Data) {
			t.Fatalf("stored form of %s is not JSON: %s", data, e.Data)
		}
		if id, start, end, ok := refIn(e); ok {
			if id == "" {
				t.Fatalf("empty reference in %s", e.Data)
			}
			out := splice(e.Data, start, end, []byte(`{"id":"x"}`))
			if !json.Valid(out) {
				t.Fatalf("rendered %s is not JSON: %s", e.Data, out)
			}
		}
	})
}

// TestStoredFormKeepsTheRest: a conversation.created keeps every byte but its
// last_message, which becomes a reference and renders back in place.
func TestStoredFormKeepsTheRest(t *testing.T) {
	in := `{"id":"conv_1","client":{"id":"u","display_name":"A"},"last_message":{"id":"msg_1","body":"secret"},"unread_count":1}`
	e := storedForm(parley.Event{Type: parley.EventConversationCreated, Data: json.RawMessage(in)})
	want := `{"id":"conv_1","client":{"id":"u","display_name":"A"},"last_message":{"$msg":"msg_1"},"unread_count":1}`
	if string(e.Data) != want {
		t.Fatalf("stored %s, want %s", e.Data, want)
	}
	id, start, end, ok := refIn(e)
	if !ok || id != "msg_1" {
		t.Fatalf("refIn = %q %v", id, ok)
	}
	if got := string(splice(e.Data, start, end, []byte(`{"id":"msg_1","body":""}`))); got != `{"id":"conv_1","client":{"id":"u","display_name":"A"},"last_message":{"id":"msg_1","body":""},"unread_count":1}` {
		t.Fatalf("rendered %s", got)
	}
	m := storedForm(parley.Event{Type: parley.EventMessageCreated, Data: json.RawMessage(`{"id":"msg_2","body":"secret"}`)})
	if string(m.Data) != `{"$msg":"msg_2"}` {
		t.Fatalf("stored message %s", m.Data)
	}
	other := storedForm(parley.Event{Type: "app.x", Data: json.RawMessage(`{"$msg":"msg_2"}`)})
	if _, _, _, ok := refIn(other); ok {
		t.Fatal("an app event is taken for a reference")
	}
}
