package parley

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
