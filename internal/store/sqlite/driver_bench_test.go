//go:build drivercompare

// Driver comparison behind a build tag, so the cgo driver is only compiled
// when this is measured:
//
//	go test -tags drivercompare -run '^$' -bench Driver -benchtime 2000x ./internal/store/sqlite/
package sqlite_test

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"

	_ "github.com/mattn/go-sqlite3"
	_ "modernc.org/sqlite"
)

// BenchmarkDriver writes event-sized rows in transactions of 1 and of 100
// rows with WAL and synchronous=FULL, as the store does: one op is one row.
func BenchmarkDriver(b *testing.B) {
	drivers := []struct{ name, driver, params string }{
		{"modernc", "sqlite", "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)"},
		{"mattn-cgo", "sqlite3", "?_journal_mode=WAL&_synchronous=FULL"},
	}
	for _, d := range drivers {
		for _, perTx := range []int{1, 100} {
			b.Run(fmt.Sprintf("%s/rows-per-tx=%d", d.name, perTx), func(b *testing.B) {
				db, err := sql.Open(d.driver, "file:"+filepath.Join(b.TempDir(), "x.db")+d.params)
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				db.SetMaxOpenConns(1)
				if _, err := db.Exec(`CREATE TABLE events (user_id TEXT, id BIGINT, type TEXT, data TEXT, created_at BIGINT, PRIMARY KEY (user_id, id))`); err != nil {
					b.Fatal(err)
				}
				data := `{"conversation_id":"c_abcdefghijklmnopqrst","body":"hello there, how are you doing today?"}`
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i += perTx {
					tx, err := db.Begin()
					if err != nil {
						b.Fatal(err)
					}
					for j := i; j < i+perTx; j++ {
						if _, err := tx.Exec(`INSERT INTO events VALUES (?, ?, ?, ?, ?)`, fmt.Sprint("u", j%100), j, "app.x", data, j); err != nil {
							b.Fatal(err)
						}
					}
					if err := tx.Commit(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			})
		}
	}
}
