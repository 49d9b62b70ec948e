package chat

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley"
)

// fullRef is what messageRef must agree with: encoding/json's reading.
func fullRef(data []byte) (conv string, seq int64, sender string, ok bool) {
	var m struct {
		ConversationID string `json:"conversation_id"`
		Seq            int64  `json:"seq"`
		SenderID       string `json:"sender_id"`
	}
	if json.Unmarshal(data, &m) != nil {
		return "", 0, "", false
	}
	return m.ConversationID, m.Seq, m.SenderID, true
}

func marshalMessage(t testing.TB, m *parley.Message) []byte {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMessageRef(t *testing.T) {
	alice := "usr_alice"
	msg := &parley.Message{ID: parley.NewTimeID("msg"), ConversationID: "cnv_1", Seq: 42, Kind: "text",
		SenderID: &alice, Body: `he said "}{" \ ` + "\n\u2028", ClientID: &alice,
		ReplyTo:   &parley.Reply{ID: "msg_0", SenderID: &alice, Preview: `"quoted", {x}`},
		CreatedAt: parley.T(time.Now()), Attachments: parley.Attachments{}}
	system := *msg
	system.SenderID = nil
	for _, tc := range []struct {
		name   string
		data   []byte
		fast   bool // the scan decides, without encoding/json
		conv   string
		seq    int64
		sender string
		ok     bool
	}{
		{"as encoded", marshalMessage(t, msg), true, "cnv_1", 42, "usr_alice", true},
		{"system message", marshalMessage(t, &system), true, "cnv_1", 42, "", true},
		{"other order, spaces", []byte(` { "body" : "a,b}" , "n" : [1, {"seq": 9}], "x": -1.5e3 , "sender_id":"u", "seq" : -7 , "conversation_id" : "c" } `), true, "c", -7, "u", true},
		{"ends before all three", []byte(`{"seq":3, "z": true}`), true, "", 3, "", true},
		{"empty object", []byte(`{}`), true, "", 0, "", true},
		{"null fields", []byte(`{"conversation_id":null,"seq":null,"sender_id":null}`), true, "", 0, "", true},
		{"escaped id", []byte(`{"conversation_id":"c\u0031","seq":1,"sender_id":"u"}`), false, "c1", 1, "u", true},
		{"key in another case", []byte(`{"Conversation_ID":"c","seq":1,"sender_id":"u"}`), false, "c", 1, "u", true},
		{"folded key", []byte(`{"conversation_id":"c","ſeq":2,"sender_id":"u"}`), false, "c", 2, "u", true},
		{"repeated key", []byte(`{"seq":1,"seq":2,"conversation_id":"c","sender_id":"u"}`), false, "c", 2, "u", true},
		{"float seq", []byte(`{"seq":1.5,"conversation_id":"c","sender_id":"u"}`), false, "", 0, "", false},
		{"string seq", []byte(`{"seq":"1","conversation_id":"c","sender_id":"u"}`), false, "", 0, "", false},
		{"number id", []byte(`{"seq":1,"conversation_id":5,"sender_id":"u"}`), false, "", 0, "", false},
		{"not an object", []byte(`[1]`), false, "", 0, "", false},
		{"cut short", []byte(`{"seq":1,"conversation_id":"c`), false, "", 0, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, _, sure := scanMessageRef(tc.data); sure != tc.fast {
				t.Errorf("scan decided: %v, want %v", sure, tc.fast)
			}
			conv, seq, sender, ok := messageRef(tc.data)
			if string(conv) != tc.conv || seq != tc.seq || string(sender) != tc.sender || ok != tc.ok {
				t.Errorf("messageRef = %q %d %q %v, want %q %d %q %v", conv, seq, sender, ok, tc.conv, tc.seq, tc.sender, tc.ok)
			}
			c, s, u, k := fullRef(tc.data)
			if string(conv) != c || seq != s || string(sender) != u || ok != k {
				t.Errorf("encoding/json reads %q %d %q %v", c, s, u, k)
			}
		})
	}
}

// FuzzMessageRef: on any input it does not panic, and on valid JSON it reads
// what encoding/json reads, unless one of its keys is repeated (it stops
// reading once it has all three; the log never holds such data).
func FuzzMessageRef(f *testing.F) {
	alice := "usr_alice"
	f.Add(marshalMessage(f, &parley.Message{ConversationID: "cnv_1", Seq: 1, SenderID: &alice, Body: "hi"}))
	f.Add([]byte(`{"body":"}","seq":-0,"conversation_id":"c","sender_id":null,"x":[{"a":"\""}]}`))
	f.Add([]byte(`{"SEQ":1,"conversation_id":"\u00e9","sender_id":"\ud800"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		conv, seq, sender, ok := messageRef(data)
		if !json.Valid(data) || repeatsKey(data) {
			return
		}
		c, s, u, k := fullRef(data)
		if string(conv) != c || seq != s || string(sender) != u || ok != k {
			t.Fatalf("messageRef(%q) = %q %d %q %v; encoding/json reads %q %d %q %v", data, conv, seq, sender, ok, c, s, u, k)
		}
	})
}

// FuzzMessageRefEncoded: whatever a message holds, messageRef reads its
// encoding right.
func FuzzMessageRefEncoded(f *testing.F) {
	f.Add("cnv_1", int64(3), "usr_a", "hello", "quoted")
	f.Add("c\"<", int64(-1), "", `"seq":9`, "\xff")
	f.Fuzz(func(t *testing.T, conv string, seq int64, sender, body, preview string) {
		m := &parley.Message{ConversationID: conv, Seq: seq, Body: body, Attachments: parley.Attachments{}}
		if sender != "" {
			m.SenderID = &sender
			m.ReplyTo = &parley.Reply{ID: body, SenderID: &sender, Preview: preview}
		}
		data := marshalMessage(t, m)
		gotConv, gotSeq, gotSender, ok := messageRef(data)
		c, s, u, k := fullRef(data)
		if string(gotConv) != c || gotSeq != s || string(gotSender) != u || ok != k || !ok {
			t.Fatalf("messageRef(%q) = %q %d %q %v; encoding/json reads %q %d %q %v", data, gotConv, gotSeq, gotSender, ok, c, s, u, k)
		}
	})
}

// repeatsKey reports whether two top-level keys of the object in data fill
// the same field of fullRef's struct, as encoding/json matches keys.
func repeatsKey(data []byte) bool {
	d := json.NewDecoder(bytes.NewReader(data))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		return false
	}
	seen := map[string]bool{}
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return false
		}
		if f := fieldOf(tok.(string)); f != "" {
			if seen[f] {
				return true
			}
			seen[f] = true
		}
		var skip json.RawMessage
		if d.Decode(&skip) != nil {
			return false
		}
	}
	return false
}

// fieldOf names the field of fullRef's struct that encoding/json fills from
// key, or "".
func fieldOf(key string) string {
	var probe struct {
		C int `json:"conversation_id"`
		S int `json:"seq"`
		U int `json:"sender_id"`
	}
	k, _ := json.Marshal(key)
	if json.Unmarshal([]byte(`{`+string(k)+`:1}`), &probe) != nil {
		return ""
	}
	switch {
	case probe.C == 1:
		return "conversation_id"
	case probe.S == 1:
		return "seq"
	case probe.U == 1:
		return "sender_id"
	}
	return ""
}

func BenchmarkMessageRef(b *testing.B) {
	alice := "usr_alice"
	data := marshalMessage(b, &parley.Message{ID: parley.NewTimeID("msg"), ConversationID: "cnv_abcdefghijklmnopqrst",
		Seq: 1234, Kind: "text", SenderID: &alice, Body: strings.Repeat("a chat message ", 8), ClientID: &alice,
		CreatedAt: parley.T(time.Now()), Attachments: parley.Attachments{}})
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			if _, _, _, ok := messageRef(data); !ok {
				b.Fatal("not read")
			}
		}
	})
	b.Run("unmarshal", func(b *testing.B) {
		for b.Loop() {
			if _, _, _, ok := fullRef(data); !ok {
				b.Fatal("not read")
			}
		}
	})
}
