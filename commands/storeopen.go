package commands

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"stq/engine"
	"stq/store/postgres"
	"stq/store/sqlite"
)

// databaseURLEnv names the environment variable that points the daemon at
// a PostgreSQL database; it wins over config.toml's [store] url.
const databaseURLEnv = "STQ_DATABASE_URL"

// storeConfig is config.toml's [store] table.
type storeConfig struct {
	URL    string `toml:"url"`
	Schema string `toml:"schema"`
	Lease  string `toml:"lease"`
}

// StoreConfig says where the daemon keeps its jobs: the embedded SQLite
// file in the home unless URL names a PostgreSQL database.
type StoreConfig struct {
	URL    string
	Schema string
	// Lease is the daemon's lease on a shared database (0: the engine's
	// default); see docs/SCALING.md, "Leases and fencing".
	Lease time.Duration
}

// parseStoreConfig checks the [store] table. The URL's scheme is checked
// here, so a typo is a config error rather than a failed connection; the
// rest of it is the driver's to judge when the daemon connects.
func parseStoreConfig(sc storeConfig) (StoreConfig, error) {
	if sc.URL != "" {
		if err := checkDatabaseURL(sc.URL); err != nil {
			return StoreConfig{}, fmt.Errorf("store.url: %w", err)
		}
	}
	if sc.Schema != "" && !postgres.ValidSchema(sc.Schema) {
		return StoreConfig{}, fmt.Errorf("store.schema: %q must be letters, digits and underscores, starting with a letter or underscore, at most 58", sc.Schema)
	}
	out := StoreConfig{URL: sc.URL, Schema: sc.Schema}
	if sc.Lease != "" {
		d, err := parseConfigDuration(sc.Lease)
		if err != nil {
			return StoreConfig{}, fmt.Errorf("store.lease: %w", err)
		}
		if d < engine.MinLease {
			return StoreConfig{}, fmt.Errorf("store.lease: %s is shorter than the minimum %s", sc.Lease, engine.MinLease)
		}
		out.Lease = d
	}
	return out, nil
}

// envDatabaseURL is STQ_DATABASE_URL as the daemon reads it; when set, it
// wins over store.url for the daemon's whole life.
func envDatabaseURL(getenv func(string) string) string {
	return strings.TrimSpace(getenv(databaseURLEnv))
}

// withEnvStore is cfg with STQ_DATABASE_URL in store.url when it is set:
// the store a daemon given cfg opens, which is what a reload compares.
func withEnvStore(cfg Config, getenv func(string) string) Config {
	if v := envDatabaseURL(getenv); v != "" {
		cfg.Store.URL = v
	}
	return cfg
}

func checkDatabaseURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes the whole URL, password and all.
		return fmt.Errorf("%s is not a URL", postgres.Redact(raw))
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return fmt.Errorf("%s: only postgres:// (or postgresql://) URLs are supported", postgres.Redact(raw))
	}
	return nil
}

// openStore opens the store cfg and the environment choose, and returns
// it with a description fit for logs and messages (the password hidden).
// getenv is os.Getenv outside tests.
func openStore(ctx context.Context, cfg Config, p Paths, getenv func(string) string) (engine.Store, string, error) {
	sc := cfg.Store
	if v := envDatabaseURL(getenv); v != "" {
		if err := checkDatabaseURL(v); err != nil {
			return nil, "", fmt.Errorf("%s: %w", databaseURLEnv, err)
		}
		sc.URL = v
	}
	if sc.URL == "" {
		if sc.Schema != "" {
			return nil, "", fmt.Errorf("store.schema is set, but the store is the SQLite file %s: set store.url or %s to a PostgreSQL URL, or remove store.schema", p.DB, databaseURLEnv)
		}
		if sc.Lease != 0 {
			return nil, "", fmt.Errorf("store.lease is set, but the store is the SQLite file %s, which one host uses alone: set store.url or %s to a PostgreSQL URL, or remove store.lease", p.DB, databaseURLEnv)
		}
		st, err := sqlite.Open(p.DB, sqlite.Options{Synchronous: cfg.Durability})
		if err != nil {
			return nil, "", fmt.Errorf("open database: %w", err)
		}
		return st, p.DB, nil
	}
	st, err := postgres.Open(ctx, postgres.Options{URL: sc.URL, Schema: sc.Schema, Synchronous: cfg.Durability})
	if err != nil {
		return nil, "", fmt.Errorf("open database: %w", err)
	}
	return st, fmt.Sprintf("%s (schema %s)", postgres.Redact(sc.URL), st.Schema()), nil
}

// hostEnv names the variable that overrides the host name a daemon puts in
// its jobs' owner. Recovery kills leftover processes only of owners on its
// own host, so two daemons that share a hostname but not a process table
// (containers) must tell themselves apart with it.
const hostEnv = "STQ_HOST"

// daemonHost is the name of this host in job owners ("host/instance"):
// STQ_HOST, else the hostname. getenv is os.Getenv outside tests.
func daemonHost(getenv func(string) string) (string, error) {
	if h := strings.TrimSpace(getenv(hostEnv)); h != "" {
		if strings.Contains(h, "/") {
			return "", usageErrorf("%s: %q must not contain \"/\", which separates the host from the instance in a job's owner", hostEnv, h)
		}
		return h, nil
	}
	h, _ := os.Hostname()
	return h, nil
}
