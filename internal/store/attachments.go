package store

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/parley-chat/parley"
)

// AttachmentRow is an upload as stored.
type AttachmentRow struct {
	ID             string
	ConversationID string
	UploaderID     string
	MessageID      string // "" until a message carries it
	Name           string
	ContentType    string
	Size           int64
	CreatedAt      time.Time
}

// Attachment is the row as the API shows it.
func (a *AttachmentRow) Attachment() parley.Attachment {
	return parley.Attachment{ID: a.ID, Name: a.Name, ContentType: a.ContentType, Size: a.Size, URL: parley.AttachmentURL(a.ID)}
}

// storedAttachment is one entry of messages.attachments: the metadata, not
// the URL, which is derived from the id when the row is read.
type storedAttachment struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
}

func encodeAttachments(as parley.Attachments) (*string, error) {
	if len(as) == 0 {
		return nil, nil
	}
	out := make([]storedAttachment, len(as))
	for i, a := range as {
		out[i] = storedAttachment{ID: a.ID, Name: a.Name, ContentType: a.ContentType, Size: a.Size}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode attachments: %w", err)
	}
	s := string(b)
	return &s, nil
}

func decodeAttachments(v sql.NullString) parley.Attachments {
	if !v.Valid || v.String == "" {
		return parley.Attachments{}
	}
	var in []storedAttachment
	if err := json.Unmarshal([]byte(v.String), &in); err != nil {
		// Written by encodeAttachments only; a row that does not decode
		// is shown without files rather than failing the whole page.
		return parley.Attachments{}
	}
	out := make(parley.Attachments, len(in))
	for i, a := range in {
		out[i] = parley.Attachment{ID: a.ID, Name: a.Name, ContentType: a.ContentType, Size: a.Size, URL: parley.AttachmentURL(a.ID)}
	}
	return out
}

const attachmentColumns = `id, conversation_id, uploader_id, message_id, name, content_type, size, created_at`

func scanAttachment(row scanner) (*AttachmentRow, error) {
	var a AttachmentRow
	var msg sql.NullString
	var created int64
	if err := row.Scan(&a.ID, &a.ConversationID, &a.UploaderID, &msg, &a.Name, &a.ContentType, &a.Size, &created); err != nil {
		return nil, err
	}
	a.MessageID, a.CreatedAt = msg.String, FromMicros(created)
	return &a, nil
}

// InsertAttachment stores an upload, not yet attached to a message. data
// is its bytes for a store that keeps them in the database; nil when they
// are kept as a file.
func (tx *Tx) InsertAttachment(a *AttachmentRow, data []byte) error {
	_, err := tx.exec(`INSERT INTO attachments (`+attachmentColumns+`, data) VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?)`,
		a.ID, a.ConversationID, a.UploaderID, a.Name, a.ContentType, a.Size, Micros(a.CreatedAt), data)
	if err != nil {
		return fmt.Errorf("insert attachment: %w", err)
	}
	return nil
}

// AttachmentByID returns an upload's row or parley.NotFound.
func (tx *Tx) AttachmentByID(id string) (*AttachmentRow, error) {
	if impossibleKey(id) {
		return nil, parley.NotFound
	}
	a, err := scanAttachment(tx.queryRow(`SELECT `+attachmentColumns+` FROM attachments WHERE id = ?`, id))
	if isNoRows(err) {
		return nil, parley.NotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load attachment: %w", err)
	}
	return a, nil
}

// AttachmentData returns the bytes of an upload kept in the database.
func (tx *Tx) AttachmentData(id string) ([]byte, error) {
	var data []byte
	err := tx.queryRow(`SELECT data FROM attachments WHERE id = ?`, id).Scan(&data)
	if isNoRows(err) {
		return nil, parley.NotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load attachment data: %w", err)
	}
	return data, nil
}

// PendingUploads counts the user's uploads that no message carries yet.
func (tx *Tx) PendingUploads(uploaderID string) (int, error) {
	var n int
	err := tx.queryRow(`SELECT COUNT(*) FROM attachments WHERE uploader_id = ? AND message_id IS NULL`, uploaderID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count uploads: %w", err)
	}
	return n, nil
}

// AttachToMessage marks each upload as carried by the message, in order,
// and returns them. Each must be the uploader's, in the conversation, and
// not carried by any message yet; otherwise nothing is attached and the
// answer is a 400 naming attachment_ids (the same for an upload that does
// not exist, so nothing leaks). The condition in the UPDATE is what makes
// an upload go with one message even when two sends race for it.
func (tx *Tx) AttachToMessage(ids []string, messageID, conversationID, uploaderID string) (parley.Attachments, error) {
	out := make(parley.Attachments, 0, len(ids))
	for i, id := range ids {
		bad := parley.Invalid("attachment_ids", "attachment_ids[%d] must be an upload of yours to this conversation that no message carries yet", i)
		if impossibleKey(id) {
			return nil, bad
		}
		a := parley.Attachment{ID: id, URL: parley.AttachmentURL(id)}
		err := tx.queryRow(`UPDATE attachments SET message_id = ?
			WHERE id = ? AND conversation_id = ? AND uploader_id = ? AND message_id IS NULL
			RETURNING name, content_type, size`, messageID, id, conversationID, uploaderID).Scan(&a.Name, &a.ContentType, &a.Size)
		if isNoRows(err) {
			return nil, bad
		}
		if err != nil {
			return nil, fmt.Errorf("attach upload: %w", err)
		}
		out = append(out, a)
	}
	return out, nil
}

// DeleteMessageAttachments removes the rows (and, in the database, the
// bytes) of a message's attachments and returns their ids, so that a store
// keeping files can remove them once the transaction has committed.
func (tx *Tx) DeleteMessageAttachments(messageID string) ([]string, error) {
	return tx.deleteAttachmentIDs(`DELETE FROM attachments WHERE message_id = ? RETURNING id`, messageID)
}

// CollectUploads removes up to limit uploads that no message carried and
// that are older than before, and returns their ids.
func (tx *Tx) CollectUploads(before time.Time, limit int) ([]string, error) {
	// message_id IS NULL twice: PostgreSQL re-checks the outer condition
	// on a row a concurrent send attached meanwhile, not the subquery.
	return tx.deleteAttachmentIDs(`DELETE FROM attachments WHERE message_id IS NULL AND id IN (
		SELECT id FROM attachments WHERE message_id IS NULL AND created_at < ? ORDER BY created_at LIMIT ?)
		RETURNING id`, Micros(before), limit)
}

func (tx *Tx) deleteAttachmentIDs(q string, args ...any) ([]string, error) {
	ids, err := tx.queryStrings(q, args...)
	if err != nil {
		return nil, fmt.Errorf("delete attachments: %w", err)
	}
	return ids, nil
}

// AttachmentsExist reports which of ids have a row, for a sweep of files
// whose row is gone.
func (tx *Tx) AttachmentsExist(ids []string) (map[string]bool, error) {
	out := make(map[string]bool, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	q := `SELECT id FROM attachments WHERE id IN (?` + repeat(", ?", len(ids)-1) + `)`
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	rows, err := tx.query(q, args...)
	if err != nil {
		return nil, fmt.Errorf("find attachments: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out[id] = true
	}
	return out, rows.Err()
}

func repeat(s string, n int) string {
	b := make([]byte, 0, len(s)*n)
	for range n {
		b = append(b, s...)
	}
	return string(b)
}
