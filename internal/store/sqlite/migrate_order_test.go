package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite"

	"github.com/parley-chat/parley/internal/store"
)

// TestMigrationAppliedOutOfOrder: a database that ran 00014 before 00013
// existed (the webhooks branch merged after the hardening one) gets 00013
// on its next start instead of refusing to start.
func TestMigrationAppliedOutOfOrder(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "old.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := store.Migrate(ctx, db, goose.DialectSQLite3); err != nil {
		t.Fatal(err)
	}
	// Back to a database of before 00013: at 00014, without its tables.
	for _, q := range []string{`DROP TABLE webhook_unread`, `DROP TABLE webhooks`, `DELETE FROM goose_db_version WHERE version_id = 13`} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := store.Migrate(ctx, db, goose.DialectSQLite3); err != nil {
		t.Fatalf("migrate a database at 00014 without 00013: %v", err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM webhooks`).Scan(&n); err != nil {
		t.Fatalf("00013 was not applied: %v", err)
	}
}
