package store

import (
	"database/sql"
	"fmt"
	"time"

	"github.com/parley-chat/parley"
)

const userColumns = `id, username, display_name, role, password_hash, created_at, last_seen`

func scanUser(row interface{ Scan(...any) error }) (*parley.User, error) {
	var u parley.User
	var hash string
	var created int64
	var lastSeen sql.NullInt64
	if err := row.Scan(&u.ID, &u.Username, &u.DisplayName, &u.Role, &hash, &created, &lastSeen); err != nil {
		return nil, err
	}
	u.PasswordHash = []byte(hash)
	u.CreatedAt = FromMicros(created)
	u.LastSeen = nullTime(lastSeen)
	return &u, nil
}

// CreateUser inserts u and the head of its event log. A taken username is a
// conflict.
func (tx *Tx) CreateUser(u *parley.User) error {
	_, err := tx.exec(`INSERT INTO users (`+userColumns+`) VALUES (?, ?, ?, ?, ?, ?, NULL)`,
		u.ID, u.Username, u.DisplayName, u.Role, string(u.PasswordHash), Micros(u.CreatedAt))
	if tx.d.IsUniqueViolation(err) {
		return parley.Errorf(parley.EConflict, "username %q is taken", u.Username)
	}
	if err != nil {
		return fmt.Errorf("insert user: %w", err)
	}
	if _, err := tx.exec(`INSERT INTO event_heads (user_id, last_id) VALUES (?, 0)`, u.ID); err != nil {
		return fmt.Errorf("insert event head: %w", err)
	}
	return nil
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
	if impossibleKey(username) {
		return nil, parley.NotFound
	}
	u, err := scanUser(tx.queryRow(`SELECT `+userColumns+` FROM users WHERE username = ?`, username))
	if isNoRows(err) {
		return nil, parley.NotFound
	}
	return u, err
}

// Users lists users, of one role if role is not empty, by username.
func (tx *Tx) Users(role string, limit int) ([]*parley.User, error) {
	q := `SELECT ` + userColumns + ` FROM users`
	args := []any{}
	if role != "" {
		q += ` WHERE role = ?`
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
	_, err := tx.exec(`UPDATE users SET last_seen = ? WHERE id = ?`, Micros(at), userID)
	return err
}

// CreateSession inserts a new session.
func (tx *Tx) CreateSession(s *parley.Session) error {
	_, err := tx.exec(`INSERT INTO sessions (id, user_id, created_at, last_active, expires_at, revoked) VALUES (?, ?, ?, ?, ?, ?)`,
		s.ID, s.UserID, Micros(s.CreatedAt), Micros(s.LastActive), Micros(s.ExpiresAt), false)
	return err
}

// Session returns the session or parley.NotFound.
func (tx *Tx) Session(id string) (*parley.Session, error) {
	var s parley.Session
	var created, active, expires int64
	err := tx.queryRow(`SELECT id, user_id, created_at, last_active, expires_at, revoked FROM sessions WHERE id = ?`, id).
		Scan(&s.ID, &s.UserID, &created, &active, &expires, &s.Revoked)
	if isNoRows(err) {
		return nil, parley.NotFound
	}
	if err != nil {
		return nil, err
	}
	s.CreatedAt, s.LastActive, s.ExpiresAt = FromMicros(created), FromMicros(active), FromMicros(expires)
	return &s, nil
}

// TouchSession moves the session's last activity forward to at.
func (tx *Tx) TouchSession(id string, at time.Time) error {
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

// RevokeSession ends the session at once.
func (tx *Tx) RevokeSession(id string) error {
	_, err := tx.exec(`UPDATE sessions SET revoked = ?, revoked_at = ? WHERE id = ?`, true, Micros(Now()), id)
	return err
}
