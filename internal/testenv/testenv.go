// Package testenv finds the outside services that some tests need
// (PostgreSQL, Redis, NATS, nginx) and gives each test what it may change on
// its own: a fresh PostgreSQL database, a private redis-server or nats-server.
//
// A test whose service is missing is skipped with the reason, except under
// CI=true, where CI guarantees the services and a missing one is a failure.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
)

// Default addresses of the services, overridden by PARLEY_TEST_POSTGRES,
// PARLEY_TEST_REDIS and PARLEY_TEST_NATS.
const (
	DefaultPostgres = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	DefaultRedis    = "redis://127.0.0.1:6379/0"
	DefaultNATS     = "nats://127.0.0.1:4222"
)

// Missing skips the test because a service it needs is absent, or fails it
// under CI=true.
func Missing(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s (CI=true: the service must be there)", msg)
	}
	tb.Skip(msg)
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Postgres returns the URL of the test PostgreSQL server, a database on it
// that tests may create databases from. It skips the test if the server does
// not answer.
func Postgres(tb testing.TB) string {
	tb.Helper()
	u := env("PARLEY_TEST_POSTGRES", DefaultPostgres)
	if _, err := admin(u); err != nil {
		Missing(tb, "PostgreSQL not reachable at %s: %v", redact(u), err)
	}
	return u
}

// admins keeps one small pool per admin URL for the whole test binary: it
// creates and drops the databases of every test.
var admins sync.Map // admin URL → *adminDB

type adminDB struct {
	once sync.Once
	db   *sql.DB
	err  error
}

func admin(u string) (*sql.DB, error) {
	v, _ := admins.LoadOrStore(u, &adminDB{})
	a := v.(*adminDB)
	a.once.Do(func() {
		a.db, a.err = sql.Open("pgx", u)
		if a.err != nil {
			return
		}
		a.db.SetMaxOpenConns(2)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if a.err = a.db.PingContext(ctx); a.err != nil {
			a.db.Close()
		}
	})
	return a.db, a.err
}

// FreshDatabase creates an empty database parley_t_<random> on the server of
// adminURL, drops it when the test ends, and returns its URL. The URL asks
// for a small pool (pool_max_conns=8) so that many test nodes fit under the
// server's connection limit.
func FreshDatabase(tb testing.TB, adminURL string) string {
	tb.Helper()
	db, err := admin(adminURL)
	if err != nil {
		Missing(tb, "PostgreSQL not reachable at %s: %v", redact(adminURL), err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "parley_t_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create test database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// FORCE ends the connections of nodes that a failed test left open.
		if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Logf("drop test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(adminURL)
	if err != nil {
		tb.Fatalf("parse %s: %v", redact(adminURL), err)
	}
	u.Path = "/" + name
	q := u.Query()
	if q.Get("pool_max_conns") == "" {
		q.Set("pool_max_conns", "8")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Redis returns the URL of the shared test Redis, skipping the test if it
// does not answer. Tests that stop Redis must start their own (RedisServer).
func Redis(tb testing.TB) string {
	tb.Helper()
	u := env("PARLEY_TEST_REDIS", DefaultRedis)
	if err := pingRedis(u); err != nil {
		Missing(tb, "Redis not reachable at %s: %v", redact(u), err)
	}
	return u
}

func pingRedis(u string) error {
	opt, err := redis.ParseURL(u)
	if err != nil {
		return err
	}
	opt.MaxRetries = -1
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

// NATS returns the URL of the shared test NATS server, skipping the test if
// it does not answer.
func NATS(tb testing.TB) string {
	tb.Helper()
	u := env("PARLEY_TEST_NATS", DefaultNATS)
	nc, err := nats.Connect(u, nats.Timeout(3*time.Second), nats.MaxReconnects(0))
	if err != nil {
		Missing(tb, "NATS not reachable at %s: %v", redact(u), err)
		return u
	}
	nc.Close()
	return u
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxx")
	}
	return u.String()
}
