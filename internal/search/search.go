// Package search turns message text into the words Parley's full-text index
// keeps, and a person's query into each database's query syntax.
//
// Both back ends use their own full-text search (SQLite FTS5, PostgreSQL
// tsvector with a GIN index), but neither tokenizes or folds text here: Go
// does, once, the same way for both. Words are runs of letters, digits and
// spacing marks after NFKD decomposition, with non-spacing marks (accents)
// dropped and letters case-folded, so "Café", "CAFE" and "cafe" (and
// "Straße" and "strasse") are one word in either store. Doing it in Go, rather than with PostgreSQL's
// unaccent (an extension a managed database may not offer) or FTS5's
// remove_diacritics (whose folding tables differ from PostgreSQL's), makes
// the two stores find exactly the same messages, and keeps a query's words
// out of the databases' query parsers: a query is rebuilt from its words,
// each quoted, so no FTS operator a person types ever reaches the database.
package search

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// Limits of what is indexed and searched.
const (
	// MaxWordRunes is where a word is cut, in the index and in queries
	// alike; a longer query word then still matches as a prefix.
	// PostgreSQL refuses lexemes over 2 KiB, and nobody searches for more.
	MaxWordRunes = 64
	// MaxQueryWords is how many words of a query are used; more are
	// refused, since each one is another index lookup.
	MaxQueryWords = 16
	// MaxQueryBytes bounds the raw query.
	MaxQueryBytes = 1000
)

// Words returns the distinct normalised words of s in the order they first
// appear.
func Words(s string) []string {
	if isASCII(s) {
		return asciiWords(s)
	}
	if !utf8.ValidString(s) {
		// NFKD does not decompose reliably next to bytes that are not
		// UTF-8: "\xf6ė" kept its ė whole, and decomposed it with a
		// no-break space after. Each run of them becomes U+FFFD, which is
		// no word character and so splits. A JSON body cannot hold them;
		// a query string can.
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	var ws wordSet
	// Full Unicode case folding; a Caser keeps state, so one per call.
	fold := cases.Fold()
	var b strings.Builder
	n := 0
	// A run of marks alone is no word: FTS5's tokenizer splits on marks, so
	// it would index nothing for it and a query for it would find nothing.
	alnum := false
	flush := func() {
		if alnum {
			// Full case folding on top of ToLower: ß and ss are one word.
			ws.add(cutRunes(fold.String(b.String()), MaxWordRunes))
		}
		b.Reset()
		n, alnum = 0, false
	}
	for _, r := range norm.NFKD.String(s) {
		switch {
		case unicode.Is(unicode.Mn, r):
			// An accent (or another non-spacing mark): dropped, and it
			// does not end the word.
		case unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mc, r) || unicode.Is(unicode.Me, r):
			if n < MaxWordRunes {
				// Only what is kept counts: a word cut after 64 marks is
				// marks alone.
				alnum = alnum || unicode.IsLetter(r) || unicode.IsDigit(r)
				b.WriteRune(unicode.ToLower(r))
			}
			n++
		default:
			flush()
		}
	}
	flush()
	return ws.out
}

// asciiWords is Words for ASCII text, which NFKD and case folding leave as
// it is but for upper case: the common case of every send, without their
// allocations.
func asciiWords(s string) []string {
	var ws wordSet
	lower := strings.ToLower(s) // one allocation, none if already lower
	start := -1
	for i := 0; i <= len(lower); i++ {
		word := i < len(lower) && (lower[i] >= 'a' && lower[i] <= 'z' || lower[i] >= '0' && lower[i] <= '9')
		switch {
		case word && start < 0:
			start = i
		case !word && start >= 0:
			ws.add(lower[start:min(i, start+MaxWordRunes)])
			start = -1
		}
	}
	return ws.out
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// wordSet collects distinct words in order: a linear scan while they are
// few (a message has a few dozen), a map beyond.
type wordSet struct {
	out  []string
	seen map[string]bool
}

func (ws *wordSet) add(w string) {
	if ws.seen != nil {
		if !ws.seen[w] {
			ws.seen[w] = true
			ws.out = append(ws.out, w)
		}
		return
	}
	for _, x := range ws.out {
		if x == w {
			return
		}
	}
	ws.out = append(ws.out, w)
	if len(ws.out) == 32 {
		ws.seen = make(map[string]bool, 64)
		for _, x := range ws.out {
			ws.seen[x] = true
		}
	}
}

func cutRunes(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}

// IndexText is what the SQLite index is given for a message body: its words
// separated by spaces. FTS5's unicode61 tokenizer splits it back into
// exactly these words.
func IndexText(body string) string { return strings.Join(Words(body), " ") }

// TSVector is a PostgreSQL tsvector literal of the body's words, for a
// $1::tsvector parameter: each word a quoted lexeme, so PostgreSQL's own
// parser never re-splits or re-folds what Go normalised.
func TSVector(body string) string {
	words := Words(body)
	var b strings.Builder
	for i, w := range words {
		if i > 0 {
			b.WriteByte(' ')
		}
		writePGLexeme(&b, w)
	}
	return b.String()
}

// FTS5Query is the MATCH expression for words: every word, as a quoted
// prefix phrase ("word"*), must occur.
func FTS5Query(words []string) string {
	var b strings.Builder
	for i, w := range words {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteByte('"')
		// Words hold no quotes, but the quoting must not depend on that.
		b.WriteString(strings.ReplaceAll(w, `"`, `""`))
		b.WriteString(`"*`)
	}
	return b.String()
}

// TSQuery is a PostgreSQL tsquery literal for words, for a $1::tsquery
// parameter: every word as a quoted prefix lexeme ('word':*), joined by &.
func TSQuery(words []string) string {
	var b strings.Builder
	for i, w := range words {
		if i > 0 {
			b.WriteString(" & ")
		}
		writePGLexeme(&b, w)
		b.WriteString(":*")
	}
	return b.String()
}

// writePGLexeme writes w as a quoted lexeme of the tsvector/tsquery input
// syntax, where a quote is doubled and a backslash escapes.
func writePGLexeme(b *strings.Builder, w string) {
	b.WriteByte('\'')
	for _, r := range w {
		switch r {
		case '\'':
			b.WriteString("''")
		case '\\':
			b.WriteString(`\\`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('\'')
}
