package store

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestChangesRecorded: every function of the store whose SQL changes the
// sessions or users tables records what it changed, or the session cache
// in front of the embedded store would serve a logged-out session.
func TestChangesRecorded(t *testing.T) {
	writes := regexp.MustCompile(`(?i)\b(UPDATE\s+(users|sessions)\b|DELETE\s+FROM\s+(users|sessions)\b)`)
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			var sql, records bool
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.BasicLit:
					sql = sql || (n.Kind == token.STRING && writes.MatchString(n.Value))
				case *ast.SelectorExpr:
					records = records || n.Sel.Name == "userChanged" || n.Sel.Name == "sessionChanged"
				}
				return true
			})
			if sql {
				checked++
				if !records {
					t.Errorf("%s: %s writes sessions or users but records no change (tx.userChanged, tx.sessionChanged)", fset.Position(fn.Pos()), fn.Name.Name)
				}
			}
		}
	}
	if checked < 8 {
		t.Fatalf("found %d functions writing sessions or users; the scan missed some", checked)
	}
}
