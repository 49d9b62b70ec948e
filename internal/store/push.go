package store

import (
	"fmt"
	"time"
)

// PushSubscription is a browser's Web Push subscription (RFC 8030), kept
// for the session that registered it.
type PushSubscription struct {
	SessionID string
	UserID    string
	Endpoint  string
	P256dh    string // the browser's P-256 public key, base64url
	Auth      string // the browser's 16-byte auth secret, base64url
	CreatedAt time.Time
}

const pushColumns = `session_id, user_id, endpoint, p256dh, auth, created_at`

// PutPushSubscription makes s the subscription of its session, replacing
// the session's earlier one and taking its endpoint from any other session
// (a browser that logged in again). It reports whether the session had no
// subscription with this endpoint before.
func (tx *Tx) PutPushSubscription(s *PushSubscription) (created bool, err error) {
	var prev string
	err = tx.queryRow(`SELECT endpoint FROM push_subscriptions WHERE session_id = ?`, s.SessionID).Scan(&prev)
	if err != nil && !isNoRows(err) {
		return false, fmt.Errorf("load push subscription: %w", err)
	}
	created = isNoRows(err) || prev != s.Endpoint
	if _, err := tx.exec(`DELETE FROM push_subscriptions WHERE session_id = ? OR endpoint = ?`, s.SessionID, s.Endpoint); err != nil {
		return false, fmt.Errorf("replace push subscription: %w", err)
	}
	if _, err := tx.exec(`INSERT INTO push_subscriptions (`+pushColumns+`) VALUES (?, ?, ?, ?, ?, ?)`,
		s.SessionID, s.UserID, s.Endpoint, s.P256dh, s.Auth, Micros(s.CreatedAt)); err != nil {
		if tx.d.IsUniqueViolation(err) {
			return false, ErrDuplicate
		}
		return false, fmt.Errorf("insert push subscription: %w", err)
	}
	return created, nil
}

// PushSubscriptionOf returns the session's subscription, or nil.
func (tx *Tx) PushSubscriptionOf(sessionID string) (*PushSubscription, error) {
	var s PushSubscription
	var created int64
	err := tx.queryRow(`SELECT `+pushColumns+` FROM push_subscriptions WHERE session_id = ?`, sessionID).
		Scan(&s.SessionID, &s.UserID, &s.Endpoint, &s.P256dh, &s.Auth, &created)
	if isNoRows(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load push subscription: %w", err)
	}
	s.CreatedAt = FromMicros(created)
	return &s, nil
}

// DeletePushSubscription removes the session's subscription, if any.
func (tx *Tx) DeletePushSubscription(sessionID string) error {
	if _, err := tx.exec(`DELETE FROM push_subscriptions WHERE session_id = ?`, sessionID); err != nil {
		return fmt.Errorf("delete push subscription: %w", err)
	}
	return nil
}

// DeletePushEndpoint removes the subscription with that endpoint, which
// the push service said is gone (404/410).
func (tx *Tx) DeletePushEndpoint(endpoint string) error {
	if _, err := tx.exec(`DELETE FROM push_subscriptions WHERE endpoint = ?`, endpoint); err != nil {
		return fmt.Errorf("delete push subscription: %w", err)
	}
	return nil
}

// LivePushSubscriptions returns the user's subscriptions whose sessions are
// live at now (not revoked, not expired, and, when idle > 0, active within
// idle), each with the time its session stops being live.
func (tx *Tx) LivePushSubscriptions(userID string, now time.Time, idle time.Duration) ([]PushSubscription, []time.Time, error) {
	q := `SELECT p.session_id, p.user_id, p.endpoint, p.p256dh, p.auth, p.created_at, s.expires_at, s.last_active
		FROM push_subscriptions p JOIN sessions s ON s.id = p.session_id
		WHERE p.user_id = ? AND s.revoked = FALSE AND s.expires_at > ?`
	args := []any{userID, Micros(now)}
	if idle > 0 {
		q += ` AND s.last_active > ?`
		args = append(args, Micros(now.Add(-idle)))
	}
	rows, err := tx.query(q, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("list push subscriptions: %w", err)
	}
	defer rows.Close()
	var subs []PushSubscription
	var ends []time.Time
	for rows.Next() {
		var s PushSubscription
		var created, expires, active int64
		if err := rows.Scan(&s.SessionID, &s.UserID, &s.Endpoint, &s.P256dh, &s.Auth, &created, &expires, &active); err != nil {
			return nil, nil, err
		}
		s.CreatedAt = FromMicros(created)
		end := FromMicros(expires)
		if idle > 0 {
			if e := FromMicros(active).Add(idle); e.Before(end) {
				end = e
			}
		}
		subs = append(subs, s)
		ends = append(ends, end)
	}
	return subs, ends, rows.Err()
}

// DeleteDeadPushSubscriptions removes up to limit subscriptions whose
// sessions are no longer live at now (or gone), and reports how many.
func (tx *Tx) DeleteDeadPushSubscriptions(now time.Time, idle time.Duration, limit int) (int64, error) {
	live := `s.revoked = FALSE AND s.expires_at > ?`
	args := []any{Micros(now)}
	if idle > 0 {
		live += ` AND s.last_active > ?`
		args = append(args, Micros(now.Add(-idle)))
	}
	args = append(args, limit)
	res, err := tx.exec(`DELETE FROM push_subscriptions WHERE session_id IN (
		SELECT p.session_id FROM push_subscriptions p LEFT JOIN sessions s ON s.id = p.session_id
		WHERE s.id IS NULL OR NOT (`+live+`) LIMIT ?)`, args...)
	if err != nil {
		return 0, fmt.Errorf("delete dead push subscriptions: %w", err)
	}
	return res.RowsAffected()
}

// Setting returns a stored setting, or "" and false.
func (tx *Tx) Setting(name string) (string, bool, error) {
	var v string
	err := tx.queryRow(`SELECT value FROM settings WHERE name = ?`, name).Scan(&v)
	if isNoRows(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("load setting %s: %w", name, err)
	}
	return v, true, nil
}

// InitSetting stores value under name unless a value is stored already,
// and returns the stored one: the first node to start decides, and every
// node gets the same answer.
func (tx *Tx) InitSetting(name, value string) (string, error) {
	if _, err := tx.exec(`INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`, name, value); err != nil {
		return "", fmt.Errorf("init setting %s: %w", name, err)
	}
	v, _, err := tx.Setting(name)
	return v, err
}
