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

const goodSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestWebhookSettings(t *testing.T) {
	c, err := config.Parse(nil, env(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.WebhookURL != "" || c.WebhookUnreadAfter != 2*time.Minute || c.WebhookMaxAge != 24*time.Hour ||
		len(c.WebhookEvents) != 6 || len(c.WebhookRetryDelays) != 6 || c.WebhookRetryDelays[5] != 10*time.Hour {
		t.Fatalf("defaults: %+v", c)
	}
	c, err = config.Parse([]string{"--webhook-unread-after", "0"}, env(map[string]string{
		"PARLEY_WEBHOOK_URL": "https://app.example.com/hooks", "PARLEY_WEBHOOK_SECRET": goodSecret,
		"PARLEY_WEBHOOK_EVENTS": "message.created, message.unread", "PARLEY_WEBHOOK_MAX_AGE": "2h",
		"PARLEY_WEBHOOK_RETRY_DELAYS": "1s,1m",
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.WebhookURL != "https://app.example.com/hooks" || c.WebhookSecret != goodSecret || c.WebhookUnreadAfter != 0 ||
		strings.Join(c.WebhookEvents, ",") != "message.created,message.unread" || c.WebhookMaxAge != 2*time.Hour ||
		len(c.WebhookRetryDelays) != 2 {
		t.Fatalf("parsed: %+v", c)
	}
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"PARLEY_WEBHOOK_URL": "https://a.example/h"}, "webhook-secret"},
		{map[string]string{"PARLEY_WEBHOOK_URL": "https://a.example/h", "PARLEY_WEBHOOK_SECRET": "not-whsec"}, "whsec_"},
		{map[string]string{"PARLEY_WEBHOOK_URL": "https://a.example/h", "PARLEY_WEBHOOK_SECRET": "whsec_c2hvcnQ="}, "16 random bytes"},
		{map[string]string{"PARLEY_WEBHOOK_URL": "ftp://a.example/h", "PARLEY_WEBHOOK_SECRET": goodSecret}, "webhook-url"},
		{map[string]string{"PARLEY_WEBHOOK_EVENTS": "message.created,message.exploded"}, "message.exploded"},
		{map[string]string{"PARLEY_WEBHOOK_MAX_AGE": "0s"}, "webhook-max-age"},
		{map[string]string{"PARLEY_WEBHOOK_UNREAD_AFTER": "-1s"}, "webhook-unread-after"},
		{map[string]string{"PARLEY_WEBHOOK_RETRY_DELAYS": "5s,soon"}, "PARLEY_WEBHOOK_RETRY_DELAYS"},
	} {
		_, err := config.Parse(nil, env(tc.env), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %q", tc.env, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), goodSecret) {
			t.Errorf("the error repeats the secret: %v", err)
		}
	}
	var out bytes.Buffer
	if _, err := config.Parse([]string{"--help"}, env(nil), &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
	for _, v := range []string{"PARLEY_WEBHOOK_URL", "PARLEY_WEBHOOK_SECRET", "PARLEY_WEBHOOK_EVENTS", "PARLEY_WEBHOOK_UNREAD_AFTER", "PARLEY_WEBHOOK_MAX_AGE"} {
		if !strings.Contains(out.String(), v) {
			t.Errorf("--help lacks %s", v)
		}
	}
}
