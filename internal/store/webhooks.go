package store

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/parley-chat/parley"
)

// Webhook states: a pending row is due at NextAt (or claimed until
// LeaseUntil); a failed one ran out of retries and waits for a manual retry.
// A delivered row is deleted.
const (
	WebhookPending = "pending"
	WebhookFailed  = "failed"
)

// Webhook is a row of the outbox (migration 00013).
type Webhook struct {
	ID             string // the webhook-id header, the same on every attempt
	Ord            int64  // order within the conversation
	Type           string
	ConversationID string
	Body           []byte // {"type", "timestamp", "data"}, fixed at write time
	CreatedAt      time.Time
	RetryFrom      time.Time // start of the retries, for the max age
	State          string
	Attempts       int
	NextAt         time.Time
	LastStatus     int // HTTP status of the last attempt; 0 = no answer
	LastError      string
	LeaseUntil     time.Time // claimed by a sender until then
}

// webhookBody is what a receiver gets.
type webhookBody struct {
	Type      string      `json:"type"`
	Timestamp parley.Time `json:"timestamp"`
	Data      any         `json:"data"`
}

// InsertWebhook writes a webhook of typ about the conversation into the
// outbox, due at once, inside the transaction of the change it reports;
// messageID names the message whose text it carries ("" = none). Rows
// of one conversation are ordered (ord) after every row of it still in the
// table. On a back end with concurrent writers that order is commit order
// only under the conversation's row lock: without it, two changes would
// read the same last row and share an order. A send holds the lock from
// NextSeq; other changes take it with LockConversations before their first
// write (else the lock taken here comes after their other rows' locks, and
// may deadlock with a send, which takes the conversation's first).
func (tx *Tx) InsertWebhook(typ, conversationID, messageID string, data any) error {
	if err := tx.LockConversations(conversationID); err != nil {
		return err
	}
	now := Now()
	b, err := json.Marshal(webhookBody{Type: typ, Timestamp: parley.T(now), Data: data})
	if err != nil {
		return fmt.Errorf("marshal webhook %s: %w", typ, err)
	}
	at := Micros(now)
	insert := `INSERT INTO webhooks (id, ord, type, conversation_id, message_id, body, created_at, retry_from, state, next_at)
		VALUES (?, (SELECT COALESCE(MAX(ord), 0) + 1 FROM webhooks WHERE conversation_id = ?), ?, ?, ?, ?, ?, ?, ?, ?)`
	args := []any{parley.NewTimeID("wh"), conversationID, typ, conversationID, messageID, b, at, at, WebhookPending, at}
	fail := func(err error) error { return fmt.Errorf("insert webhook: %w", err) }
	if _, ok := tx.d.(ArrayBinder); ok {
		// PostgreSQL: the webhook rides with the message and its events
		// (Tx.hold), so a send with webhooks on is no round trip dearer.
		return tx.hold(&heldWrite{ctes: []string{"held_wh AS (" + insert + ")"}, args: args, fail: fail})
	}
	if _, err := tx.exec(insert, args...); err != nil {
		return fail(err)
	}
	return nil
}

// LockConversations takes the row locks of the conversations that exist,
// in id order, to the end of the transaction, on a back end with
// concurrent writers (SQLite's single writer needs none). Locks the
// transaction holds already are not asked for again.
func (tx *Tx) LockConversations(ids ...string) error {
	l, ok := tx.d.(RowLocker)
	if !ok {
		return nil
	}
	var todo []string // nil, no allocation, when all are held (a send's webhook)
	for _, id := range ids {
		if !slices.Contains(tx.convLocks, id) {
			todo = append(todo, id)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	slices.Sort(todo)
	todo = slices.Compact(todo)
	for part := range chunks(todo, headChunk) {
		// The lock a send's UPDATE of the row takes: it orders these
		// changes with sends, and leaves an upload or a call, whose rows
		// refer to the conversation, free to insert meanwhile.
		if err := tx.lockRows("conversations", "id", part, l.ForNoKeyUpdate()); err != nil {
			return fmt.Errorf("lock conversations: %w", err)
		}
	}
	for _, id := range todo {
		tx.lockedConversation(id)
	}
	return nil
}

// lockedConversation records that the transaction holds the
// conversation's row lock, where that matters (InsertWebhook).
func (tx *Tx) lockedConversation(id string) {
	if _, ok := tx.d.(RowLocker); ok && !slices.Contains(tx.convLocks, id) {
		tx.convLocks = append(tx.convLocks, id)
	}
}

const webhookColumns = `id, ord, type, conversation_id, body, created_at, retry_from, state, attempts, next_at, last_status, last_error, lease_until`

func scanWebhook(row scanner) (*Webhook, error) {
	var w Webhook
	var created, from, next, lease int64
	if err := row.Scan(&w.ID, &w.Ord, &w.Type, &w.ConversationID, &w.Body, &created, &from, &w.State, &w.Attempts, &next, &w.LastStatus, &w.LastError, &lease); err != nil {
		return nil, err
	}
	w.CreatedAt, w.RetryFrom, w.NextAt, w.LeaseUntil = FromMicros(created), FromMicros(from), FromMicros(next), FromMicros(lease)
	return &w, nil
}

func (tx *Tx) webhooks(q string, args ...any) ([]*Webhook, error) {
	rows, err := tx.query(q, args...)
	if err != nil {
		return nil, fmt.Errorf("list webhooks: %w", err)
	}
	defer rows.Close()
	var out []*Webhook
	for rows.Next() {
		w, err := scanWebhook(rows)
		if err != nil {
			return nil, fmt.Errorf("scan webhook: %w", err)
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// WebhookDue reports whether some webhook may be claimed at now: a cheap
// read that spares an idle sender a write transaction per poll.
func (tx *Tx) WebhookDue(now time.Time) (bool, error) {
	var one int
	us := Micros(now)
	err := tx.queryRow(`SELECT 1 FROM webhooks WHERE state = ? AND next_at <= ? AND lease_until <= ? LIMIT 1`,
		WebhookPending, us, us).Scan(&one)
	if isNoRows(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look for due webhooks: %w", err)
	}
	return true, nil
}

// ClaimWebhooks leases due webhooks until now+lease: the oldest pending row
// of up to limit conversations, each with up to perConv-1 rows that follow
// it, in order. Only a conversation's oldest pending row opens it to a
// claim, so its webhooks go out in order, from one node at a time, and the
// rows after the first ride along rather than wait for a claim each. A back
// end with concurrent writers skips rows another node is claiming (FOR
// UPDATE SKIP LOCKED) rather than waiting for them. The order is ord, then
// id: rows written before InsertWebhook took the conversation's lock may
// share an ord, and two heads of one conversation would go out side by side.
func (tx *Tx) ClaimWebhooks(now time.Time, lease time.Duration, limit, perConv int) ([][]*Webhook, error) {
	lock := ""
	if l, ok := tx.d.(RowLocker); ok {
		lock = l.ForUpdate() + " SKIP LOCKED"
	}
	us := Micros(now)
	ws, err := tx.webhooks(`SELECT `+webhookColumns+` FROM webhooks w
		WHERE w.state = ? AND w.next_at <= ? AND w.lease_until <= ?
		AND NOT EXISTS (SELECT 1 FROM webhooks e WHERE e.conversation_id = w.conversation_id
			AND e.state = ? AND (e.ord < w.ord OR e.ord = w.ord AND e.id < w.id))
		ORDER BY w.next_at, w.ord LIMIT ?`+lock,
		WebhookPending, us, us, WebhookPending, limit)
	if err != nil {
		return nil, err
	}
	until := Micros(now.Add(lease))
	groups := make([][]*Webhook, 0, len(ws))
	for _, head := range ws {
		g := []*Webhook{head}
		if perConv > 1 {
			// Rows behind a conversation's head have never been tried, so
			// they are all due; the bounds only guard the order.
			more, err := tx.webhooks(`SELECT `+webhookColumns+` FROM webhooks
				WHERE conversation_id = ? AND state = ? AND (ord > ? OR ord = ? AND id > ?) AND next_at <= ? AND lease_until <= ?
				ORDER BY ord, id LIMIT ?`+lock, head.ConversationID, WebhookPending, head.Ord, head.Ord, head.ID, us, us, perConv-1)
			if err != nil {
				return nil, err
			}
			g = append(g, more...)
		}
		for _, w := range g {
			if _, err := tx.exec(`UPDATE webhooks SET lease_until = ? WHERE id = ?`, until, w.ID); err != nil {
				return nil, fmt.Errorf("lease webhook: %w", err)
			}
		}
		groups = append(groups, g)
	}
	return groups, nil
}

// WebhookMessageUnread is the type of the one webhook addressed to a
// single user (its data's user): ScrubWebhooksOf drops it with them.
const WebhookMessageUnread = "message.unread"

// DropMessageWebhooks removes the webhooks not yet sent (pending or failed)
// that carry the text of the message tomb is the tombstone of: it was
// deleted, and its old text must not stay readable anywhere. The receiver
// then gets its message.deleted without the earlier webhooks. Two kinds are
// rewritten with the tombstone in place of the message instead: a
// conversation.created, which carries the first message (the receiver must
// still hear of the conversation), and a row being sent right now, whose
// attempt has its own copy and whose retry, should it fail, reads the body
// again.
func (tx *Tx) DropMessageWebhooks(tomb *parley.Message, now time.Time) error {
	// message_id <> '' lets SQLite use the partial index webhooks_message.
	if _, err := tx.exec(`DELETE FROM webhooks WHERE message_id = ? AND message_id <> '' AND type <> ? AND lease_until <= ?`,
		tomb.ID, parley.EventConversationCreated, Micros(now)); err != nil {
		return fmt.Errorf("drop webhooks of message: %w", err)
	}
	b, err := json.Marshal(tomb)
	if err != nil {
		return fmt.Errorf("marshal tombstone: %w", err)
	}
	err = tx.rewriteWebhooks(`SELECT `+webhookColumns+` FROM webhooks WHERE message_id = ? AND message_id <> ''
		ORDER BY conversation_id, ord`, []any{tomb.ID}, now,
		func(w *webhookData) error {
			if start, end, ok := w.message(); ok {
				w.put(start, end, b)
			}
			return nil
		})
	if err != nil {
		return err
	}
	// The replies that quote it carry its text in their preview: their
	// webhooks show the quote emptied, as the replies now do
	// (DeleteMessage).
	return tx.rewriteWebhooks(`SELECT `+webhookColumns+` FROM webhooks
		WHERE message_id IN (SELECT id FROM messages WHERE reply_to_id = ?) AND message_id <> ''
		ORDER BY conversation_id, ord`, []any{tomb.ID}, now,
		func(w *webhookData) error { return w.unquote(tomb.ID) })
}

// AnyWebhooks reports whether the outbox holds any webhook not yet
// delivered: pending, failed, or being sent.
func (tx *Tx) AnyWebhooks() (bool, error) {
	var n int
	if err := tx.queryRow(`SELECT COUNT(*) FROM (SELECT 1 FROM webhooks LIMIT 1) w`).Scan(&n); err != nil {
		return false, fmt.Errorf("look for webhooks: %w", err)
	}
	return n > 0, nil
}


// ScrubWebhooksOf makes the webhooks not yet sent forget the user, who is
// being erased (after their messages became tombstones). A
// conversation.created shows them as the erasure leaves them (ErasedName,
// no username, external id or bio) and a first message of theirs as its
// tombstone; a message.unread addressed to them is dropped, or if it is
// being sent right now, shows them as erased; and no new one is armed.
func (tx *Tx) ScrubWebhooksOf(userID string, now time.Time) error {
	if _, err := tx.exec(`DELETE FROM webhook_unread WHERE user_id = ?`, userID); err != nil {
		return fmt.Errorf("drop unread watches: %w", err)
	}
	return tx.rewriteWebhooks(`SELECT `+webhookColumns+` FROM webhooks
		WHERE conversation_id IN (SELECT conversation_id FROM conversation_members WHERE user_id = ?) AND type IN (?, ?)
		ORDER BY conversation_id, ord`, []any{userID, parley.EventConversationCreated, WebhookMessageUnread}, now,
		func(w *webhookData) error {
			if w.typ == WebhookMessageUnread {
				if id, _, _, ok := participantIn(w.data, "user"); !ok || id != userID {
					return nil
				}
				if !w.leased {
					w.data = nil
					return nil
				}
			}
			data, changed, err := showErased(w.data, []string{"user", "client", "professional"}, func(id string) bool { return id == userID })
			if err != nil {
				return err
			}
			w.data, w.changed = data, w.changed || changed
			if w.typ != parley.EventConversationCreated {
				return nil
			}
			// Rows written before the first message's id was kept
			// (DropMessageWebhooks missed them).
			start, end, ok := valueSpan(w.data, "last_message")
			if !ok {
				return nil
			}
			var m struct {
				ID       string  `json:"id"`
				SenderID *string `json:"sender_id"`
			}
			if json.Unmarshal(w.data[start:end], &m) != nil || m.SenderID == nil || *m.SenderID != userID {
				return nil
			}
			msgs, err := tx.messagesByID([]string{m.ID})
			if err != nil {
				return err
			}
			b, err := renderedMessage(msgs, m.ID)
			if err != nil {
				return fmt.Errorf("marshal message: %w", err)
			}
			w.put(start, end, b)
			return nil
		})
}

// webhookData is a webhook being rewritten (rewriteWebhooks): its type, the
// data of its body, and whether it is being sent right now.
type webhookData struct {
	typ     string
	data    []byte // nil to delete the row (not while leased)
	leased  bool
	changed bool // data was rewritten
}

// put puts b in place of data[start:end].
func (w *webhookData) put(start, end int, b []byte) {
	w.data, w.changed = splice(w.data, start, end, b), true
}

// message finds the message the webhook carries: under last_message in a
// conversation.created, under message in a message.unread, else the data
// itself.
func (w *webhookData) message() (start, end int, ok bool) {
	switch w.typ {
	case parley.EventConversationCreated:
		return valueSpan(w.data, "last_message")
	case WebhookMessageUnread:
		return valueSpan(w.data, "message")
	}
	return 0, len(w.data), true
}

// unquote empties the preview of the carried message's quote of quotedID.
func (w *webhookData) unquote(quotedID string) error {
	msg, msgEnd, ok := w.message()
	if !ok {
		return nil
	}
	start, end, ok := valueSpan(w.data[msg:msgEnd], "reply_to")
	if !ok {
		return nil
	}
	start, end = msg+start, msg+end
	var r parley.Reply
	if json.Unmarshal(w.data[start:end], &r) != nil || r.ID != quotedID || r.Preview == "" {
		return nil
	}
	r.Preview = ""
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("marshal reply: %w", err)
	}
	w.put(start, end, b)
	return nil
}

// rewriteWebhooks applies edit to each webhook that query (of
// webhookColumns) selects, in the order given: what edit changes is
// written back, and a row whose data it sets to nil is deleted.
func (tx *Tx) rewriteWebhooks(query string, args []any, now time.Time, edit func(*webhookData) error) error {
	found, err := tx.webhooks(query, args...)
	if err != nil {
		return err
	}
	for _, r := range found {
		start, end, ok := valueSpan(r.Body, "data")
		if !ok {
			continue
		}
		w := &webhookData{typ: r.Type, data: r.Body[start:end], leased: r.LeaseUntil.After(now)}
		if err := edit(w); err != nil {
			return err
		}
		switch {
		case w.data == nil && !w.leased:
			_, err = tx.exec(`DELETE FROM webhooks WHERE id = ?`, r.ID)
		case w.data != nil && w.changed:
			_, err = tx.exec(`UPDATE webhooks SET body = ? WHERE id = ?`, splice(r.Body, start, end, w.data), r.ID)
		}
		if err != nil {
			return fmt.Errorf("rewrite webhook: %w", err)
		}
	}
	return nil
}

// ReleaseWebhookLeases ends the lease of the webhook id, or of every
// webhook when id is "", so it can be claimed again at once.
func (tx *Tx) ReleaseWebhookLeases(id string) error {
	q, args := `UPDATE webhooks SET lease_until = 0 WHERE lease_until > 0`, []any{}
	if id != "" {
		q += ` AND id = ?`
		args = append(args, id)
	}
	if _, err := tx.exec(q, args...); err != nil {
		return fmt.Errorf("release webhook leases: %w", err)
	}
	return nil
}

// WebhookDelivered removes a webhook its receiver accepted.
func (tx *Tx) WebhookDelivered(id string) error {
	if _, err := tx.exec(`DELETE FROM webhooks WHERE id = ?`, id); err != nil {
		return fmt.Errorf("delete webhook: %w", err)
	}
	return nil
}

// WebhookAttempted records a failed attempt: the webhook is due again at
// next, or, when failed, kept as failed until a manual retry.
func (tx *Tx) WebhookAttempted(id string, failed bool, next time.Time, status int, errText string) error {
	state := WebhookPending
	if failed {
		state = WebhookFailed
	}
	if _, err := tx.exec(`UPDATE webhooks SET state = ?, attempts = attempts + 1, next_at = ?, lease_until = 0,
		last_status = ?, last_error = ? WHERE id = ?`, state, Micros(next), status, errText, id); err != nil {
		return fmt.Errorf("update webhook: %w", err)
	}
	return nil
}

// FailedWebhooks lists up to limit failed webhooks, oldest first, after the
// one with id after ("" = from the start).
func (tx *Tx) FailedWebhooks(after string, limit int) ([]*Webhook, error) {
	q := `SELECT ` + webhookColumns + ` FROM webhooks WHERE state = ?`
	args := []any{WebhookFailed}
	if after != "" {
		q += ` AND id > ?`
		args = append(args, after)
	}
	return tx.webhooks(q+` ORDER BY id LIMIT ?`, append(args, limit)...)
}

// RetryWebhook makes a failed webhook due at now, with a new max age from
// now, and returns it; parley.NotFound when there is no such failed webhook.
// A pending one is left as it is and returned (it is being retried already).
func (tx *Tx) RetryWebhook(id string, now time.Time) (*Webhook, error) {
	w, err := scanWebhook(tx.queryRow(`SELECT `+webhookColumns+` FROM webhooks WHERE id = ?`, id))
	if isNoRows(err) {
		return nil, parley.NotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load webhook: %w", err)
	}
	if w.State != WebhookFailed {
		return w, nil
	}
	us := Micros(now)
	if _, err := tx.exec(`UPDATE webhooks SET state = ?, next_at = ?, retry_from = ?, lease_until = 0 WHERE id = ?`,
		WebhookPending, us, us, id); err != nil {
		return nil, fmt.Errorf("retry webhook: %w", err)
	}
	w.State, w.NextAt, w.RetryFrom = WebhookPending, now, now
	return w, nil
}

// WebhookCounts returns how many webhooks are pending and failed.
func (tx *Tx) WebhookCounts() (pending, failed int64, err error) {
	rows, err := tx.query(`SELECT state, COUNT(*) FROM webhooks GROUP BY state`)
	if err != nil {
		return 0, 0, fmt.Errorf("count webhooks: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			return 0, 0, err
		}
		switch s {
		case WebhookPending:
			pending = n
		case WebhookFailed:
			failed = n
		}
	}
	return pending, failed, rows.Err()
}

// UnreadWatch is a pending message.unread: the conversation's recipient
// has not read MessageID by DueAt.
type UnreadWatch struct {
	ConversationID string
	UserID         string
	MessageID      string
	DueAt          time.Time
}

// ArmUnread watches the recipient's reading of a new message, unless a
// watch of the conversation is armed or has fired already (one
// message.unread per conversation until the recipient reads it).
func (tx *Tx) ArmUnread(conversationID, userID, messageID string, due time.Time) error {
	if _, err := tx.exec(`INSERT INTO webhook_unread (conversation_id, user_id, message_id, due_at, fired)
		VALUES (?, ?, ?, ?, FALSE) ON CONFLICT (conversation_id, user_id) DO NOTHING`,
		conversationID, userID, messageID, Micros(due)); err != nil {
		return fmt.Errorf("arm unread: %w", err)
	}
	return nil
}

// ClearUnread drops the user's watch of the conversation: they read it,
// which cancels a pending message.unread and re-arms the next one.
func (tx *Tx) ClearUnread(conversationID, userID string) error {
	if _, err := tx.exec(`DELETE FROM webhook_unread WHERE conversation_id = ? AND user_id = ?`, conversationID, userID); err != nil {
		return fmt.Errorf("clear unread: %w", err)
	}
	return nil
}

// DueUnread returns up to limit watches due at now that have not fired.
func (tx *Tx) DueUnread(now time.Time, limit int) ([]UnreadWatch, error) {
	rows, err := tx.query(`SELECT conversation_id, user_id, message_id, due_at FROM webhook_unread
		WHERE fired = FALSE AND due_at <= ? ORDER BY due_at LIMIT ?`, Micros(now), limit)
	if err != nil {
		return nil, fmt.Errorf("list unread watches: %w", err)
	}
	defer rows.Close()
	var out []UnreadWatch
	for rows.Next() {
		var w UnreadWatch
		var due int64
		if err := rows.Scan(&w.ConversationID, &w.UserID, &w.MessageID, &due); err != nil {
			return nil, err
		}
		w.DueAt = FromMicros(due)
		out = append(out, w)
	}
	return out, rows.Err()
}

// FireUnread marks the watch fired, so that it fires no more until the
// user reads the conversation. It reports false when another node fired
// or cleared it first.
func (tx *Tx) FireUnread(conversationID, userID string) (bool, error) {
	res, err := tx.exec(`UPDATE webhook_unread SET fired = TRUE WHERE conversation_id = ? AND user_id = ? AND fired = FALSE`,
		conversationID, userID)
	if err != nil {
		return false, fmt.Errorf("fire unread: %w", err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}
