package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/parley-chat/parley"
)

// The log keeps no text of a message. An event about a message (created,
// updated, deleted) is stored as a reference to it, and a conversation.created
// with a reference in place of its last_message; every read renders the
// current version from the messages table. That way an edit, a delete or an erasure
// changes the one row that holds the text, and every event that ever carried
// it, in every user's log, in the tail and in the merged runs, reads the
// current version at once: the alternative, rewriting the payloads, would
// mean finding and re-encoding every run that holds one, on every node's
// back end, inside the edit's transaction. Live deliveries (Tx.Appended) keep
// the whole payload: they are the current version.
//
// Events written before this existed hold their payloads and age out with
// the retention period.

// The stored form of a message is `{"$msg":"<id>"}`. A payload of these
// types written by Parley itself starts with `{"id"`, and apps cannot publish
// them (only app.* types), so the prefix cannot be mistaken.
var msgRefPrefix = []byte(`{"$msg":`)

type msgRef struct {
	ID string `json:"$msg"`
}

// storedForm is what the log keeps of e: a reference for the events about a
// message or a new conversation, e itself for any other.
func storedForm(e parley.Event) parley.Event {
	var ref any
	switch e.Type {
	case parley.EventMessageCreated, parley.EventMessageUpdated, parley.EventMessageDeleted:
		var m struct{ ID string }
		if json.Unmarshal(e.Data, &m) != nil || m.ID == "" {
			return e
		}
		ref = msgRef{m.ID}
	case parley.EventConversationCreated:
		// The rest of the conversation is the view its user had when it
		// was made (presence included), and stays as it was, but for a
		// participant erased since (renderErased).
		start, end, ok := valueSpan(e.Data, "last_message")
		if !ok {
			return e
		}
		var m struct{ ID string }
		if json.Unmarshal(e.Data[start:end], &m) != nil || m.ID == "" {
			return e
		}
		b, err := json.Marshal(msgRef{m.ID})
		if err != nil {
			return e
		}
		e.Data = splice(e.Data, start, end, b)
		return e
	default:
		return e
	}
	b, err := json.Marshal(ref)
	if err != nil {
		return e
	}
	e.Data = b
	return e
}

// storedForms maps storedForm over events, sharing the reference between
// the events of one payload (a message goes to both participants).
func storedForms(events []parley.Event) []parley.Event {
	out := make([]parley.Event, len(events))
	var lastIn, lastOut json.RawMessage
	for i, e := range events {
		if lastIn != nil && len(e.Data) > 0 && &e.Data[0] == &lastIn[0] && len(e.Data) == len(lastIn) {
			e.Data = lastOut
			out[i] = e
			continue
		}
		out[i] = storedForm(e)
		if len(e.Data) > 0 {
			lastIn, lastOut = e.Data, out[i].Data
		}
	}
	return out
}

// render replaces the references among events with the current version of
// what they name: one query for all the messages of a page (of one user's
// log or several).
// evs is the caller's own slice; the Data of the events in it are replaced,
// never modified.
func (tx *Tx) render(evs []parley.Event) error {
	var ids []string
	for _, e := range evs {
		if id, _, _, ok := refIn(e); ok {
			ids = append(ids, id)
		}
	}
	msgs, err := tx.messagesByID(ids)
	if err != nil {
		return err
	}
	for i, e := range evs {
		id, start, end, ok := refIn(e)
		if !ok {
			continue
		}
		b, err := renderedMessage(msgs, id)
		if err != nil {
			return fmt.Errorf("render %s: %w", e.Type, err)
		}
		evs[i].Data = splice(e.Data, start, end, b)
	}
	return tx.renderErased(evs)
}

// participantKeys are the members of a conversation view that are users.
var participantKeys = [...]string{"client", "professional"}

// renderErased shows each participant of a stored conversation.created who
// has been erased since as the erasure left them: their id and role,
// ErasedName, and no username, external id or bio. The rest of the view is
// the one its user had when the conversation was made, and it must not
// keep the name and ids of someone erased since.
func (tx *Tx) renderErased(evs []parley.Event) error {
	var ids []string
	for _, e := range evs {
		if e.Type != parley.EventConversationCreated {
			continue
		}
		for _, k := range participantKeys {
			if id, _, _, ok := participantIn(e.Data, k); ok {
				ids = append(ids, id)
			}
		}
	}
	erased, err := tx.erasedAmong(ids)
	if err != nil || len(erased) == 0 {
		return err
	}
	for i, e := range evs {
		if e.Type != parley.EventConversationCreated {
			continue
		}
		data, _, err := showErased(e.Data, participantKeys[:], func(id string) bool { return erased[id] })
		if err != nil {
			return fmt.Errorf("render %s: %w", e.Type, err)
		}
		evs[i].Data = data
	}
	return nil
}

// renderedMessage is the JSON of the message id as msgs holds it now.
// Messages are never removed, only emptied; should one be missing all the
// same, what names it keeps its place, empty (in the log: no gap).
func renderedMessage(msgs map[string]*parley.Message, id string) ([]byte, error) {
	if m := msgs[id]; m != nil {
		return json.Marshal(m)
	}
	return json.Marshal(gone{ID: id, Deleted: true})
}

// showErased puts, in place of each user object under keys in data whose
// id erased names, that user as the erasure left them (erasedView), and
// reports whether it put any. data itself is never modified.
func showErased(data []byte, keys []string, erased func(id string) bool) ([]byte, bool, error) {
	changed := false
	for _, k := range keys {
		id, start, end, ok := participantIn(data, k)
		if !ok || !erased(id) {
			continue
		}
		b, err := erasedView(data[start:end])
		if err != nil {
			return nil, false, err
		}
		data, changed = splice(data, start, end, b), true
	}
	return data, changed, nil
}

// participantIn finds the user under key in a conversation view: their id,
// and where the object is in data.
func participantIn(data []byte, key string) (id string, start, end int, ok bool) {
	if start, end, ok = valueSpan(data, key); !ok {
		return "", 0, 0, false
	}
	var u struct{ ID string }
	if json.Unmarshal(data[start:end], &u) != nil || u.ID == "" {
		return "", 0, 0, false
	}
	return u.ID, start, end, true
}

// erasedView is the user object view (a parley.User in JSON) as an erasure
// leaves it: the id and role, ErasedName, and nothing else.
func erasedView(view []byte) ([]byte, error) {
	var u struct{ ID, Role string }
	if err := json.Unmarshal(view, &u); err != nil {
		return nil, fmt.Errorf("decode user: %w", err)
	}
	return json.Marshal(parley.User{ID: u.ID, Role: u.Role, DisplayName: ErasedName})
}

// Erased reports whether the user's account is erased, or being erased.
func (tx *Tx) Erased(userID string) (bool, error) {
	erased, err := tx.erasedAmong([]string{userID})
	return erased[userID], err
}

// erasedAmong returns which of ids are of accounts erased, or being erased.
func (tx *Tx) erasedAmong(ids []string) (map[string]bool, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	out := map[string]bool{}
	for part := range chunks(ids, rowChunk) {
		list, args := inList(part)
		erased, err := tx.queryStrings(`SELECT id FROM users WHERE erased_at IS NOT NULL AND id IN `+list, args...)
		if err != nil {
			return nil, fmt.Errorf("load erased users: %w", err)
		}
		for _, id := range erased {
			out[id] = true
		}
	}
	return out, nil
}

// refIn finds the message reference in a stored event: the whole payload of
// a message event, the last_message of a conversation.created. start and end
// delimit it in e.Data.
func refIn(e parley.Event) (id string, start, end int, ok bool) {
	switch e.Type {
	case parley.EventMessageCreated, parley.EventMessageUpdated, parley.EventMessageDeleted:
		start, end = 0, len(e.Data)
	case parley.EventConversationCreated:
		if start, end, ok = valueSpan(e.Data, "last_message"); !ok {
			return "", 0, 0, false
		}
	default:
		// Only Parley writes these types; an app's event is its own
		// data, whatever it looks like.
		return "", 0, 0, false
	}
	if !bytes.HasPrefix(e.Data[start:end], msgRefPrefix) {
		return "", 0, 0, false
	}
	var r msgRef
	if json.Unmarshal(e.Data[start:end], &r) != nil {
		return "", 0, 0, false
	}
	return r.ID, start, end, true
}

// valueSpan finds the value of a top-level key of a JSON object.
func valueSpan(data []byte, key string) (start, end int, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return 0, 0, false
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return 0, 0, false
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return 0, 0, false
		}
		if k, _ := t.(string); k == key {
			end = int(dec.InputOffset())
			return end - len(v), end, true
		}
	}
	return 0, 0, false
}

// splice returns data with data[start:end] replaced by b, in a new slice.
func splice(data []byte, start, end int, b []byte) []byte {
	out := make([]byte, 0, len(data)-(end-start)+len(b))
	out = append(append(append(out, data[:start]...), b...), data[end:]...)
	return out
}

// gone is what an event renders as when what it names is not there.
type gone struct {
	ID      string `json:"id"`
	Deleted bool   `json:"deleted,omitempty"`
}

// messagesByID loads the messages with these ids (duplicates allowed).
func (tx *Tx) messagesByID(ids []string) (map[string]*parley.Message, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	out := make(map[string]*parley.Message, len(ids))
	for part := range chunks(ids, rowChunk) {
		list, args := inList(part)
		rows, err := tx.query(`SELECT `+messageColumns+` FROM messages WHERE id IN `+list, args...)
		if err != nil {
			return nil, fmt.Errorf("load messages: %w", err)
		}
		for rows.Next() {
			m, err := scanMessage(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("scan message: %w", err)
			}
			out[m.ID] = m
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
