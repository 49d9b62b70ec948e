// Package migrations embeds the schema migrations shared by every store.
package migrations

import "embed"

// FS holds the goose migrations, applied in file-name order at start-up.
//
//go:embed *.sql
var FS embed.FS
