package parley

import (
	"strings"
	"unicode/utf8"
)

// UnsafeRune reports whether r must not appear in a name or short text that
// other people see (a display name, a bio, a file name): NUL and other
// control characters, the bidirectional marks, embeddings, overrides and
// isolates that can make text read differently from what it is ("exe.pdf"
// shown for "fdp.exe"), and zero-width characters that make two different
// names look the same. Line breaks are the caller's to allow.
func UnsafeRune(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7f && r < 0xa0: // C0 and C1 controls, DEL
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f: // Arabic letter mark, LRM, RLM
		return true
	case r >= 0x202a && r <= 0x202e: // LRE, RLE, PDF, LRO, RLO
		return true
	case r >= 0x2066 && r <= 0x2069: // LRI, RLI, FSI, PDI
		return true
	case r >= 0x200b && r <= 0x200d, r == 0x2060, r == 0xfeff: // zero-width space, (non-)joiner, word joiner, BOM
		return true
	case r == 0xfffd: // what invalid UTF-8 decodes to
		return true
	}
	return false
}

// MaxDisplayNameChars bounds a display name, in characters after trimming.
const MaxDisplayNameChars = 64

// DisplayName checks a display name a person or an app's backend gives
// (registration, PATCH /api/me, the server API): trimmed, 1–64 characters,
// valid UTF-8, and nothing UnsafeRune names, since a name is how people tell
// each other apart and a bidi override or a zero-width character lets one
// pass for another. What is wrong is refused with invalid_request on
// display_name, never silently changed: the caller can fix it.
func DisplayName(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !utf8.ValidString(s) {
		return "", Invalid("display_name", "display_name must be valid UTF-8")
	}
	if strings.IndexFunc(s, UnsafeRune) >= 0 {
		return "", Invalid("display_name", "display_name must not contain control, bidirectional or zero-width characters")
	}
	switch n := utf8.RuneCountInString(s); {
	case n == 0:
		return "", Invalid("display_name", "display_name must not be empty")
	case n > MaxDisplayNameChars:
		return "", Invalid("display_name", "display_name must be at most %d characters", MaxDisplayNameChars)
	}
	return s, nil
}

// StripDisplayName is DisplayName for a name nobody can be asked to fix (a
// token's name claim, signed by the app): the characters DisplayName would
// refuse are removed and the rest trimmed and cut to 64 characters. It
// returns "" when nothing is left.
func StripDisplayName(s string) string {
	s = strings.ToValidUTF8(s, "")
	s = strings.TrimSpace(strings.Map(func(r rune) rune {
		if UnsafeRune(r) {
			return -1
		}
		return r
	}, s))
	if utf8.RuneCountInString(s) > MaxDisplayNameChars {
		s = strings.TrimSpace(string([]rune(s)[:MaxDisplayNameChars]))
	}
	return s
}
