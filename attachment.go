package parley

import "encoding/json"

// Attachment is a file uploaded to a conversation (SPEC §4). Size is in
// bytes; URL is where participants fetch it (GET /api/attachments/{id}).
// ContentType is the sniffed image type for PNG, JPEG, GIF and WebP, and
// never an image type otherwise, so a client may show an attachment inline
// exactly when ContentType starts with "image/".
type Attachment struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	URL         string `json:"url"`
}

// AttachmentURL is the path an attachment is served at.
func AttachmentURL(id string) string { return "/api/attachments/" + id }

// Attachments is a message's list of files. It is written as [] when empty,
// so clients never have to tell a missing list from an empty one.
type Attachments []Attachment

// MarshalJSON implements json.Marshaler.
func (a Attachments) MarshalJSON() ([]byte, error) {
	if len(a) == 0 {
		return []byte("[]"), nil
	}
	return json.Marshal([]Attachment(a))
}

// MaxBioChars bounds a user's bio, in characters (SPEC §4).
const MaxBioChars = 280
