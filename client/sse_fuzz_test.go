package client_test

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/parley-chat/parley/client"
)

// FuzzSSEReader checks three properties of the stream parser on any input:
// it terminates without panicking; it agrees with refParse, a literal,
// non-streaming transcription of the HTML standard's algorithm, however the
// bytes are split across reads; and events written by encodeEvents (with LF,
// CRLF or CR line ends and interleaved comments) parse back unchanged.
func FuzzSSEReader(f *testing.F) {
	for _, s := range []string{
		"",
		"data: hello\n\n",
		"id: 1\nevent: message.created\ndata: {\"a\":1}\n\n",
		"\uFEFFdata: a\r\ndata: b\r\n\r\n",
		"event: x\rdata: 1\r\r: ping\r",
		"data\n\nid\nretry: 100\ndata:  x\n\n",
		"id: 1\x002\ndata\n\n",
		"data: a\r\r\ndata: b",
		"\x00id\x00evt\x00line1\nline2\x00\x00\x00data with: colon",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		want := refParse(in)
		for _, size := range []int{1, 3, 7, 4096} {
			r := client.NewReaderSize(&chunkReader{b: in, size: size}, 16)
			got, err := readAll(t, r)
			if err != io.EOF {
				t.Fatalf("chunks of %d: final error %v, want io.EOF", size, err)
			}
			if !equalEvents(got, want) {
				t.Fatalf("chunks of %d: input %q\n got %v\nwant %v", size, in, got, want)
			}
			for _, e := range got {
				if strings.ContainsAny(e.Type, "\r\n") || strings.ContainsAny(e.ID, "\r\n\x00") || strings.Contains(e.Data, "\r") {
					t.Fatalf("line break or NUL leaked into %v", e)
				}
			}
		}

		events := eventsFromBytes(in)
		wire := encodeEvents(events, len(in))
		got, err := readAll(t, client.NewReaderSize(&chunkReader{b: wire, size: 1 + len(in)%5}, 16))
		if err != io.EOF {
			t.Fatalf("round trip: final error %v", err)
		}
		if !equalEvents(got, events) {
			t.Fatalf("round trip of %v\nwire %q\n got %v\nwant %v", events, wire, got, events)
		}
	})
}

// chunkReader returns b at most size bytes per Read.
type chunkReader struct {
	b    []byte
	size int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.size)], c.b)
	c.b = c.b[n:]
	return n, nil
}

// refParse is the HTML standard's event stream interpretation, transcribed
// step by step over the whole input at once.
func refParse(in []byte) []ev {
	s := strings.TrimPrefix(string(in), "\uFEFF")
	var lines []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\r' || s[i] == '\n' {
			lines = append(lines, s[start:i])
			if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
				i++
			}
			start = i + 1
		}
	}
	// Whatever follows the last line end is an incomplete line: dropped.
	var out []ev
	var data, typ, id string
	hasID := false
	for _, line := range lines {
		if line == "" {
			if data == "" {
				typ, hasID = "", false
				continue
			}
			e := ev{HasID: hasID, Type: typ, Data: strings.TrimSuffix(data, "\n")}
			if hasID {
				e.ID = id
			}
			out = append(out, e)
			data, typ, hasID = "", "", false
			continue
		}
		if line[0] == ':' {
			continue
		}
		name, value := line, ""
		if i := strings.IndexByte(line, ':'); i >= 0 {
			name, value = line[:i], strings.TrimPrefix(line[i+1:], " ")
		}
		switch name {
		case "event":
			typ = value
		case "data":
			data += value + "\n"
		case "id":
			if !strings.Contains(value, "\x00") {
				id, hasID = value, true
			}
		}
	}
	return out
}

// eventsFromBytes derives events from fuzz input: NUL-separated triples of
// id, type and data, stripped of what an event stream cannot carry in them.
func eventsFromBytes(in []byte) []ev {
	parts := bytes.Split(in, []byte{0})
	var out []ev
	for i := 0; i+2 < len(parts); i += 3 {
		id := strings.Map(dropRunes("\r\n"), string(parts[i]))
		typ := strings.Map(dropRunes("\r\n"), string(parts[i+1]))
		data := strings.Map(dropRunes("\r"), string(parts[i+2]))
		out = append(out, ev{ID: id, HasID: id != "", Type: typ, Data: data})
	}
	return out
}

func dropRunes(set string) func(rune) rune {
	return func(r rune) rune {
		if strings.ContainsRune(set, r) {
			return -1
		}
		return r
	}
}

// encodeEvents writes events as a server would, varying the line end and
// putting heartbeat comments between events as seed dictates.
func encodeEvents(events []ev, seed int) []byte {
	eols := []string{"\n", "\r\n", "\r"}
	var b bytes.Buffer
	for i, e := range events {
		eol := eols[(seed+i)%3]
		if (seed+i)%2 == 1 {
			b.WriteString(": ping" + eol)
		}
		if e.HasID {
			b.WriteString("id: " + e.ID + eol)
		}
		if e.Type != "" {
			b.WriteString("event: " + e.Type + eol)
		}
		for _, line := range strings.Split(e.Data, "\n") {
			b.WriteString("data: " + line + eol)
		}
		b.WriteString(eol)
	}
	return b.Bytes()
}
