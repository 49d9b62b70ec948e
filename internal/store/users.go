package store

import (
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/parley-chat/parley"
)

const userColumns = `id, username, display_name, role, password_hash, created_at, last_seen, external_id, erased_at, bio`

// noUsername marks the stored username of a user who has none (an app's
// user, an erased account): '~' and the id, which no real username can be
// (00007_app_users.sql says why a marker and not NULL).
const noUsername = "~"

// storedUsername is what the username column holds for u.
func storedUsername(u *parley.User) string {
	if u.Username == nil {
		return noUsername + u.ID
	}
	return *u.Username
}

func scanUser(row interface{ Scan(...any) error }) (*parley.User, error) {
	var u parley.User
	var hash, username string
	var created int64
	var lastSeen, erased sql.NullInt64
	var external sql.NullString
	if err := row.Scan(&u.ID, &username, &u.DisplayName, &u.Role, &hash, &created, &lastSeen, &external, &erased, &u.Bio); err != nil {
		return nil, err
	}
	u.Username = userName(username)
	u.PasswordHash = []byte(hash)
	u.CreatedAt = FromMicros(created)
	u.LastSeen = nullTime(lastSeen)
	if external.Valid {
		u.ExternalID = &external.String
	}
	u.Erased = erased.Valid
	return &u, nil
}

// userName maps a stored username to the API's: nil for the marker.
func userName(stored string) *string {
	if strings.HasPrefix(stored, noUsername) {
		return nil
	}
	return &stored
}

// CreateUser inserts u and the head of its event log. A taken username is a
// conflict; so is a taken external id, which callers provisioning an app's
// user (who may race another node) answer by reading the user instead.
func (tx *Tx) CreateUser(u *parley.User) error {
	_, err := tx.exec(`INSERT INTO users (`+userColumns+`) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, NULL, ?)`,
		u.ID, storedUsername(u), u.DisplayName, u.Role, string(u.PasswordHash), Micros(u.CreatedAt), u.ExternalID, u.Bio)
	if tx.d.IsUniqueViolation(err) {
		if u.ExternalID != nil {
			return ErrDuplicate
		}
		return parley.Errorf(parley.EConflict, "username %q is taken", u.Name())
	}
	if err != nil {
		return fmt.Errorf("insert user: %w", err)
	}
	if _, err := tx.exec(`INSERT INTO event_heads (user_id, last_id) VALUES (?, 0)`, u.ID); err != nil {
		return fmt.Errorf("insert event head: %w", err)
	}
	if tx.heads != nil {
		tx.created = append(tx.created, u.ID)
	}
	return nil
}

// UserByExternalID returns the app's user with that id (a token's sub), or
// parley.NotFound.
func (tx *Tx) UserByExternalID(externalID string) (*parley.User, error) {
	if impossibleKey(externalID) {
		return nil, parley.NotFound
	}
	u, err := scanUser(tx.queryRow(`SELECT `+userColumns+` FROM users WHERE external_id = ?`, externalID))
	if isNoRows(err) {
		return nil, parley.NotFound
	}
	return u, err
}

// UpdateUser sets a user's display name and role.
func (tx *Tx) UpdateUser(id, displayName, role string) error {
	tx.userChanged(id)
	_, err := tx.exec(`UPDATE users SET display_name = ?, role = ? WHERE id = ?`, displayName, role, id)
	if err != nil {
		return fmt.Errorf("update user: %w", err)
	}
	return nil
}

// MarkErased flags the account as being erased: from then on it is refused
// everywhere (auth) while its erasure runs, and found again only to finish
// that erasure.
func (tx *Tx) MarkErased(id string, at time.Time) error {
	tx.userChanged(id)
	_, err := tx.exec(`UPDATE users SET erased_at = ? WHERE id = ? AND erased_at IS NULL`, Micros(at), id)
	if err != nil {
		return fmt.Errorf("mark erased: %w", err)
	}
	return nil
}

// ErasedName is the display name an erased account keeps.
const ErasedName = "Deleted user"

// EraseUser turns the account into what an erasure leaves: its id and role,
// so that conversations still name a participant, and nothing else: no
// external id (a new token with the same sub makes a new user), no name,
// no bio, no password, no last_seen.
func (tx *Tx) EraseUser(id string, at time.Time) error {
	tx.userChanged(id)
	_, err := tx.exec(`UPDATE users SET username = ?, external_id = NULL, display_name = ?, password_hash = '',
		last_seen = NULL, bio = '', erased_at = COALESCE(erased_at, ?) WHERE id = ?`, noUsername+id, ErasedName, Micros(at), id)
	if err != nil {
		return fmt.Errorf("erase user: %w", err)
	}
	return nil
}

// RevokeUserSessions ends every live session of the user at once, and
// their push subscriptions, and returns their ids, so that their streams
// can be told.
func (tx *Tx) RevokeUserSessions(userID string) ([]string, error) {
	tx.userChanged(userID)
	rows, err := tx.query(`UPDATE sessions SET revoked = ?, revoked_at = ? WHERE user_id = ? AND revoked = ? RETURNING id`,
		true, Micros(Now()), userID, false)
	if err != nil {
		return nil, fmt.Errorf("revoke sessions: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if _, err := tx.exec(`DELETE FROM push_subscriptions WHERE user_id = ?`, userID); err != nil {
		return nil, fmt.Errorf("delete push subscriptions: %w", err)
	}
	return ids, nil
}

// VisibleUser returns the user if viewerID may see them (Users says who),
// else parley.NotFound, as for a user who does not exist.
func (tx *Tx) VisibleUser(viewerID, id string) (*parley.User, error) {
	u, err := tx.UserByID(id)
	if err != nil || u.Role == parley.RoleProfessional || u.ID == viewerID {
		return u, err
	}
	ok, err := tx.Shares(viewerID, id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, parley.NotFound
	}
	return u, nil
}

// HasUsers reports whether any account exists (erased ones aside).
func (tx *Tx) HasUsers() (bool, error) {
	var n int
	err := tx.queryRow(`SELECT COUNT(*) FROM (SELECT 1 FROM users WHERE erased_at IS NULL LIMIT 1) x`).Scan(&n)
	return n > 0, err
}

// Shares reports whether the two users share a conversation.
func (tx *Tx) Shares(userID, otherID string) (bool, error) {
	var n int
	err := tx.queryRow(`SELECT COUNT(*) FROM conversation_members WHERE user_id = ? AND peer_id = ?`, userID, otherID).Scan(&n)
	return n > 0, err
}

// UserByID returns the user or parley.NotFound.
func (tx *Tx) UserByID(id string) (*parley.User, error) {
	if impossibleKey(id) {
		return nil, parley.NotFound
	}
	u, err := scanUser(tx.queryRow(`SELECT `+userColumns+` FROM users WHERE id = ?`, id))
	if isNoRows(err) {
		return nil, parley.NotFound
	}
	return u, err
}

// UserByUsername returns the user or parley.NotFound.
func (tx *Tx) UserByUsername(username string) (*parley.User, error) {
	if impossibleKey(username) || strings.HasPrefix(username, noUsername) {
		return nil, parley.NotFound
	}
	u, err := scanUser(tx.queryRow(`SELECT `+userColumns+` FROM users WHERE username = ?`, username))
	if isNoRows(err) {
		return nil, parley.NotFound
	}
	return u, err
}

// Users lists the users viewerID may see, of one role if role is not
// empty, by username (an app's users after Parley's own): the professionals
// (the directory), the people viewerID shares a conversation with, and
// viewerID. Erased accounts are left out.
func (tx *Tx) Users(viewerID, role string, limit int) ([]*parley.User, error) {
	q := `SELECT ` + userColumns + ` FROM users WHERE erased_at IS NULL AND (role = ? OR id = ?
		OR EXISTS (SELECT 1 FROM conversation_members m WHERE m.user_id = ? AND m.peer_id = users.id))`
	args := []any{parley.RoleProfessional, viewerID, viewerID}
	if role != "" {
		q += ` AND role = ?`
		args = append(args, role)
	}
	q += ` ORDER BY username LIMIT ?`
	args = append(args, limit)
	rows, err := tx.query(q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*parley.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// SetLastSeen records when the user was last online.
func (tx *Tx) SetLastSeen(userID string, at time.Time) error {
	tx.userChanged(userID)
	_, err := tx.exec(`UPDATE users SET last_seen = ? WHERE id = ?`, Micros(at), userID)
	return err
}

// CreateSession inserts a new session. An id that exists already is
// ErrDuplicate: an app token's session is keyed by the token, and two nodes
// may see its first use at once.
func (tx *Tx) CreateSession(s *parley.Session) error {
	_, err := tx.exec(`INSERT INTO sessions (id, user_id, created_at, last_active, expires_at, revoked) VALUES (?, ?, ?, ?, ?, ?)`,
		s.ID, s.UserID, Micros(s.CreatedAt), Micros(s.LastActive), Micros(s.ExpiresAt), false)
	if tx.d.IsUniqueViolation(err) {
		return ErrDuplicate
	}
	return err
}

// Session returns the session or parley.NotFound.
func (tx *Tx) Session(id string) (*parley.Session, error) {
	var r sessionRow
	err := tx.queryRow(`SELECT id, user_id, created_at, last_active, expires_at, revoked FROM sessions WHERE id = ?`, id).
		Scan(r.dest()...)
	if isNoRows(err) {
		return nil, parley.NotFound
	}
	if err != nil {
		return nil, err
	}
	return r.session(), nil
}

// sessionRow is a session as scanned, its times in the stored form.
type sessionRow struct {
	s                        parley.Session
	created, active, expires int64
}

func (r *sessionRow) dest() []any {
	return []any{&r.s.ID, &r.s.UserID, &r.created, &r.active, &r.expires, &r.s.Revoked}
}

func (r *sessionRow) session() *parley.Session {
	r.s.CreatedAt, r.s.LastActive, r.s.ExpiresAt = FromMicros(r.created), FromMicros(r.active), FromMicros(r.expires)
	return &r.s
}

// userColumnsOfU is userColumns for a query that names the users table u.
var userColumnsOfU = "u." + strings.ReplaceAll(userColumns, ", ", ", u.")

// SessionWithUser returns a session and its user in one statement, for
// authenticating a request; parley.NotFound if either is gone.
func (tx *Tx) SessionWithUser(id string) (*parley.Session, *parley.User, error) {
	if impossibleKey(id) {
		return nil, nil, parley.NotFound
	}
	var r sessionRow
	row := tx.queryRow(`SELECT s.id, s.user_id, s.created_at, s.last_active, s.expires_at, s.revoked, `+userColumnsOfU+`
		FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ?`, id)
	u, err := scanUser(leadingScan{row, r.dest()})
	if isNoRows(err) {
		return nil, nil, parley.NotFound
	}
	if err != nil {
		return nil, nil, err
	}
	return r.session(), u, nil
}

// leadingScan scans a row whose first columns go to lead, the rest to the
// destinations its caller gives.
type leadingScan struct {
	row  interface{ Scan(...any) error }
	lead []any
}

func (l leadingScan) Scan(dest ...any) error {
	return l.row.Scan(append(l.lead[:len(l.lead):len(l.lead)], dest...)...)
}

// TouchSession moves the session's last activity forward to at.
func (tx *Tx) TouchSession(id string, at time.Time) error {
	tx.sessionChanged(id)
	_, err := tx.exec(`UPDATE sessions SET last_active = ? WHERE id = ? AND last_active < ?`, Micros(at), id, Micros(at))
	return err
}

// EndedBetween returns the sessions that ended in (from, to]: revoked,
// expired, or (when idle > 0) whose idle time ran out in that window.
// Consecutive windows together see every session end exactly once or more.
func (tx *Tx) EndedBetween(from, to time.Time, idle time.Duration) ([]parley.Session, error) {
	f, t := Micros(from), Micros(to)
	q := `SELECT id, user_id FROM sessions WHERE (revoked_at > ? AND revoked_at <= ?) OR (expires_at > ? AND expires_at <= ?)`
	args := []any{f, t, f, t}
	if idle > 0 {
		q += ` OR (last_active > ? AND last_active <= ?)`
		args = append(args, f-idle.Microseconds(), t-idle.Microseconds())
	}
	rows, err := tx.query(q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []parley.Session
	for rows.Next() {
		var s parley.Session
		if err := rows.Scan(&s.ID, &s.UserID); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// RevokeSession ends the session at once, and with it the session's push
// subscription.
func (tx *Tx) RevokeSession(id string) error {
	tx.sessionChanged(id)
	if _, err := tx.exec(`UPDATE sessions SET revoked = ?, revoked_at = ? WHERE id = ?`, true, Micros(Now()), id); err != nil {
		return err
	}
	return tx.DeletePushSubscription(id)
}
