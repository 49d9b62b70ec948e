package client_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/parley-chat/parley/client"
)

// ev is a dispatched event in comparable form.
type ev struct {
	ID    string
	HasID bool
	Type  string
	Data  string
}

func (e ev) String() string {
	return fmt.Sprintf("{id %q (%v) type %q data %q}", e.ID, e.HasID, e.Type, e.Data)
}

// readAll parses input through r and returns the events and the final error.
func readAll(t testing.TB, r *client.Reader) ([]ev, error) {
	t.Helper()
	var out []ev
	for i := 0; ; i++ {
		if i > 1<<20 {
			t.Fatal("reader does not terminate")
		}
		raw, err := r.Next()
		if err != nil {
			return out, err
		}
		out = append(out, ev{string(raw.ID), raw.HasID, string(raw.Type), string(raw.Data)})
	}
}

func TestReader(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []ev
	}{
		{"empty", "", nil},
		{"single", "data: hello\n\n", []ev{{Data: "hello"}}},
		{"parley durable", "id: 7\nevent: message.created\ndata: {\"a\":1}\n\n",
			[]ev{{ID: "7", HasID: true, Type: "message.created", Data: `{"a":1}`}}},
		{"multi-line data joined by LF", "data: a\ndata: b\ndata:\ndata: c\n\n", []ev{{Data: "a\nb\n\nc"}}},
		{"only one leading space removed", "data:  two\ndata:none\n\n", []ev{{Data: " two\nnone"}}},
		{"CRLF", "event: x\r\ndata: 1\r\n\r\ndata: 2\r\n\r\n", []ev{{Type: "x", Data: "1"}, {Data: "2"}}},
		{"CR only", "event: x\rdata: 1\r\rdata: 2\r\r", []ev{{Type: "x", Data: "1"}, {Data: "2"}}},
		{"mixed endings", "data: a\r\ndata: b\rdata: c\n\r\n", []ev{{Data: "a\nb\nc"}}},
		{"CR CR LF is two line ends", "data: a\r\r\ndata: b\n\n", []ev{{Data: "a"}, {Data: "b"}}},
		{"comments ignored", ": ping\n:\ndata: x\n: mid-event\n\n: ping\n", []ev{{Data: "x"}}},
		{"BOM at start skipped", "\uFEFFdata: x\n\n", []ev{{Data: "x"}}},
		{"BOM makes first field unknown only once", "\uFEFF\uFEFFdata: x\n\ndata: y\n\n", []ev{{Data: "y"}}},
		{"field without colon", "data\n\ndata\ndata\n\n", []ev{{Data: ""}, {Data: "\n"}}},
		{"event without colon resets type", "event: a\nevent\ndata: x\n\n", []ev{{Data: "x"}}},
		{"no data no dispatch", "event: a\nid: 3\n\ndata: x\n\n", []ev{{Data: "x"}}},
		{"type does not leak to next event", "event: a\ndata: 1\n\ndata: 2\n\n", []ev{{Type: "a", Data: "1"}, {Data: "2"}}},
		{"ephemeral after durable has no id", "id: 1\ndata: a\n\nevent: typing\ndata: b\n\n",
			[]ev{{ID: "1", HasID: true, Data: "a"}, {Type: "typing", Data: "b"}}},
		{"id with NUL ignored", "id: 1\x002\ndata: a\n\n", []ev{{Data: "a"}}},
		{"empty id", "id\ndata: a\n\n", []ev{{ID: "", HasID: true, Data: "a"}}},
		{"unknown fields ignored", "foo: bar\nDATA: no\ndata : no\ndata: yes\n\n", []ev{{Data: "yes"}}},
		{"colon in value kept", "data: a: b:c\n\n", []ev{{Data: "a: b:c"}}},
		{"incomplete event at EOF dropped", "data: a\n\ndata: b\n", []ev{{Data: "a"}}},
		{"incomplete line at EOF dropped", "data: a\n\ndata: b", []ev{{Data: "a"}}},
		{"last field wins", "event: a\nevent: b\nid: 1\nid: 2\ndata: x\n\n", []ev{{ID: "2", HasID: true, Type: "b", Data: "x"}}},
		{"unicode", "data: héllo ✓ 🎉\n\n", []ev{{Data: "héllo ✓ 🎉"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Whole input at once, then one byte per read: the result
			// must not depend on how the bytes arrive.
			for _, src := range []struct {
				name string
				r    io.Reader
			}{
				{"whole", strings.NewReader(tt.input)},
				{"bytewise", iotest.OneByteReader(strings.NewReader(tt.input))},
				{"halves", iotest.HalfReader(strings.NewReader(tt.input))},
			} {
				got, err := readAll(t, client.NewReaderSize(src.r, 16))
				if err != io.EOF {
					t.Errorf("%s: final error %v, want io.EOF", src.name, err)
				}
				if !equalEvents(got, tt.want) {
					t.Errorf("%s: got %v\nwant %v", src.name, got, tt.want)
				}
			}
		})
	}
}

func equalEvents(a, b []ev) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestReaderRetryAndComments(t *testing.T) {
	r := client.NewReader(strings.NewReader("retry: 1500\n: ping\n: ping\nretry: x\nretry:\nretry: 12a\ndata: x\n\n"))
	if _, ok := r.Retry(); ok {
		t.Fatal("Retry set before any input was read")
	}
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if d, ok := r.Retry(); !ok || d != 1500*time.Millisecond {
		t.Errorf("Retry = %v, %v; want 1.5s, true (invalid values must be ignored)", d, ok)
	}
	if n := r.Comments(); n != 2 {
		t.Errorf("Comments = %d, want 2", n)
	}
	// A huge retry saturates rather than wrapping negative.
	r = client.NewReader(strings.NewReader("retry: 99999999999999999999999999\ndata: x\n\n"))
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if d, _ := r.Retry(); d <= 0 {
		t.Errorf("huge retry gave %v", d)
	}
}

func TestReaderLastEventIDPersists(t *testing.T) {
	r := client.NewReader(strings.NewReader("id: 5\ndata: a\n\ndata: b\n\n"))
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	raw, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if raw.HasID || raw.ID != nil {
		t.Errorf("second event reports id %q (HasID %v); it carried none", raw.ID, raw.HasID)
	}
	if got := string(r.LastEventID()); got != "5" {
		t.Errorf("LastEventID = %q, want 5", got)
	}
}

func TestReaderLongLines(t *testing.T) {
	long := strings.Repeat("x", 10000)
	in := "data: " + long + "\r\nid: " + strings.Repeat("9", 30) + "\r\n\r\n"
	got, err := readAll(t, client.NewReaderSize(iotest.HalfReader(strings.NewReader(in)), 16))
	if err != io.EOF {
		t.Fatal(err)
	}
	want := []ev{{ID: strings.Repeat("9", 30), HasID: true, Data: long}}
	if !equalEvents(got, want) {
		t.Errorf("long line mangled: got %d events", len(got))
	}
}

func TestReaderMaxEventSize(t *testing.T) {
	for _, in := range []string{
		"data: " + strings.Repeat("x", 200) + "\n\n",                     // one long line
		strings.Repeat("data: "+strings.Repeat("x", 50)+"\n", 10) + "\n", // many short lines
		"data: " + strings.Repeat("x", 200),                              // a line that never ends
	} {
		r := client.NewReaderSize(strings.NewReader(in), 16)
		r.MaxEventSize = 100
		if _, err := r.Next(); !errors.Is(err, client.ErrEventTooLarge) {
			t.Errorf("got %v, want ErrEventTooLarge", err)
		}
		if _, err := r.Next(); !errors.Is(err, client.ErrEventTooLarge) {
			t.Errorf("error is not sticky: %v", err)
		}
	}
}

func TestReaderReadError(t *testing.T) {
	boom := errors.New("boom")
	r := client.NewReader(io.MultiReader(strings.NewReader("data: a\n\ndata: b\n"), iotest.ErrReader(boom)))
	if raw, err := r.Next(); err != nil || string(raw.Data) != "a" {
		t.Fatalf("first event: %q, %v", raw.Data, err)
	}
	if _, err := r.Next(); !errors.Is(err, boom) {
		t.Fatalf("got %v, want the read error", err)
	}
}

// slowReader hands out its chunks one per Read and then blocks on a channel,
// like a live connection: an event must be dispatched as soon as its blank
// line has arrived, without waiting for more input.
type slowReader struct {
	chunks []string
	more   chan struct{}
}

func (s *slowReader) Read(p []byte) (int, error) {
	if len(s.chunks) == 0 {
		<-s.more
		return 0, io.EOF
	}
	n := copy(p, s.chunks[0])
	s.chunks[0] = s.chunks[0][n:]
	if s.chunks[0] == "" {
		s.chunks = s.chunks[1:]
	}
	return n, nil
}

func TestReaderDispatchesWithoutReadingAhead(t *testing.T) {
	for _, end := range []string{"\n\n", "\r\n\r\n", "\r\r"} {
		src := &slowReader{chunks: []string{"\uFEFF", "data: x" + end}, more: make(chan struct{})}
		r := client.NewReader(src)
		done := make(chan RawOrErr, 1)
		go func() {
			raw, err := r.Next()
			done <- RawOrErr{string(raw.Data), err}
		}()
		select {
		case got := <-done:
			if got.err != nil || got.data != "x" {
				t.Errorf("%q: got %q, %v", end, got.data, got.err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%q: event not dispatched until more input arrives", end)
		}
		close(src.more)
	}
}

type RawOrErr struct {
	data string
	err  error
}

func TestReaderAllocations(t *testing.T) {
	frame := []byte("id: 123\nevent: app.bench\ndata: {\"t\":1732233445566778899}\n\n: ping\n\n")
	src := bytes.NewReader(nil)
	r := client.NewReader(src)
	// Warm the buffers up.
	for i := 0; i < 3; i++ {
		src.Reset(frame)
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(1000, func() {
		src.Reset(frame)
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Next allocates %.1f times per event, want 0", allocs)
	}
}

func BenchmarkReader(b *testing.B) {
	frame := []byte("id: 123\nevent: app.bench\ndata: {\"t\":1732233445566778899}\n\n")
	src := bytes.NewReader(nil)
	r := client.NewReader(src)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		src.Reset(frame)
		if _, err := r.Next(); err != nil {
			b.Fatal(err)
		}
	}
}
