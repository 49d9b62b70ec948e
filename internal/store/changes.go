package store

// Changes names the sessions and users a transaction changed: what a cache
// of them kept in front of the store must forget once it commits.
type Changes struct {
	Sessions []string
	Users    []string // every session of theirs too
}

// Empty reports whether nothing was changed.
func (c Changes) Empty() bool { return len(c.Sessions) == 0 && len(c.Users) == 0 }

// ChangeHook hears of the Changes of each committed transaction (each
// request of a group commit), before its caller's Update returns.
type ChangeHook func(Changes)

// Changes is what the transaction changed so far.
func (tx *Tx) Changes() Changes { return tx.changes }

func (tx *Tx) sessionChanged(id string) { tx.changes.Sessions = append(tx.changes.Sessions, id) }
func (tx *Tx) userChanged(id string)    { tx.changes.Users = append(tx.changes.Users, id) }
