package check

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestRunRefusesWhatItCannotCheck(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--database-url", "postgres://db/parley"}, nil, "PostgreSQL"},
		{nil, map[string]string{"PARLEY_DATABASE_URL": "postgres://db/parley"}, "PostgreSQL"},
		{[]string{"--data-dir", t.TempDir()}, nil, "no such file"},
		{nil, map[string]string{"PARLEY_DATA_DIR": t.TempDir()}, "no such file"},
		{[]string{"extra"}, nil, "unexpected argument"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), c.args, env(c.env), &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("check %q (env %v): %v, want an error with %q", c.args, c.env, err, c.want)
		}
	}
}
