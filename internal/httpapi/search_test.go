package httpapi_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/servertest"
)

type searchResult struct {
	Messages []parley.Message `json:"messages"`
	HasMore  bool             `json:"has_more"`
}

// search runs GET /api/search?q=… (plus extra query) as u and requires 200.
func (p *convPair) search(t *testing.T, u servertest.User, q, extra string) searchResult {
	t.Helper()
	var out searchResult
	res := p.n.Do(t, "GET", "/api/search?q="+url.QueryEscape(q)+extra, u.Token, nil, &out)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("search %q%s: %d %s", q, extra, res.StatusCode, res.Body)
	}
	if out.Messages == nil {
		t.Fatalf("search %q: messages is not an array: %s", q, res.Body)
	}
	return out
}

// found lists the bodies of a search's results, in order.
func found(r searchResult) []string {
	out := make([]string, len(r.Messages))
	for i, m := range r.Messages {
		out[i] = m.Body
	}
	return out
}

// TestSearchMatches: a query finds the messages that contain each of its
// words whole or as the start of a word, whatever the case or accents on
// either side, newest first; a word that is only inside another word, or
// missing, does not match.
func TestSearchMatches(t *testing.T) {
	p := newConvPair(t)
	p.say(t, p.client, p.conv, "Le Café crème était délicieux")
	p.say(t, p.pro, p.conv, "Your lease PDF is attached, see section 4.2")
	p.say(t, p.client, p.conv, "CAFE au lait, s'il vous plaît")
	p.say(t, p.pro, p.conv, "Straße und Strasse; naïve coöperation")

	cases := []struct {
		q    string
		want []string
	}{
		{"cafe", []string{"CAFE au lait, s'il vous plaît", "Le Café crème était délicieux"}},
		{"CAFÉ", []string{"CAFE au lait, s'il vous plaît", "Le Café crème était délicieux"}},
		{"creme", []string{"Le Café crème était délicieux"}},
		{"cré", []string{"Le Café crème était délicieux"}},        // a prefix
		{"DELIC", []string{"Le Café crème était délicieux"}},      // prefix, case and accent at once
		{"cafe creme", []string{"Le Café crème était délicieux"}}, // every word must match
		{"cafe lease", []string{}}, // not in one message
		{"lease pdf", []string{"Your lease PDF is attached, see section 4.2"}},
		{"4 2", []string{"Your lease PDF is attached, see section 4.2"}},
		{"afe", []string{}}, // inside a word, not at its start
		{"naive cooperation", []string{"Straße und Strasse; naïve coöperation"}},
		{"STRASSE straße", []string{"Straße und Strasse; naïve coöperation"}},
		{"plait", []string{"CAFE au lait, s'il vous plaît"}},
		{"hello", []string{"hello"}}, // the opening message
		{"nothing", []string{}},
	}
	for _, c := range cases {
		got := found(p.search(t, p.pro, c.q, ""))
		if !slices.Equal(got, c.want) {
			t.Errorf("search %q = %q, want %q", c.q, got, c.want)
		}
	}

	// limit and has_more; newest first.
	r := p.search(t, p.client, "s", "&limit=2")
	if len(r.Messages) != 2 || !r.HasMore || r.Messages[0].Seq < r.Messages[1].Seq {
		t.Fatalf("limit 2: %d results, has_more %v", len(r.Messages), r.HasMore)
	}
	if r := p.search(t, p.client, "cafe", "&limit=5"); r.HasMore || len(r.Messages) != 2 {
		t.Fatalf("limit 5: %+v", r)
	}
	// Results are whole messages, with their attachments array.
	if m := p.search(t, p.client, "lease", "").Messages[0]; m.ConversationID != p.conv || m.Seq == 0 || m.Attachments == nil {
		t.Fatalf("result: %+v", m)
	}
}

// TestSearchNeverFindsRemovedText: the index follows the message in its
// own transaction: text edited away is not found (the new text is), a
// deleted message is not found at all.
func TestSearchNeverFindsRemovedText(t *testing.T) {
	p := newConvPair(t)
	m := p.say(t, p.client, p.conv, "my password is hunter2")
	gone := p.say(t, p.client, p.conv, "secret diagnosis: influenza")
	if got := found(p.search(t, p.pro, "hunter2", "")); len(got) != 1 {
		t.Fatalf("before the edit: %q", got)
	}
	if res := p.n.Do(t, "PATCH", "/api/messages/"+m.ID, p.client.Token, map[string]any{"body": "oops, never mind"}, nil); res.StatusCode != http.StatusOK {
		t.Fatalf("edit: %d %s", res.StatusCode, res.Body)
	}
	if res := p.n.Do(t, "DELETE", "/api/messages/"+gone.ID, p.client.Token, nil, nil); res.StatusCode != http.StatusOK {
		t.Fatalf("delete: %d %s", res.StatusCode, res.Body)
	}
	for _, u := range []servertest.User{p.client, p.pro} {
		for _, q := range []string{"hunter2", "hunt", "password", "secret", "diagnosis", "influenza", "infl"} {
			if got := found(p.search(t, u, q, "")); len(got) != 0 {
				t.Fatalf("search %q after edit/delete found %q", q, got)
			}
		}
		if got := found(p.search(t, u, "never mind", "")); !slices.Equal(got, []string{"oops, never mind"}) {
			t.Fatalf("edited text: %q", got)
		}
	}
	// Not only unfound: gone from the index itself (it is no copy of text
	// a deletion leaves behind).
	db := openDB(t, p.n)
	var n int
	q := `SELECT COUNT(*) FROM message_fts WHERE message_fts MATCH '"influenza" OR "hunter2"'`
	if strings.HasPrefix(p.n.Config.DatabaseURL, "postgres") {
		q = `SELECT COUNT(*) FROM message_search WHERE words @@ 'influenza | hunter2'::tsquery`
	}
	if err := db.QueryRow(q).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the index still holds removed words: %d (%v)", n, err)
	}
	if err := db.QueryRow(fmt.Sprintf(`SELECT COUNT(*) FROM message_search WHERE message_id = '%s'`, gone.ID)).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the deleted message is still in the index: %d (%v)", n, err)
	}
}

// TestSearchCallersConversationsOnly: nobody finds text of a conversation
// they are not in, and naming such a conversation is 404.
func TestSearchCallersConversationsOnly(t *testing.T) {
	p := newConvPair(t)
	other := p.n.Register(t, "c", parley.RoleClient)
	theirs := p.open(t, other, p.pro, "zebra stripes in the other room")
	p.say(t, p.client, p.conv, "zebra crossing near the clinic")

	if got := found(p.search(t, p.client, "zebra", "")); !slices.Equal(got, []string{"zebra crossing near the clinic"}) {
		t.Fatalf("client: %q", got)
	}
	if got := found(p.search(t, other, "zebra", "")); !slices.Equal(got, []string{"zebra stripes in the other room"}) {
		t.Fatalf("other client: %q", got)
	}
	if got := found(p.search(t, p.outsider, "zebra", "")); len(got) != 0 {
		t.Fatalf("outsider: %q", got)
	}
	if got := found(p.search(t, p.pro, "zebra", "")); len(got) != 2 {
		t.Fatalf("professional in both: %q", got)
	}
	if got := found(p.search(t, p.pro, "zebra", "&conversation_id="+theirs)); !slices.Equal(got, []string{"zebra stripes in the other room"}) {
		t.Fatalf("professional in one conversation: %q", got)
	}
	for _, conv := range []string{theirs, "conv_nope", "a\x00b"} {
		res := p.n.Do(t, "GET", "/api/search?q=zebra&conversation_id="+url.QueryEscape(conv), p.client.Token, nil, nil)
		wantError(t, res, http.StatusNotFound, "not_found")
	}
}

// TestSearchHostileQueries: a query is words, never FTS syntax: operators,
// quotes, stars, column filters, NUL and the like are harmless (200 with the
// words they hold, or 400 when there is no word), never a 500; a query with
// only such characters is 400 naming q.
func TestSearchHostileQueries(t *testing.T) {
	p := newConvPair(t)
	p.say(t, p.client, p.conv, `alpha beta "gamma" NEAR delta`)
	for _, q := range []string{
		`"`, `*`, `"*"`, `()`, `-`, `^`, `:`, `'`, `\`, `''`, "\x00", `&|!`, `<->`, `{}`, `"" , ""`, "\u202e",
	} {
		res := p.n.Do(t, "GET", "/api/search?q="+url.QueryEscape(q), p.client.Token, nil, nil)
		if res.StatusCode != http.StatusBadRequest {
			t.Fatalf("search %q: %d %s", q, res.StatusCode, res.Body)
		}
		wantField(t, res, "q")
	}
	for _, q := range []string{
		`alpha"`, `"alpha`, `alpha*`, `alpha OR zzz`, `NEAR(alpha beta)`, `alpha -zzz`, `(alpha`, `alpha)`,
		`words:alpha`, `{words}: alpha`, `alpha AND`, `alpha & !beta`, `alpha:*`, `'alpha':B`, `al\pha`, "alpha\x00",
		`alpha NOT beta`, `^alpha`, `alpha + beta`, `"alpha beta"`, `alpha'); DROP TABLE messages; --`,
	} {
		res := p.n.Do(t, "GET", "/api/search?q="+url.QueryEscape(q), p.client.Token, nil, nil)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("search %q: %d %s", q, res.StatusCode, res.Body)
		}
	}
	// Operators are words like any other: "NEAR" finds the message that says it.
	if got := found(p.search(t, p.client, "near", "")); len(got) != 1 {
		t.Fatalf("near: %q", got)
	}
	// "OR" is a word too, so "alpha OR zzz" needs a word starting "or".
	if got := found(p.search(t, p.client, "alpha OR zzz", "")); len(got) != 0 {
		t.Fatalf("alpha OR zzz: %q", got)
	}
	for _, bad := range []string{"", "&q=", "&q=" + url.QueryEscape("a b c d e f g h i j k l m n o p q"), "&q=" + url.QueryEscape(strings.Repeat("x", 1001)), "&q=%ff"} {
		path := "/api/search?limit=5" + bad
		if bad == "" {
			path = "/api/search"
		}
		wantField(t, p.n.Do(t, "GET", path, p.client.Token, nil, nil), "q")
	}
	for _, lim := range []string{"0", "-1", "x", "99999999999"} {
		wantField(t, p.n.Do(t, "GET", "/api/search?q=alpha&limit="+lim, p.client.Token, nil, nil), "limit")
	}
	if r := p.search(t, p.client, "alpha", "&limit=1000"); len(r.Messages) != 1 {
		t.Fatalf("limit above the maximum is served as the maximum: %+v", r)
	}
}

// TestSearchPagesAgree: whatever plan the store picks for a search (SQLite
// walks the matches for a user with many of the messages and a small limit,
// and lists them otherwise), a smaller limit answers the first results of a
// larger one, newest first, edited messages in their place, deleted ones
// nowhere, and has_more says whether more were left.
func TestSearchPagesAgree(t *testing.T) {
	p := newConvPair(t)
	var ids []string
	for i := range 30 {
		body := fmt.Sprintf("lease note %d", i)
		if i%3 == 0 {
			body = fmt.Sprintf("other topic %d", i)
		}
		ids = append(ids, p.say(t, []servertest.User{p.client, p.pro}[i%2], p.conv, body).ID)
	}
	edit := func(id, body string) {
		t.Helper()
		who := p.client
		if slices.Index(ids, id)%2 == 1 {
			who = p.pro
		}
		if res := p.n.Do(t, "PATCH", "/api/messages/"+id, who.Token, map[string]any{"body": body}, nil); res.StatusCode != http.StatusOK {
			t.Fatalf("edit: %d %s", res.StatusCode, res.Body)
		}
	}
	edit(ids[4], "lease note 4, edited")
	edit(ids[3], "lease now too")
	if res := p.n.Do(t, "DELETE", "/api/messages/"+ids[28], p.client.Token, nil, nil); res.StatusCode != http.StatusOK {
		t.Fatalf("delete: %d", res.StatusCode)
	}
	all := p.search(t, p.pro, "lease", "&limit=100")
	if len(all.Messages) != 20 || all.HasMore {
		t.Fatalf("lease: %d results (has_more %v), want 20", len(all.Messages), all.HasMore)
	}
	for i := 1; i < len(all.Messages); i++ {
		if all.Messages[i-1].Seq <= all.Messages[i].Seq {
			t.Fatalf("not newest first: seq %d before %d", all.Messages[i-1].Seq, all.Messages[i].Seq)
		}
	}
	for _, limit := range []int{1, 2, 5, 19, 20} {
		for _, u := range []servertest.User{p.pro, p.client} {
			page := p.search(t, u, "lease", fmt.Sprintf("&limit=%d", limit))
			if !slices.Equal(found(page), found(all)[:limit]) || page.HasMore != (limit < 20) {
				t.Fatalf("limit %d: %q (has_more %v), want %q", limit, found(page), page.HasMore, found(all)[:limit])
			}
		}
	}
}
