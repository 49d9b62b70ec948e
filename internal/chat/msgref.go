package chat

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// messageRef reads the conversation, seq and sender of a message.created
// event's data. Delivered calls it for every message a stream writes, the
// sender's copy included, and a json.Unmarshal of the whole message was 4 %
// of a chat server's CPU, most of it spent on the body, which Message
// encodes after these three fields. So this scans the top-level object only
// until it has them, skipping what comes before without decoding it.
//
// data is valid JSON: what json.Marshal made of a parley.Message, or of the
// {id, deleted} a log reference renders to once its message is gone (no
// conversation: skipped). So the scan need not validate what it skips. What
// the encoder does not write (an escape in a key or in the ids, a key in
// another case, a seq that is not a plain integer) sends the data to
// encoding/json, which then decides. conv and sender alias data; sender is
// empty for a system message.
func messageRef(data []byte) (conv []byte, seq int64, sender []byte, ok bool) {
	if conv, seq, sender, sure := scanMessageRef(data); sure {
		return conv, seq, sender, true
	}
	var m struct {
		ConversationID string `json:"conversation_id"`
		Seq            int64  `json:"seq"`
		SenderID       string `json:"sender_id"`
	}
	if json.Unmarshal(data, &m) != nil {
		return nil, 0, nil, false
	}
	return []byte(m.ConversationID), m.Seq, []byte(m.SenderID), true
}

var (
	keyConversation = []byte("conversation_id")
	keySeq          = []byte("seq")
	keySender       = []byte("sender_id")
)

// scanMessageRef is messageRef's fast path; sure is false where encoding/json
// must decide.
func scanMessageRef(b []byte) (conv []byte, seq int64, sender []byte, sure bool) {
	const (
		haveConv = 1 << iota
		haveSeq
		haveSender
		haveAll = haveConv | haveSeq | haveSender
	)
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, 0, nil, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil, 0, nil, true
	}
	var have int
	for {
		key, next, ok := plainString(b, i)
		if !ok {
			return nil, 0, nil, false
		}
		i = skipSpace(b, next)
		if i >= len(b) || b[i] != ':' {
			return nil, 0, nil, false
		}
		i = skipSpace(b, i+1)
		var field int
		switch {
		case bytes.Equal(key, keyConversation):
			field = haveConv
		case bytes.Equal(key, keySeq):
			field = haveSeq
		case bytes.Equal(key, keySender):
			field = haveSender
		case bytes.EqualFold(key, keyConversation) || bytes.EqualFold(key, keySeq) ||
			bytes.EqualFold(key, keySender) || !isASCII(key):
			// encoding/json matches keys case-insensitively, and folds
			// some non-ASCII letters to ASCII ones (ſ to s).
			return nil, 0, nil, false
		}
		if field&have != 0 {
			return nil, 0, nil, false // a repeated key: the last one counts
		}
		if field != 0 {
			have |= field
		}
		switch {
		case field == 0:
			if i, ok = skipValue(b, i); !ok {
				return nil, 0, nil, false
			}
		case isNull(b, i):
			i += len("null") // leaves the field as it was: zero
		case field == haveSeq:
			j := i
			if j < len(b) && b[j] == '-' {
				j++
			}
			for j < len(b) && b[j] >= '0' && b[j] <= '9' {
				j++
			}
			if j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E') {
				return nil, 0, nil, false
			}
			n, err := strconv.ParseInt(string(b[i:j]), 10, 64)
			if err != nil {
				return nil, 0, nil, false
			}
			seq, i = n, j
		default:
			s, next, ok := plainString(b, i)
			if !ok || !isASCII(s) {
				// encoding/json would make invalid UTF-8 U+FFFD.
				return nil, 0, nil, false
			}
			if field == haveConv {
				conv = s
			} else {
				sender = s
			}
			i = next
		}
		if have == haveAll {
			return conv, seq, sender, true
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return nil, 0, nil, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return conv, seq, sender, true
		default:
			return nil, 0, nil, false
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func isNull(b []byte, i int) bool { return bytes.HasPrefix(b[i:], []byte("null")) }

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// plainString returns the contents of the string at b[i] and the index past
// it; ok is false if there is none or it holds an escape.
func plainString(b []byte, i int) (s []byte, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	end := bytes.IndexByte(b[i+1:], '"')
	if end < 0 {
		return nil, 0, false
	}
	s = b[i+1 : i+1+end]
	if bytes.IndexByte(s, '\\') >= 0 {
		return nil, 0, false
	}
	return s, i + 2 + end, true
}

// skipValue returns the index past the value at b[i].
func skipValue(b []byte, i int) (int, bool) {
	depth := 0
	for i < len(b) {
		switch c := b[i]; {
		case c == '"':
			next, ok := skipString(b, i)
			if !ok {
				return 0, false
			}
			i = next
		case c == '{' || c == '[':
			depth++
			i++
			continue
		case c == '}' || c == ']':
			if depth == 0 {
				return i, true // the object's end, after a number or literal
			}
			depth--
			i++
		case depth == 0 && (c == ',' || isSpace(c)):
			return i, true // after a number or literal
		default:
			i++
			continue
		}
		if depth == 0 {
			return i, true
		}
	}
	return 0, false
}

// skipString returns the index past the string that starts at b[i].
func skipString(b []byte, i int) (int, bool) {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1, true
		}
	}
	return 0, false
}
