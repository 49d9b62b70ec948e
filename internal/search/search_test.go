package search_test

import (
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	_ "modernc.org/sqlite"

	"github.com/parley-chat/parley/internal/search"
)

func TestWords(t *testing.T) {
	cases := map[string][]string{
		"Café CRÈME, café!":                {"cafe", "creme"},
		"naïve coöperation":                {"naive", "cooperation"},
		"Straße 4.2 x_y":                   {"strasse", "4", "2", "x", "y"},
		"STRASSE straße":                   {"strasse"},
		"ﬁne ＡＢＣ":                          {"fine", "abc"}, // compatibility forms (NFKD)
		"İstanbul":                         {"istanbul"},
		"日本語のテキスト":                         {"日本語のテキスト"},
		"हिंदी":                            {"हिदी"}, // the anusvara (Mn) is dropped, the vowel sign (Mc) kept
		`"NEAR" (a OR b) -c* ^d`:           {"near", "a", "or", "b", "c", "d"},
		"a\x00b\u202ec\u200bd\xffe":        {"a", "b", "c", "d", "e"},
		"0000 \u0488 \u0903\u20dd":         {"0000"}, // marks alone are no word
		strings.Repeat("\u0903", 70) + "a": nil,      // cut to marks alone
		"":                                 nil,
		" \t\n":                            nil,
	}
	for in, want := range cases {
		if got := search.Words(in); !slices.Equal(got, want) {
			t.Errorf("Words(%q) = %q, want %q", in, got, want)
		}
	}
	var many []string
	for i := range 100 {
		many = append(many, fmt.Sprintf("w%d", i%70))
	}
	for _, text := range []string{strings.Join(many, " "), strings.Join(many, " ") + " é"} {
		got := search.Words(text)
		if len(got) < 70 || got[0] != "w0" || got[69] != "w69" || slices.Index(got[1:], "w0") >= 0 {
			t.Fatalf("70 distinct words, 30 repeated: %d words %q…", len(got), got[:3])
		}
	}
	long := strings.Repeat("é", 100)
	if got := search.Words(long); len(got) != 1 || utf8.RuneCountInString(got[0]) != search.MaxWordRunes {
		t.Fatalf("a long word is cut to %d runes: %q", search.MaxWordRunes, got)
	}
}

func TestQuerySyntax(t *testing.T) {
	words := []string{"cafe", "o'brien", `x"y`, `back\slash`}
	if got, want := search.FTS5Query(words), `"cafe"* AND "o'brien"* AND "x""y"* AND "back\slash"*`; got != want {
		t.Fatalf("FTS5Query = %s, want %s", got, want)
	}
	if got, want := search.TSQuery(words), `'cafe':* & 'o''brien':* & 'x"y':* & 'back\\slash':*`; got != want {
		t.Fatalf("TSQuery = %s, want %s", got, want)
	}
	if got, want := search.TSVector("Café o'Brien café"), `'cafe' 'o' 'brien'`; got != want {
		t.Fatalf("TSVector = %s, want %s", got, want)
	}
}

// FuzzQuery: whatever a person types, its words are non-empty runs of
// word characters, at most MaxWordRunes long, already normalised (so
// normalising them again changes nothing), and the FTS5 query built from
// them is accepted by SQLite's FTS5 and finds a message made of those very
// words — so no input can make a query fail, or mean something else.
func FuzzQuery(f *testing.F) {
	for _, s := range []string{
		`cafe`, `"`, `*`, `NEAR(a b)`, `-a`, `(a OR b) AND c`, "\x00", `{words}:x`, `a'b`, `\`, `^x`, `x:*`, "Ça\u0301va",
		"日本", "\u202eabc", `"" AND ""`, strings.Repeat("é", 70),
	} {
		f.Add(s)
	}
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		f.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE VIRTUAL TABLE t USING fts5(words, content='', contentless_delete=1,
		tokenize='unicode61 remove_diacritics 0', prefix='2 3')`); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, q string) {
		words := search.Words(q)
		// ASCII text takes a shortcut; a non-ASCII separator (NBSP) forces
		// the general path, which must agree.
		if general := search.Words(q + "\u00a0"); !slices.Equal(words, general) {
			t.Fatalf("Words(%q) = %q, but with a trailing NBSP %q", q, words, general)
		}
		for _, w := range words {
			if w == "" || utf8.RuneCountInString(w) > search.MaxWordRunes || !utf8.ValidString(w) {
				t.Fatalf("word %q of %q", w, q)
			}
			for _, r := range w {
				if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.Is(unicode.Mc, r) && !unicode.Is(unicode.Me, r) {
					t.Fatalf("word %q of %q holds %U", w, q, r)
				}
			}
			if again := search.Words(w); len(again) != 1 || again[0] != w {
				t.Fatalf("word %q of %q normalises again to %q", w, q, again)
			}
		}
		if len(words) == 0 || len(words) > search.MaxQueryWords {
			return
		}
		if _, err := db.Exec(`DELETE FROM t`); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`INSERT INTO t (rowid, words) VALUES (1, ?)`, search.IndexText(q)); err != nil {
			t.Fatalf("index %q: %v", q, err)
		}
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM t WHERE t MATCH ?`, search.FTS5Query(words)).Scan(&n); err != nil {
			t.Fatalf("MATCH %s (from %q): %v", search.FTS5Query(words), q, err)
		}
		if n != 1 {
			t.Fatalf("MATCH %s does not find the text %q it was made from", search.FTS5Query(words), search.IndexText(q))
		}
	})
}
