package client

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"time"
)

// ErrEventTooLarge is returned by Reader.Next when a line or an event's data
// grows beyond Reader.MaxEventSize.
var ErrEventTooLarge = errors.New("parley: event stream: event too large")

// DefaultMaxEventSize is the default bound on one event's data and on one line.
const DefaultMaxEventSize = 16 << 20

// RawEvent is one event dispatched by a Reader. Its slices alias the Reader's
// buffers and are valid only until the next call to Next; copy what you keep.
type RawEvent struct {
	// ID is the value of the event's "id" field, if it had one (HasID).
	ID []byte
	// HasID reports whether this event carried an "id" field. (The
	// browser's lastEventId persists across events; see Reader.LastEventID.)
	HasID bool
	// Type is the value of the "event" field, empty if there was none (a
	// browser would report "message").
	Type []byte
	// Data is the event's "data" lines joined by "\n".
	Data []byte
}

// Reader parses a text/event-stream as the HTML standard prescribes: lines end
// in CRLF, LF or CR; a leading byte order mark is skipped; a line starting with
// ":" is a comment; "field: value" loses one space after the colon; a line
// without a colon is a field with an empty value; "data" lines are joined by
// "\n"; an empty line dispatches the event if it had data; an event cut off by
// the end of the stream is discarded.
//
// A Reader is built for many concurrent streams: it starts no goroutine, and
// once warmed up it parses without allocating, reusing its buffers for every
// event. It is not safe for concurrent use.
type Reader struct {
	// MaxEventSize bounds a line and an event's data, in bytes. Zero means
	// DefaultMaxEventSize.
	MaxEventSize int

	br *bufio.Reader

	line    []byte // a line longer than what br holds, assembled here
	data    []byte // data buffer of the event being read
	typ     []byte // event type buffer
	id      []byte // last event ID buffer; persists across events
	hasData bool   // a data field was seen (the data buffer is "non-empty")
	hasID   bool   // an id field was seen in the event being read

	retry    time.Duration
	retrySet bool
	comments int64

	started bool // the byte order mark check is done
	skipLF  bool // the last line ended in CR: a following LF belongs to it
	err     error
}

// NewReader returns a Reader over r with a 4 KiB buffer.
func NewReader(r io.Reader) *Reader { return NewReaderSize(r, 4096) }

// NewReaderSize returns a Reader over r whose buffer holds at least size
// bytes. Lines longer than the buffer are still read whole. If r is already a
// bufio.Reader at least that large, it is used directly.
func NewReaderSize(r io.Reader, size int) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, size)}
}

// LastEventID returns the last event ID buffer: the value of the most recent
// "id" field, kept across events as a browser's EventSource keeps it.
func (r *Reader) LastEventID() []byte { return r.id }

// Retry returns the reconnection delay most recently announced by a "retry"
// field, and whether there was one.
func (r *Reader) Retry() (time.Duration, bool) { return r.retry, r.retrySet }

// Comments returns how many comment lines (such as ": ping" heartbeats) have
// been read so far.
func (r *Reader) Comments() int64 { return r.comments }

// Next reads until the next event is dispatched and returns it. At the end of
// the stream it returns io.EOF (a partly received event is dropped); once it
// has failed it keeps returning the same error.
func (r *Reader) Next() (RawEvent, error) {
	if r.err != nil {
		return RawEvent{}, r.err
	}
	for {
		line, err := r.readLine()
		if err != nil {
			r.err = err
			return RawEvent{}, err
		}
		if len(line) > 0 {
			if err := r.field(line); err != nil {
				r.err = err
				return RawEvent{}, err
			}
			continue
		}
		// An empty line dispatches the event, unless it had no data.
		if !r.hasData {
			r.typ, r.hasID = r.typ[:0], false
			continue
		}
		ev := RawEvent{HasID: r.hasID, Type: r.typ, Data: r.data}
		if r.hasID {
			ev.ID = r.id
		}
		// The buffers are reset lazily: the slices handed out stay intact
		// until the next call.
		r.data, r.typ, r.hasData, r.hasID = r.data[:0], r.typ[:0], false, false
		return ev, nil
	}
}

// field processes one non-empty line.
func (r *Reader) field(line []byte) error {
	if line[0] == ':' {
		r.comments++
		return nil
	}
	name, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(name) { // the conversion does not allocate in a switch
	case "event":
		r.typ = append(r.typ[:0], value...)
	case "data":
		if r.hasData {
			r.data = append(r.data, '\n')
		}
		r.data = append(r.data, value...)
		r.hasData = true
		if len(r.data) > r.maxSize() {
			return ErrEventTooLarge
		}
	case "id":
		// An id containing NUL is ignored, as browsers do.
		if bytes.IndexByte(value, 0) < 0 {
			r.id = append(r.id[:0], value...)
			r.hasID = true
		}
	case "retry":
		if ms, ok := parseDigits(value); ok {
			r.retry, r.retrySet = time.Duration(ms)*time.Millisecond, true
		}
	}
	return nil
}

// maxRetryMS caps a "retry" value so that it fits a time.Duration.
const maxRetryMS = int64(1<<63-1) / int64(time.Millisecond)

// parseDigits parses a non-empty run of ASCII digits, saturating at maxRetryMS.
func parseDigits(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n <= (maxRetryMS-9)/10 {
			n = n*10 + int64(c-'0')
		} else {
			n = maxRetryMS
		}
	}
	return n, true
}

func (r *Reader) maxSize() int {
	if r.MaxEventSize > 0 {
		return r.MaxEventSize
	}
	return DefaultMaxEventSize
}

// readLine returns the next line without its terminator. The slice may alias
// the bufio.Reader's buffer, so it must be consumed before the next read.
func (r *Reader) readLine() ([]byte, error) {
	if !r.started {
		r.started = true
		// A stream shorter than 3 bytes holds no event; its error, if
		// any, surfaces below.
		if b, _ := r.br.Peek(3); len(b) == 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF {
			_, _ = r.br.Discard(3)
		}
	}
	r.line = r.line[:0]
	for {
		if r.br.Buffered() == 0 {
			// Block for more input only when nothing is buffered.
			if _, err := r.br.Peek(1); err != nil {
				return nil, err
			}
		}
		buf, _ := r.br.Peek(r.br.Buffered())
		if r.skipLF {
			r.skipLF = false
			if buf[0] == '\n' {
				_, _ = r.br.Discard(1)
				continue
			}
		}
		i := indexEOL(buf)
		if i < 0 {
			// An incomplete line: keep it and wait for the rest.
			r.line = append(r.line, buf...)
			_, _ = r.br.Discard(len(buf))
			if len(r.line) > r.maxSize() {
				return nil, ErrEventTooLarge
			}
			continue
		}
		line := buf[:i]
		if len(r.line) > 0 {
			r.line = append(r.line, line...)
			line = r.line
		}
		r.skipLF = buf[i] == '\r'
		_, _ = r.br.Discard(i + 1)
		return line, nil
	}
}

// indexEOL returns the index of the first CR or LF in b, or -1. Two
// IndexByte scans (vectorised) beat one byte loop on long lines.
func indexEOL(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return bytes.IndexByte(b, '\r')
	}
	if j := bytes.IndexByte(b[:i], '\r'); j >= 0 {
		return j
	}
	return i
}
