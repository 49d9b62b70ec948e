package stream_test

import (
	"math"
	"math/big"
	"strconv"
	"strings"
	"testing"

	"github.com/parley-chat/parley/internal/stream"
)

// wantLastEventID is the contract of ParseLastEventID, written out the long
// way: after trimming white space, the value is a resume point exactly when
// it is one or more ASCII digits whose value fits in an int64.
func wantLastEventID(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, ok := new(big.Int).SetString(s, 10)
	if !ok || !v.IsInt64() {
		return 0, false
	}
	return v.Int64(), true
}

func TestParseLastEventID(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"1", 1, true},
		{"42", 42, true},
		{" 7 ", 7, true},
		{"007", 7, true},
		{"9223372036854775807", math.MaxInt64, true},
		{"00000000000000000000042", 42, true},
		{"9223372036854775808", 0, false},
		{"99999999999999999999", 0, false},
		{"", 0, false},
		{" ", 0, false},
		{"-1", 0, false},
		{"-0", 0, false},
		{"+1", 0, false},
		{"1.0", 0, false},
		{"1e3", 0, false},
		{"0x1f", 0, false},
		{"1_000", 0, false},
		{"abc", 0, false},
		{"12abc", 0, false},
		{"1 2", 0, false},
		{"٣", 0, false}, // an Arabic-Indic digit is not a decimal digit here
	} {
		got, ok := stream.ParseLastEventID(c.in)
		if ok != c.ok || got != c.want {
			t.Errorf("ParseLastEventID(%q) = %d, %v; want %d, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

// FuzzParseLastEventID checks ParseLastEventID against its contract for any
// string: it accepts exactly the non-negative decimal integers up to
// MaxInt64, returns their value, and never panics.
func FuzzParseLastEventID(f *testing.F) {
	for _, s := range []string{"", "0", "1", "-1", "-0", "+5", " 12 ", "007", "1e9", "0x10", "1_0",
		"9223372036854775807", "9223372036854775808", "18446744073709551616", "00000000000000000000001",
		"\t3\n", "３", "1.5", "NaN", "∞"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := stream.ParseLastEventID(s)
		want, wantOK := wantLastEventID(s)
		if ok != wantOK || got != want {
			t.Fatalf("ParseLastEventID(%q) = %d, %v; want %d, %v", s, got, ok, want, wantOK)
		}
		if ok {
			if got < 0 {
				t.Fatalf("ParseLastEventID(%q) accepted a negative id %d", s, got)
			}
			// Whatever the server accepts, it could have sent itself.
			if back, ok := stream.ParseLastEventID(strconv.FormatInt(got, 10)); !ok || back != got {
				t.Fatalf("ParseLastEventID does not accept its own output %d", got)
			}
		}
	})
}
