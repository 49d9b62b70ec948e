package store

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/search"
)

// ErrDuplicate is returned by inserts that hit a unique index (a message's
// client_id, a conversation's live call). Callers turn it into the answer
// their rule calls for; on PostgreSQL the transaction is spoiled by then, so
// it must be returned, not recovered from inside the transaction.
var ErrDuplicate = errors.New("duplicate key")

// ConversationRow is a conversation as stored, without any user's view.
type ConversationRow struct {
	ID             string
	ClientID       string
	ProfessionalID string
	Subject        string
	CreatedAt      time.Time
	LastSeq        int64
}

// Member is one participant's row of a conversation.
type Member struct {
	ConversationID string
	UserID         string
	PeerID         string
	ReadSeq        int64
	DeliveredSeq   int64
}

// CreateConversation inserts the conversation and both of its members, with
// no messages yet.
func (tx *Tx) CreateConversation(c *ConversationRow) error {
	at := Micros(c.CreatedAt)
	if _, err := tx.exec(`INSERT INTO conversations (id, client_id, professional_id, subject, created_at, last_seq, last_activity)
		VALUES (?, ?, ?, ?, ?, 0, ?)`, c.ID, c.ClientID, c.ProfessionalID, c.Subject, at, at); err != nil {
		return fmt.Errorf("insert conversation: %w", err)
	}
	for _, m := range [][2]string{{c.ClientID, c.ProfessionalID}, {c.ProfessionalID, c.ClientID}} {
		if _, err := tx.exec(`INSERT INTO conversation_members (conversation_id, user_id, peer_id, read_seq, delivered_seq)
			VALUES (?, ?, ?, 0, 0)`, c.ID, m[0], m[1]); err != nil {
			return fmt.Errorf("insert member: %w", err)
		}
	}
	return nil
}

// Member returns the user's row of the conversation, or parley.NotFound when
// the conversation does not exist or the user is not in it (the same answer,
// so a caller cannot tell the two apart).
func (tx *Tx) Member(conversationID, userID string) (*Member, error) {
	if impossibleKey(conversationID) {
		return nil, parley.NotFound
	}
	m := Member{ConversationID: conversationID, UserID: userID}
	err := tx.queryRow(`SELECT peer_id, read_seq, delivered_seq FROM conversation_members WHERE conversation_id = ? AND user_id = ?`,
		conversationID, userID).Scan(&m.PeerID, &m.ReadSeq, &m.DeliveredSeq)
	if isNoRows(err) {
		return nil, parley.NotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load member: %w", err)
	}
	return &m, nil
}

// LastSeq returns the seq of the conversation's newest message.
func (tx *Tx) LastSeq(conversationID string) (int64, error) {
	var n int64
	err := tx.queryRow(`SELECT last_seq FROM conversations WHERE id = ?`, conversationID).Scan(&n)
	if isNoRows(err) {
		return 0, parley.NotFound
	}
	return n, err
}

// NextSeq allocates the conversation's next message seq and records activity
// at at. The row stays locked until the transaction ends, which orders
// concurrent sends: seq order is commit order, so every log sees a
// conversation's messages in seq order.
func (tx *Tx) NextSeq(conversationID string, at time.Time) (int64, error) {
	var seq int64
	us := Micros(at)
	err := tx.queryRow(`UPDATE conversations SET last_seq = last_seq + 1,
		last_activity = CASE WHEN last_activity < ? THEN ? ELSE last_activity END
		WHERE id = ? RETURNING last_seq`, us, us, conversationID).Scan(&seq)
	if isNoRows(err) {
		return 0, parley.NotFound
	}
	if err != nil {
		return 0, fmt.Errorf("allocate seq: %w", err)
	}
	tx.lockedConversation(conversationID)
	return seq, nil
}

// MemberNextSeq is NextSeq for a participant sending, and their peer: one
// statement, where Member then NextSeq was two (on SQLite each costs more in
// the driver than in the database). For someone not in the conversation the
// row is updated all the same and NotFound returned: the caller must return
// it from the transaction, not recover from it, so the update is undone.
func (tx *Tx) MemberNextSeq(conversationID, userID string, at time.Time) (peerID string, seq int64, err error) {
	if impossibleKey(conversationID) {
		return "", 0, parley.NotFound
	}
	us := Micros(at)
	var peer *string
	err = tx.queryRow(`UPDATE conversations SET last_seq = last_seq + 1,
		last_activity = CASE WHEN last_activity < ? THEN ? ELSE last_activity END
		WHERE id = ? RETURNING last_seq,
		(SELECT peer_id FROM conversation_members WHERE conversation_id = ? AND user_id = ?)`,
		us, us, conversationID, conversationID, userID).Scan(&seq, &peer)
	if isNoRows(err) || (err == nil && peer == nil) {
		return "", 0, parley.NotFound
	}
	if err != nil {
		return "", 0, fmt.Errorf("allocate seq: %w", err)
	}
	tx.lockedConversation(conversationID)
	return *peer, seq, nil
}

// Contacts returns the users who share a conversation with userID.
func (tx *Tx) Contacts(userID string) ([]string, error) {
	ids, err := tx.queryStrings(`SELECT DISTINCT peer_id FROM conversation_members WHERE user_id = ?`, userID)
	if err != nil {
		return nil, fmt.Errorf("list contacts: %w", err)
	}
	return ids, nil
}

// conversationView selects a conversation from one member's point of view,
// with both users and the newest message, in one query.
const conversationView = `SELECT c.id, c.subject, c.created_at, c.last_seq, c.last_activity,
	m.read_seq, p.read_seq, p.delivered_seq,
	(SELECT COUNT(*) FROM messages x WHERE x.conversation_id = c.id AND x.seq > m.read_seq
		AND x.sender_id <> m.user_id AND x.deleted = FALSE),
	cu.id, cu.username, cu.display_name, cu.role, cu.last_seen, cu.external_id, cu.bio,
	pu.id, pu.username, pu.display_name, pu.role, pu.last_seen, pu.external_id, pu.bio,
	` + lastMessageColumns + `
	FROM conversation_members m
	JOIN conversations c ON c.id = m.conversation_id
	JOIN conversation_members p ON p.conversation_id = m.conversation_id AND p.user_id = m.peer_id
	JOIN users cu ON cu.id = c.client_id
	JOIN users pu ON pu.id = c.professional_id
	LEFT JOIN messages lm ON lm.conversation_id = c.id AND lm.seq = c.last_seq
	WHERE m.user_id = ?`

const lastMessageColumns = `lm.id, lm.conversation_id, lm.seq, lm.sender_id, lm.body, lm.client_id,
	lm.reply_to_id, lm.reply_sender_id, lm.reply_preview, lm.created_at, lm.edited_at, lm.deleted,
	lm.attachments`

// ConversationView returns the conversation as userID sees it, or
// parley.NotFound when they are not in it.
func (tx *Tx) ConversationView(conversationID, userID string) (*parley.Conversation, error) {
	if impossibleKey(conversationID) {
		return nil, parley.NotFound
	}
	c, err := scanConversation(tx.queryRow(conversationView+` AND m.conversation_id = ?`, userID, conversationID))
	if isNoRows(err) {
		return nil, parley.NotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load conversation: %w", err)
	}
	return c, nil
}

// ConversationIDsOf returns the ids of every conversation the user is in.
func (tx *Tx) ConversationIDsOf(userID string) ([]string, error) {
	ids, err := tx.queryStrings(`SELECT conversation_id FROM conversation_members WHERE user_id = ?`, userID)
	if err != nil {
		return nil, fmt.Errorf("list conversation ids: %w", err)
	}
	return ids, nil
}

// ConversationsOf lists the user's conversations, newest activity first, at
// most limit of them.
func (tx *Tx) ConversationsOf(userID string, limit int) ([]*parley.Conversation, error) {
	rows, err := tx.query(conversationView+` ORDER BY c.last_activity DESC, c.id DESC LIMIT ?`, userID, limit)
	if err != nil {
		return nil, fmt.Errorf("list conversations: %w", err)
	}
	defer rows.Close()
	out := []*parley.Conversation{}
	for rows.Next() {
		c, err := scanConversation(rows)
		if err != nil {
			return nil, fmt.Errorf("scan conversation: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

type scanner interface{ Scan(...any) error }

func scanConversation(row scanner) (*parley.Conversation, error) {
	var c parley.Conversation
	var created, activity int64
	var cSeen, pSeen sql.NullInt64
	var cName, pName string
	var cExt, pExt sql.NullString
	var lm nullMessage
	dst := []any{&c.ID, &c.Subject, &created, &c.LastSeq, &activity,
		&c.LastReadSeq, &c.PeerLastReadSeq, &c.PeerDeliveredSeq, &c.UnreadCount,
		&c.Client.ID, &cName, &c.Client.DisplayName, &c.Client.Role, &cSeen, &cExt, &c.Client.Bio,
		&c.Professional.ID, &pName, &c.Professional.DisplayName, &c.Professional.Role, &pSeen, &pExt, &c.Professional.Bio}
	if err := row.Scan(append(dst, lm.dest()...)...); err != nil {
		return nil, err
	}
	c.CreatedAt, c.LastActivity = parley.T(FromMicros(created)), FromMicros(activity)
	c.Client.LastSeen, c.Professional.LastSeen = nullTime(cSeen), nullTime(pSeen)
	c.Client.Username, c.Professional.Username = userName(cName), userName(pName)
	if cExt.Valid {
		c.Client.ExternalID = &cExt.String
	}
	if pExt.Valid {
		c.Professional.ExternalID = &pExt.String
	}
	c.LastMessage = lm.message()
	return &c, nil
}

const messageColumns = `id, conversation_id, seq, sender_id, body, client_id,
	reply_to_id, reply_sender_id, reply_preview, created_at, edited_at, deleted,
	attachments`

// nullMessage scans message columns that may all be NULL (a LEFT JOIN).
type nullMessage struct {
	id, conv, sender, body                       sql.NullString
	clientID, replyID, replySender, replyPreview sql.NullString
	seq, created, edited                         sql.NullInt64
	deleted                                      sql.NullBool
	attachments                                  sql.NullString
}

func (n *nullMessage) dest() []any {
	return []any{&n.id, &n.conv, &n.seq, &n.sender, &n.body, &n.clientID,
		&n.replyID, &n.replySender, &n.replyPreview, &n.created, &n.edited, &n.deleted,
		&n.attachments}
}

func (n *nullMessage) message() *parley.Message {
	if !n.id.Valid {
		return nil
	}
	m := &parley.Message{
		ID: n.id.String, ConversationID: n.conv.String, Seq: n.seq.Int64, Kind: parley.MessageUser,
		SenderID: senderOf(n.sender.String), Body: n.body.String, CreatedAt: parley.T(FromMicros(n.created.Int64)),
		EditedAt: nullTime(n.edited), Deleted: n.deleted.Bool,
	}
	if m.SenderID == nil {
		m.Kind = parley.MessageSystem
	}
	if n.clientID.Valid {
		m.ClientID = &n.clientID.String
	}
	if n.replyID.Valid {
		m.ReplyTo = &parley.Reply{ID: n.replyID.String, SenderID: senderOf(n.replySender.String), Preview: n.replyPreview.String}
	}
	m.Attachments = decodeAttachments(n.attachments)
	return m
}

// systemSender is the stored sender_id of a system message, which has none
// (00007_app_users.sql says why not NULL).
const systemSender = ""

// senderOf maps a stored sender_id to the API's: nil for a system message.
func senderOf(stored string) *string {
	if stored == systemSender {
		return nil
	}
	return &stored
}

// storedSender is the inverse of senderOf.
func storedSender(id *string) string {
	if id == nil {
		return systemSender
	}
	return *id
}

func scanMessage(row scanner) (*parley.Message, error) {
	var n nullMessage
	if err := row.Scan(n.dest()...); err != nil {
		return nil, err
	}
	return n.message(), nil
}

// InsertMessage stores a new message whose seq came from NextSeq. A client_id
// the sender already used is ErrDuplicate.
func (tx *Tx) InsertMessage(m *parley.Message) error {
	var replyID, replySender, replyPreview *string
	if m.ReplyTo != nil {
		replyID, replySender, replyPreview = &m.ReplyTo.ID, parley.Ptr(storedSender(m.ReplyTo.SenderID)), &m.ReplyTo.Preview
	}
	var edited *int64
	if m.EditedAt != nil {
		v := Micros(m.EditedAt.Time)
		edited = &v
	}
	atts, err := encodeAttachments(m.Attachments)
	if err != nil {
		return err
	}
	insert := `INSERT INTO messages (` + messageColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	args := []any{m.ID, m.ConversationID, m.Seq, storedSender(m.SenderID), m.Body, m.ClientID,
		replyID, replySender, replyPreview, Micros(m.CreatedAt.Time), edited, m.Deleted, atts}
	fail := func(err error) error {
		if tx.d.IsUniqueViolation(err) {
			return ErrDuplicate
		}
		return fmt.Errorf("insert message: %w", err)
	}
	if _, ok := tx.d.(ArrayBinder); ok {
		// PostgreSQL: the message and its words ride with the append
		// of its events that follows (Tx.hold).
		w := &heldWrite{ctes: []string{"held_msg AS (" + insert + " RETURNING id)"}, args: args, fail: fail}
		words := ""
		if !m.Deleted && tx.fullText() == TSVector {
			words = search.TSVector(m.Body)
		}
		if words != "" {
			w.ctes = append(w.ctes, "held_words AS (INSERT INTO message_search (message_id, words) SELECT id, ?::tsvector FROM held_msg)")
			w.args = append(w.args, words)
		}
		return tx.hold(w)
	}
	if _, err = tx.exec(insert, args...); err != nil {
		return fail(err)
	}
	if m.Deleted {
		return nil
	}
	return tx.indexMessage(m.ID, m.Body)
}

// MessageByID returns the message or parley.NotFound.
func (tx *Tx) MessageByID(id string) (*parley.Message, error) {
	if impossibleKey(id) {
		return nil, parley.NotFound
	}
	m, err := scanMessage(tx.queryRow(`SELECT `+messageColumns+` FROM messages WHERE id = ?`, id))
	if isNoRows(err) {
		return nil, parley.NotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load message: %w", err)
	}
	return m, nil
}

// MessageByClientID returns the sender's message with that client_id, or
// parley.NotFound. A nil sender looks among system messages.
func (tx *Tx) MessageByClientID(sender *string, clientID string) (*parley.Message, error) {
	senderID := storedSender(sender)
	if impossibleKey(clientID) {
		return nil, parley.NotFound
	}
	m, err := scanMessage(tx.queryRow(`SELECT `+messageColumns+` FROM messages WHERE sender_id = ? AND client_id = ?`,
		senderID, clientID))
	if isNoRows(err) {
		return nil, parley.NotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load message by client_id: %w", err)
	}
	return m, nil
}

// EditMessage replaces the body of a message that is not deleted; a
// deleted one is a conflict.
func (tx *Tx) EditMessage(id, body string, at time.Time) error {
	res, err := tx.exec(`UPDATE messages SET body = ?, edited_at = ? WHERE id = ? AND deleted = FALSE`, body, Micros(at), id)
	if err != nil {
		return fmt.Errorf("edit message: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("edit message: %w", err)
	}
	if n == 0 {
		// Deleted since the caller read it (a back end with concurrent
		// writers): an edit must not put text back into the log after
		// its message.deleted.
		return parley.Errorf(parley.EConflict, "the message was deleted")
	}
	if err := tx.setReplyPreviews(id, parley.ReplyPreview(body)); err != nil {
		return err
	}
	return tx.reindexMessage(id, body)
}

// DeleteMessage turns the message into a tombstone: it keeps its seq and
// loses its text, including the text it quoted, its place in the search
// index and its list of attachments (their rows and bytes go with
// DeleteMessageAttachments).
func (tx *Tx) DeleteMessage(id string) error {
	_, err := tx.exec(`UPDATE messages SET body = '', deleted = TRUE, reply_to_id = NULL, reply_sender_id = NULL,
		reply_preview = NULL, attachments = NULL WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete message: %w", err)
	}
	if err := tx.setReplyPreviews(id, ""); err != nil {
		return err
	}
	return tx.unindexMessage(id)
}

// setReplyPreviews makes the replies to a message show its current body: a
// preview is a copy of the quoted text, so an edit or a delete that left it
// would leave the old text readable in every reply.
func (tx *Tx) setReplyPreviews(quotedID, preview string) error {
	if _, err := tx.exec(`UPDATE messages SET reply_preview = ? WHERE reply_to_id = ?`, preview, quotedID); err != nil {
		return fmt.Errorf("update reply previews: %w", err)
	}
	return nil
}

// Messages returns up to limit messages of the conversation in ascending seq,
// and whether more exist in the direction being paged. Forward, it pages up
// from afterSeq (bounded by beforeSeq if > 0); otherwise it returns the
// newest messages below beforeSeq (or the newest of all), and the bool tells
// whether older ones exist.
func (tx *Tx) Messages(conversationID string, beforeSeq, afterSeq int64, forward bool, limit int) ([]*parley.Message, bool, error) {
	q := `SELECT ` + messageColumns + ` FROM messages WHERE conversation_id = ?`
	args := []any{conversationID}
	if beforeSeq > 0 {
		q += ` AND seq < ?`
		args = append(args, beforeSeq)
	}
	if forward {
		q += ` AND seq > ? ORDER BY seq ASC LIMIT ?`
		args = append(args, afterSeq)
	} else {
		q += ` ORDER BY seq DESC LIMIT ?`
	}
	args = append(args, limit+1)
	rows, err := tx.query(q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("list messages: %w", err)
	}
	defer rows.Close()
	out := make([]*parley.Message, 0, min(limit+1, 64))
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, false, fmt.Errorf("scan message: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	more := len(out) > limit
	if more {
		out = out[:limit]
	}
	if !forward {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out, more, nil
}

// AdvanceRead moves the user's read marker forward to upTo, and the delivered
// marker with it (what was read was delivered). It reports whether the read
// marker moved; it never moves back.
func (tx *Tx) AdvanceRead(conversationID, userID string, upTo int64) (bool, error) {
	res, err := tx.exec(`UPDATE conversation_members SET read_seq = ?,
		delivered_seq = CASE WHEN delivered_seq < ? THEN ? ELSE delivered_seq END
		WHERE conversation_id = ? AND user_id = ? AND read_seq < ?`,
		upTo, upTo, upTo, conversationID, userID, upTo)
	if err != nil {
		return false, fmt.Errorf("advance read: %w", err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// Delivery is a delivered marker to move: the user has received the
// conversation's messages up to UpTo.
type Delivery struct {
	ConversationID, UserID string
	UpTo                   int64
}

// advanceDeliveredSQL moves many markers in one statement, locking the rows
// in key order first as the flushes of several nodes otherwise could in
// opposite orders.
const advanceDeliveredSQL = `WITH v AS (
	SELECT * FROM unnest(?::text[], ?::text[], ?::bigint[]) AS v(c, u, s)
), locked AS MATERIALIZED (
	SELECT m.conversation_id, m.user_id FROM conversation_members m JOIN v ON m.conversation_id = v.c AND m.user_id = v.u
	ORDER BY m.conversation_id, m.user_id FOR UPDATE OF m
)
UPDATE conversation_members m SET delivered_seq = v.s
FROM v JOIN locked l ON l.conversation_id = v.c AND l.user_id = v.u
WHERE m.conversation_id = v.c AND m.user_id = v.u AND m.delivered_seq < v.s
RETURNING m.conversation_id, m.user_id, m.peer_id`

// AdvanceDeliveredAll moves each user's delivered marker forward to its
// UpTo, and returns the peer of each marker that moved ("" for one that
// was already there), in ds's order. The markers name distinct rows. The
// condition in the UPDATE is what keeps two nodes flushing at once from
// moving a marker back.
func (tx *Tx) AdvanceDeliveredAll(ds []Delivery) ([]string, error) {
	peers := make([]string, len(ds))
	at := make(map[[2]string]int, len(ds))
	for i, d := range ds {
		at[[2]string{d.ConversationID, d.UserID}] = i
	}
	if _, ok := tx.d.(ArrayBinder); ok {
		convs, users, upTo := make([]string, len(ds)), make([]string, len(ds)), make([]int64, len(ds))
		for i, d := range ds {
			convs[i], users[i], upTo[i] = d.ConversationID, d.UserID, d.UpTo
		}
		if err := tx.advancedPeers(at, peers, advanceDeliveredSQL, convs, users, upTo); err != nil {
			return nil, err
		}
		return peers, nil
	}
	// A statement per chunk of rows of VALUES, not per marker: the
	// statement, not the row, was most of a flush's cost on SQLite. One
	// writer, so no locks to order.
	for part := range chunks(ds, rowChunk) {
		q := `UPDATE conversation_members AS m SET delivered_seq = v.column3
			FROM (VALUES (?, ?, ?)` + strings.Repeat(`, (?, ?, ?)`, len(part)-1) + `) AS v
			WHERE m.conversation_id = v.column1 AND m.user_id = v.column2 AND m.delivered_seq < v.column3
			RETURNING conversation_id, user_id, peer_id`
		args := make([]any, 0, 3*len(part))
		for _, d := range part {
			args = append(args, d.ConversationID, d.UserID, d.UpTo)
		}
		if err := tx.advancedPeers(at, peers, q, args...); err != nil {
			return nil, err
		}
	}
	return peers, nil
}

// advancedPeers runs an update of delivered markers returning
// (conversation_id, user_id, peer_id) and puts each peer at its marker's
// index in peers.
func (tx *Tx) advancedPeers(at map[[2]string]int, peers []string, q string, args ...any) error {
	rows, err := tx.query(q, args...)
	if err != nil {
		return fmt.Errorf("advance delivered: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var conv, user, peer string
		if err := rows.Scan(&conv, &user, &peer); err != nil {
			return fmt.Errorf("advance delivered: %w", err)
		}
		i, ok := at[[2]string{conv, user}]
		if !ok {
			return fmt.Errorf("advance delivered: a marker nobody asked for moved (%s, %s)", conv, user)
		}
		peers[i] = peer
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("advance delivered: %w", err)
	}
	return nil
}

const callColumns = `id, conversation_id, caller_id, callee_id, media, state, created_at, answered_at, ended_at`

func scanCall(row scanner) (*parley.Call, error) {
	var c parley.Call
	var created int64
	var answered, ended sql.NullInt64
	if err := row.Scan(&c.ID, &c.ConversationID, &c.CallerID, &c.CalleeID, &c.Media, &c.State, &created, &answered, &ended); err != nil {
		return nil, err
	}
	c.CreatedAt, c.AnsweredAt, c.EndedAt = parley.T(FromMicros(created)), nullTime(answered), nullTime(ended)
	return &c, nil
}

// InsertCall stores a new ringing call. A conversation that already has a
// ringing or active call gives ErrDuplicate.
func (tx *Tx) InsertCall(c *parley.Call) error {
	_, err := tx.exec(`INSERT INTO calls (`+callColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)`,
		c.ID, c.ConversationID, c.CallerID, c.CalleeID, c.Media, c.State, Micros(c.CreatedAt.Time))
	if tx.d.IsUniqueViolation(err) {
		return ErrDuplicate
	}
	if err != nil {
		return fmt.Errorf("insert call: %w", err)
	}
	return nil
}

// CallByID returns the call or parley.NotFound.
func (tx *Tx) CallByID(id string) (*parley.Call, error) {
	if impossibleKey(id) {
		return nil, parley.NotFound
	}
	c, err := scanCall(tx.queryRow(`SELECT `+callColumns+` FROM calls WHERE id = ?`, id))
	if isNoRows(err) {
		return nil, parley.NotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load call: %w", err)
	}
	return c, nil
}

// LiveCall returns the conversation's ringing or active call, or
// parley.NotFound.
func (tx *Tx) LiveCall(conversationID string) (*parley.Call, error) {
	c, err := scanCall(tx.queryRow(`SELECT `+callColumns+` FROM calls WHERE conversation_id = ? AND state IN ('ringing', 'active')`,
		conversationID))
	if isNoRows(err) {
		return nil, parley.NotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load live call: %w", err)
	}
	return c, nil
}

// SetCallState moves the call from state from to state to, setting
// answered_at or ended_at to at as the new state calls for. It reports
// whether the call was in state from; the condition makes a transition
// happen once even when two nodes race for it (accept against ring timeout).
func (tx *Tx) SetCallState(id, from, to string, at time.Time) (bool, error) {
	col := "ended_at"
	if to == parley.CallActive {
		col = "answered_at"
	}
	res, err := tx.exec(`UPDATE calls SET state = ?, `+col+` = ? WHERE id = ? AND state = ?`, to, Micros(at), id, from)
	if err != nil {
		return false, fmt.Errorf("set call state: %w", err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// AddSignalBytes counts n more bytes of call.signal payload written by the
// caller (or the callee) of call id, unless that would take the party's
// total past limit; it reports whether they were counted. The condition in
// the UPDATE makes the check and the count one step, whatever the node.
func (tx *Tx) AddSignalBytes(id string, caller bool, n, limit int64) (bool, error) {
	col := "callee_signal_bytes"
	if caller {
		col = "caller_signal_bytes"
	}
	res, err := tx.exec(`UPDATE calls SET `+col+` = `+col+` + ? WHERE id = ? AND `+col+` + ? <= ?`, n, id, n, limit)
	if err != nil {
		return false, fmt.Errorf("count signal bytes: %w", err)
	}
	k, err := res.RowsAffected()
	return k > 0, err
}

// RingingSince lists up to limit calls still ringing that started before t.
func (tx *Tx) RingingSince(t time.Time, limit int) ([]*parley.Call, error) {
	rows, err := tx.query(`SELECT `+callColumns+` FROM calls WHERE state = 'ringing' AND created_at < ? ORDER BY created_at LIMIT ?`,
		Micros(t), limit)
	if err != nil {
		return nil, fmt.Errorf("list ringing calls: %w", err)
	}
	defer rows.Close()
	var out []*parley.Call
	for rows.Next() {
		c, err := scanCall(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
