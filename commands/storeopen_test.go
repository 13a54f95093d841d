package commands

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"stq/store/postgres"
	"stq/store/sqlite"
)

func TestParseStoreConfig(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       StoreConfig
		err        string // empty: no error
	}{
		{"absent: the SQLite file", ``, StoreConfig{}, ""},
		{"url and schema", "[store]\nurl = \"postgres://db.example/stq\"\nschema = \"team_a\"",
			StoreConfig{URL: "postgres://db.example/stq", Schema: "team_a"}, ""},
		{"postgresql scheme", "[store]\nurl = \"postgresql:///stq?host=/run/pg\"",
			StoreConfig{URL: "postgresql:///stq?host=/run/pg"}, ""},
		{"schema alone parses (STQ_DATABASE_URL may give the url)", "[store]\nschema = \"s1\"", StoreConfig{Schema: "s1"}, ""},
		{"other scheme", "[store]\nurl = \"mysql://u:hunter2@db/stq\"", StoreConfig{}, "store.url: mysql://u:xxxxx@db/stq: only postgres://"},
		{"not a url", "[store]\nurl = \"postgres://u:hunter2@db:port/stq\"", StoreConfig{}, "store.url: "},
		{"bad schema", "[store]\nurl = \"postgres:///stq\"\nschema = \"a-b\"", StoreConfig{}, `store.schema: "a-b" must be`},
		{"unknown key", "[store]\npath = \"/x\"", StoreConfig{}, "unknown config key store.path"},
		{"lease", "[store]\nurl = \"postgres:///stq\"\nlease = \"45s\"", StoreConfig{URL: "postgres:///stq", Lease: 45 * time.Second}, ""},
		{"lease at the minimum", "[store]\nurl = \"postgres:///stq\"\nlease = \"2s\"", StoreConfig{URL: "postgres:///stq", Lease: 2 * time.Second}, ""},
		{"lease too short", "[store]\nurl = \"postgres:///stq\"\nlease = \"1500ms\"", StoreConfig{}, "store.lease: 1500ms is shorter than the minimum 2s"},
		{"lease not a duration", "[store]\nurl = \"postgres:///stq\"\nlease = \"soon\"", StoreConfig{}, "store.lease: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseConfig(tc.text)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Fatalf("error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Store != tc.want {
				t.Fatalf("store config %+v, want %+v", cfg.Store, tc.want)
			}
		})
	}
}

func TestOpenStoreChoosesSQLiteByDefault(t *testing.T) {
	p := Paths{DB: filepath.Join(t.TempDir(), "stq.db")}
	st, where, err := openStore(context.Background(), Config{}, p, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, ok := st.(*sqlite.Store); !ok || where != p.DB {
		t.Fatalf("opened %T at %q, want the SQLite store at %s", st, where, p.DB)
	}
	if _, err := os.Stat(p.DB); err != nil {
		t.Fatalf("the database file: %v", err)
	}
}

func TestOpenStoreRefusals(t *testing.T) {
	p := Paths{DB: filepath.Join(t.TempDir(), "stq.db")}
	for _, tc := range []struct {
		name string
		cfg  Config
		env  string
		err  string
	}{
		{"schema without a url", Config{Store: StoreConfig{Schema: "s"}}, "", "store.schema is set, but the store is the SQLite file"},
		{"lease without a url", Config{Store: StoreConfig{Lease: 5 * time.Second}}, "", "store.lease is set, but the store is the SQLite file"},
		{"bad STQ_DATABASE_URL", Config{}, "sqlite://u:hunter2@x/y", "STQ_DATABASE_URL: sqlite://u:xxxxx@x/y: only postgres://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _, err := openStore(context.Background(), tc.cfg, p, func(k string) string {
				if k == databaseURLEnv {
					return tc.env
				}
				return ""
			})
			if err == nil {
				st.Close()
				t.Fatal("opened a store")
			}
			if !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error %q, want one containing %q and no password", err, tc.err)
			}
			if _, err := os.Stat(p.DB); !os.IsNotExist(err) {
				t.Fatalf("a refused open created the SQLite file (%v)", err)
			}
		})
	}
}

// STQ_DATABASE_URL wins over config.toml's url.
func TestOpenStoreEnvironmentWins(t *testing.T) {
	u := os.Getenv("STQ_TEST_DATABASE_URL")
	if u == "" {
		t.Skip("set STQ_TEST_DATABASE_URL to a PostgreSQL URL to run this; .ci/run starts one")
	}
	schema := "stqcmd_" + strings.ReplaceAll(filepath.Base(t.TempDir()), "-", "_")
	t.Cleanup(func() { dropSchema(t, u, schema) })
	cfg := Config{Store: StoreConfig{URL: "postgres://nobody:hunter2@127.0.0.1:1/none", Schema: schema}}
	st, where, err := openStore(context.Background(), cfg, Paths{}, func(k string) string {
		if k == databaseURLEnv {
			return u
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if pg, ok := st.(*postgres.Store); !ok || pg.Schema() != schema {
		t.Fatalf("opened %T, want the PostgreSQL store on schema %s", st, schema)
	}
	if !strings.Contains(where, "schema "+schema) {
		t.Fatalf("description %q does not name the schema", where)
	}
}

func dropSchema(t *testing.T, u, schema string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Errorf("drop schema %s: %v", schema, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
		t.Errorf("drop schema %s: %v", schema, err)
	}
}

// A reload names every [store] setting that changed, since the store is
// opened once, at start; STQ_DATABASE_URL is applied by Reload before this.
func TestRestartNeededNamesStoreSettings(t *testing.T) {
	base := Config{Workers: 4, Store: StoreConfig{URL: "postgres:///a", Schema: "s", Lease: 30 * time.Second}}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   []string
	}{
		{"nothing", func(*Config) {}, []string{}},
		{"url", func(c *Config) { c.Store.URL = "postgres:///b" }, []string{"store.url"}},
		{"url removed", func(c *Config) { c.Store.URL = "" }, []string{"store.url"}},
		{"schema", func(c *Config) { c.Store.Schema = "t" }, []string{"store.schema"}},
		{"lease", func(c *Config) { c.Store.Lease = time.Minute }, []string{"store.lease"}},
		{"workers and lease", func(c *Config) { c.Workers = 2; c.Store.Lease = 0 }, []string{"daemon.workers", "store.lease"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := base
			tc.change(&now)
			if got := restartNeeded(base, now); !slices.Equal(got, tc.want) {
				t.Fatalf("restartNeeded = %q, want %q", got, tc.want)
			}
		})
	}
}

// With STQ_DATABASE_URL set, store.url is not the store in force, so a
// reload that changes it needs no restart; without it, it does.
func TestRestartNeededWithTheURLVariable(t *testing.T) {
	file := Config{Store: StoreConfig{URL: "postgres:///a"}}
	edited := Config{Store: StoreConfig{URL: "postgres:///b"}}
	env := func(string) string { return " postgres:///env " }
	none := func(string) string { return "" }
	for _, tc := range []struct {
		name   string
		getenv func(string) string
		want   []string
	}{
		{"variable set", env, []string{}},
		{"variable unset", none, []string{"store.url"}},
	} {
		got := restartNeeded(withEnvStore(file, tc.getenv), withEnvStore(edited, tc.getenv))
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: restartNeeded = %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := withEnvStore(file, env).Store.URL; got != "postgres:///env" {
		t.Errorf("store.url in force %q, want the variable's, trimmed", got)
	}
}
