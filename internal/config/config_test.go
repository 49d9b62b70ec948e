package config_test

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/config"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestFlagWinsOverVariable(t *testing.T) {
	c, err := config.Parse([]string{"--idle-timeout", "2m", "--pprof"},
		env(map[string]string{"PARLEY_IDLE_TIMEOUT": "1m", "PARLEY_ADDR": "127.0.0.1:9999", "PARLEY_API_KEYS": "a, b"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.IdleTimeout != 2*time.Minute || c.Addr != "127.0.0.1:9999" || !c.Pprof || strings.Join(c.APIKeys, "|") != "a|b" {
		t.Fatalf("got idle %v addr %q pprof %v keys %q", c.IdleTimeout, c.Addr, c.Pprof, c.APIKeys)
	}
}

// TestErrorsNameTheSetting: a bad value is reported by the variable or
// flag that carried it, with what the setting wants.
func TestErrorsNameTheSetting(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, map[string]string{"PARLEY_IDLE_TIMEOUT": "5"}, `PARLEY_IDLE_TIMEOUT: invalid duration "5"`},
		{[]string{"--idle-timeout=5"}, nil, `--idle-timeout: invalid duration "5"`},
		{[]string{"--max-streams-per-user", "many"}, nil, `--max-streams-per-user: invalid integer "many"`},
		{nil, map[string]string{"PARLEY_RATE_LIMIT": "fast"}, `PARLEY_RATE_LIMIT: invalid number "fast"`},
		{nil, map[string]string{"PARLEY_PPROF": "yes please"}, `PARLEY_PPROF: invalid boolean "yes please"`},
		{[]string{"--no-such-flag"}, nil, `-no-such-flag`},
		{[]string{"--heartbeat", "0s"}, nil, `--heartbeat`},
		{nil, map[string]string{"PARLEY_LOG_LEVEL": "loud"}, `PARLEY_LOG_LEVEL`},
		{[]string{"stray"}, nil, `unexpected argument "stray"`},
	} {
		_, err := config.Parse(tc.args, env(tc.env), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("args %q env %v: error %v, want one containing %q", tc.args, tc.env, err, tc.want)
		}
	}
}

// TestHelpListsEveryFlagWithItsVariable: --help is not an error for the
// caller to print; it lists each flag with its PARLEY_* variable.
func TestHelpListsEveryFlagWithItsVariable(t *testing.T) {
	var out bytes.Buffer
	_, err := config.Parse([]string{"--help"}, env(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: error %v, want flag.ErrHelp", err)
	}
	var all bytes.Buffer
	config.WriteFlags(&all)
	if out.String() != all.String() {
		t.Errorf("--help wrote\n%s\nWriteFlags writes\n%s", out.String(), all.String())
	}
	for _, want := range []string{
		"--addr string  PARLEY_ADDR", "(default 127.0.0.1:8080)",
		"--idle-timeout duration  PARLEY_IDLE_TIMEOUT", "(default 5m)", "(default 720h)", "(default 30s)",
		"--api-keys list  PARLEY_API_KEYS",
		"--pprof  PARLEY_PPROF",
		"--demo  PARLEY_DEMO",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
	if n := strings.Count(out.String(), "  PARLEY_"); n < 25 {
		t.Errorf("help lists %d variables, want every flag's:\n%s", n, out.String())
	}
}

func TestEnvName(t *testing.T) {
	if got := config.EnvName("max-streams-per-user"); got != "PARLEY_MAX_STREAMS_PER_USER" {
		t.Fatalf("EnvName = %q", got)
	}
}

// TestHardeningSettings: a short signing secret and unreadable proxy ranges
// are refused at start with a message naming the setting; the cookie and
// pprof settings have their documented defaults.
func TestHardeningSettings(t *testing.T) {
	get := func(env map[string]string) func(string) string { return func(k string) string { return env[k] } }
	c, err := config.Parse(nil, get(nil), nil)
	if err != nil || c.CookieSecure != "auto" || c.Pprof || c.PprofAddr != "127.0.0.1:6060" || len(c.TrustedProxies) != 0 {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	_, err = config.Parse([]string{"--jwt-secret", "short"}, get(nil), nil)
	if err == nil || !strings.Contains(err.Error(), "jwt-secret") || !strings.Contains(err.Error(), "32 bytes") {
		t.Fatalf("short jwt-secret: %v", err)
	}
	if _, err := config.Parse(nil, get(map[string]string{"PARLEY_JWT_SECRET": strings.Repeat("x", 32)}), nil); err != nil {
		t.Fatalf("32-byte secret: %v", err)
	}
	c, err = config.Parse([]string{"--trusted-proxies", "10.0.0.0/8, 127.0.0.1,::1"}, get(nil), nil)
	if err != nil || len(c.TrustedProxies) != 3 {
		t.Fatalf("trusted proxies: %v %v", c.TrustedProxies, err)
	}
	if p, _ := config.ParsePrefixes(c.TrustedProxies); len(p) != 3 || p[1].Bits() != 32 || p[2].Bits() != 128 {
		t.Fatalf("prefixes: %v", p)
	}
	if _, err := config.Parse(nil, get(map[string]string{"PARLEY_TRUSTED_PROXIES": "nginx"}), nil); err == nil || !strings.Contains(err.Error(), "trusted-proxies") {
		t.Fatalf("a name as proxy: %v", err)
	}
	if _, err := config.Parse([]string{"--cookie-secure", "yes"}, get(nil), nil); err == nil || !strings.Contains(err.Error(), "cookie-secure") {
		t.Fatalf("cookie-secure yes: %v", err)
	}
	c, err = config.Parse(nil, get(map[string]string{"PARLEY_PPROF_ADDR": "127.0.0.1:7070"}), nil)
	if err != nil || !c.Pprof || c.PprofAddr != "127.0.0.1:7070" {
		t.Fatalf("pprof-addr: %v %v %v", c.Pprof, c.PprofAddr, err)
	}
}
