package config_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/parley-chat/parley/internal/config"
)

func parseChat(t *testing.T, args []string, env map[string]string) (config.Config, error) {
	t.Helper()
	return config.Parse(args, func(k string) string { return env[k] }, nil)
}

// TestChatSettings: the chat app's settings have their documented defaults
// and are read from flags and PARLEY_* variables.
func TestChatSettings(t *testing.T) {
	c, err := parseChat(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxAttachment != 10<<20 || c.ICEServers != "" || !c.PushPreview || c.PushSubject != config.DefaultPushSubject ||
		!slices.Equal(c.PushServices, config.DefaultPushServices) || c.VAPIDPrivateKey != "" {
		t.Fatalf("defaults: %+v", c)
	}
	for in, want := range map[string]int64{"1048576": 1 << 20, "512KiB": 512 << 10, "25 MiB": 25 << 20, "1GiB": 1 << 30} {
		c, err := parseChat(t, nil, map[string]string{"PARLEY_MAX_ATTACHMENT": in})
		if err != nil || c.MaxAttachment != want {
			t.Fatalf("PARLEY_MAX_ATTACHMENT=%s: %d, %v", in, c.MaxAttachment, err)
		}
	}
	for _, in := range []string{"10MB", "-1", "x", "0", "99999999999GiB"} {
		if _, err := parseChat(t, []string{"--max-attachment", in}, nil); err == nil {
			t.Fatalf("--max-attachment %s accepted", in)
		}
	}
	c, err = parseChat(t, []string{"--push-services", "none", "--push-preview=false", "--push-subject", "mailto:ops@example.org"}, nil)
	if err != nil || len(c.PushServices) != 0 || c.PushPreview || c.PushSubject != "mailto:ops@example.org" {
		t.Fatalf("push flags: %+v %v", c, err)
	}
	c, err = parseChat(t, nil, map[string]string{"PARLEY_PUSH_SERVICES": "push.example.org, http://127.0.0.1:9999"})
	if err != nil || !slices.Equal(c.PushServices, []string{"push.example.org", "http://127.0.0.1:9999"}) {
		t.Fatalf("PARLEY_PUSH_SERVICES: %v %v", c.PushServices, err)
	}
	if _, err := parseChat(t, []string{"--push-subject", "ops@example.org"}, nil); err == nil {
		t.Fatalf("a push subject that is neither mailto: nor https: was accepted")
	}
	c, err = parseChat(t, nil, map[string]string{"PARLEY_ICE_SERVERS": `[{"urls":"stun:a.example"}]`})
	if err != nil || c.ICEServers == "" {
		t.Fatalf("PARLEY_ICE_SERVERS: %v", err)
	}
	if _, err := parseChat(t, []string{"--ice-servers", `[{"url":"stun:a.example"}]`}, nil); err == nil || !strings.Contains(err.Error(), "ice-servers") {
		t.Fatalf("--ice-servers with the old 'url' field: %v", err)
	}
}

// TestParseICEServers: what a browser's RTCPeerConnection would refuse is
// refused at start, with a message that says what is wrong.
func TestParseICEServers(t *testing.T) {
	good := map[string]string{
		``:   `[]`,
		` `:  `[]`,
		`[]`: `[]`,
		`[{"urls": "stun:stun.l.google.com:19302"}]`:                                                     `[{"urls":"stun:stun.l.google.com:19302"}]`,
		`[{"urls": ["stun:a", "stuns:b"]}, {"urls": "turn:t:3478", "username": "u", "credential": "c"}]`: `[{"urls":["stun:a","stuns:b"]},{"urls":"turn:t:3478","username":"u","credential":"c"}]`,
	}
	for in, want := range good {
		got, err := config.ParseICEServers(in)
		if err != nil || string(got) != want {
			t.Errorf("%q: %s, %v; want %s", in, got, err, want)
		}
	}
	bad := map[string]string{
		`{}`:                                     "array",
		`null`:                                   "null",
		`[{"urls": "stun:a"}] x`:                 "after",
		`[{}]`:                                   "urls",
		`[{"urls": []}]`:                         "urls",
		`[{"urls": 5}]`:                          "urls",
		`[{"urls": "http://a"}]`:                 "stun:",
		`[{"urls": "stun:"}]`:                    "not a STUN",
		`[{"urls": "turn:t"}]`:                   "username and credential",
		`[{"urls": "turns:t", "username": "u"}]`: "username and credential",
		`[{"url": "stun:a"}]`:                    "url",
		`[{"urls": "stun:a", "credentialType": 1}]`: "credentialType",
	}
	for in, want := range bad {
		_, err := config.ParseICEServers(in)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "ice-servers (--ice-servers, PARLEY_ICE_SERVERS): ") {
			t.Errorf("%q: %v, want an error mentioning %q", in, err, want)
		}
	}
}
