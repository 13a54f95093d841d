package commands

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"stq/engine"
)

// fuzzConfigMax bounds an expanded config text.
const fuzzConfigMax = 1 << 20

// expandConfig turns a compact input into a large one. With n == 0 the text
// is used as it is. Otherwise it is split at 0xFF bytes and every
// odd-numbered part is repeated n%(1<<17) times, the total kept within
// fuzzConfigMax: "a = \xff[\xff\xff]\xff" with n = 100000 nests 100000
// arrays.
func expandConfig(text string, n uint32) string {
	if n == 0 {
		return text
	}
	parts := strings.Split(text, "\xff")
	fixed, unit := 0, 0
	for i, p := range parts {
		if i%2 == 0 {
			fixed += len(p)
		} else {
			unit += len(p)
		}
	}
	reps := int(n % (1 << 17))
	if unit > 0 && fixed+reps*unit > fuzzConfigMax {
		reps = max(0, (fuzzConfigMax-fixed)/unit)
	}
	var b strings.Builder
	b.Grow(fixed + reps*unit)
	for i, p := range parts {
		if i%2 == 0 {
			b.WriteString(p)
			continue
		}
		for range reps {
			b.WriteString(p)
		}
	}
	return b.String()
}

// maxFuzzNesting bounds the bracket nesting of fuzzed configs. The toml
// parser (BurntSushi/toml v1.6.0) copies the whole key path at every level
// of inline tables, so its time is quadratic in the depth: 4000 nested
// inline tables take seconds, 20000 minutes. A config is the daemon
// owner's own file, so this is not worth a guard in parseConfig, but it
// would stall the fuzzer.
const maxFuzzNesting = 256

// nestingDepth is the deepest run of '[' and '{' in text, counted without
// regard to strings or comments (an over-estimate).
func nestingDepth(text string) int {
	depth, deepest := 0, 0
	for i := 0; i < len(text); i++ {
		switch text[i] {
		case '[', '{':
			depth++
			deepest = max(deepest, depth)
		case ']', '}':
			depth = max(0, depth-1)
		}
	}
	return deepest
}

// FuzzParseConfig feeds arbitrary text to parseConfig: it must not panic,
// must give the same answer twice, and a config it accepts must hold what
// the daemon relies on.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []struct {
		text string
		n    uint32
	}{
		{"", 0},
		{"[daemon]\nworkers = 4\ngrace = \"10s\"\nkill_grace = \"5s\"\ndefault_deadline = \"60s\"\nlog_limit = 1048576\nmax_payload = 1048576\ndurability = \"full\"\nmax_connections = 256\nmax_request_bytes = 2097152\n", 0},
		{"[handlers.INDEX_FILE]\ncommand = [\"my-indexer\", \"--stdin\"]\ndeadline = \"30s\"\nmax_attempts = 5\nbackoff = \"2s\"\nmode = \"subprocess\"\n\n[handlers.ping]\nmode = \"inprocess\"\nhandler = \"noop\"\n", 0},
		{"[daemon]\ndefault_deadline = \"0\"\ndurability = \"normal\"\n", 0},
		{"[daemon]\ngrace = \"1e300d\"\n", 0},
		{"[handlers.x]\ncommand = [\"a\"]\nbackoff = \"infd\"\n", 0},
		{"[handlers.x]\ncommand = [\"a\\u0000b\"]\n", 0},
		{"[daemon]\nworkers = 99999999999999999999\n", 0},
		{"[daemon]\nmax_payload = 1e400\n", 0},
		{"[daemon]\nworkers = \"4\"\n", 0},
		{"[handlers.x]\ncommand = \"a\"\n", 0},
		{"[handlers.x]\ncommand = []\nmode = \"INPROCESS\"\n", 0},
		{"a = \xff[\xff\xff]\xff\n", 100000},
		{"[daemon]\ndurability = \"\xff\xfe\"\n", 0},
		{"[daemon]\r\nworkers = 1\x00\n", 0},
	} {
		f.Add(s.text, s.n)
	}
	f.Fuzz(func(t *testing.T, text string, n uint32) {
		text = expandConfig(text, n)
		if nestingDepth(text) > maxFuzzNesting {
			t.Skip("nested deeper than the toml parser handles in reasonable time")
		}
		cfg, err := parseConfig(text)
		if err != nil {
			if cfg.Types != nil || cfg.Durability != "" {
				t.Fatalf("parseConfig returned an error and a config: %v", err)
			}
		} else {
			checkConfig(t, cfg)
		}
		// The same text gives the same answer (the toml package ranges
		// over maps, so this is not a given).
		cfg2, err2 := parseConfig(text)
		if (err == nil) != (err2 == nil) || (err == nil && !reflect.DeepEqual(cfg, cfg2)) {
			t.Fatalf("parseConfig is not deterministic: %v / %v", err, err2)
		}
	})
}

// checkConfig checks the invariants of a config parseConfig accepted.
func checkConfig(t *testing.T, c Config) {
	t.Helper()
	if c.Durability != "full" && c.Durability != "normal" {
		t.Fatalf("accepted durability %q", c.Durability)
	}
	if c.Workers < 0 || c.LogLimit < 0 || c.MaxPayload < 0 || c.MaxConnections < 0 || c.MaxRequestBytes < 0 {
		t.Fatalf("accepted a negative number: %+v", c)
	}
	if c.Grace < 0 || c.KillGrace < 0 {
		t.Fatalf("accepted a negative grace: %v, %v", c.Grace, c.KillGrace)
	}
	if c.DefaultDeadline < 0 && c.DefaultDeadline != -1 { // -1: "0" in the file, no deadline
		t.Fatalf("accepted a negative default_deadline %v", c.DefaultDeadline)
	}
	if c.Types == nil {
		t.Fatal("accepted config without a Types map")
	}
	checkNonNegative(t, "Config", reflect.ValueOf(c))
	for name, h := range c.Types {
		if len(h.Command) == 0 && h.Mode != engine.ModeInProcess {
			t.Fatalf("handler %q: no command and mode %q", name, h.Mode)
		}
		if len(h.Command) > 0 && h.Command[0] == "" {
			t.Fatalf("handler %q: empty program name", name)
		}
		for i, a := range h.Command {
			if strings.IndexByte(a, 0) >= 0 || !utf8.ValidString(a) {
				t.Fatalf("handler %q: command[%d] %q has a NUL or invalid UTF-8 (no process can get it)", name, i, a)
			}
		}
		if h.Deadline != nil && *h.Deadline < 0 {
			t.Fatalf("handler %q: negative deadline %v", name, *h.Deadline)
		}
		if h.Backoff != nil && *h.Backoff < 0 {
			t.Fatalf("handler %q: negative backoff %v", name, *h.Backoff)
		}
		if h.MaxAttempts != nil && (*h.MaxAttempts < 1 || *h.MaxAttempts > 1000) {
			t.Fatalf("handler %q: max_attempts %d", name, *h.MaxAttempts)
		}
	}
}

// configSentinels are the settings where -1 is a documented value ("0" in
// the file turned into "none" for the daemon).
var configSentinels = map[string]bool{
	"Config.DefaultDeadline":  true,
	"Config.Retention.MaxAge": true,
	"Config.Retention.Keep":   true,
}

// checkNonNegative walks a config value and checks that every number in it
// (counts, sizes, durations, thresholds), however deep, is neither negative
// nor NaN, but for the sentinels' -1. It goes by reflection so settings
// added later are covered too.
func checkNonNegative(t *testing.T, path string, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			checkNonNegative(t, path, v.Elem())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				checkNonNegative(t, path+"."+v.Type().Field(i).Name, v.Field(i))
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			checkNonNegative(t, fmt.Sprintf("%s[%q]", path, it.Key()), it.Value())
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n := v.Int(); n < 0 && !(n == -1 && configSentinels[path]) {
			t.Fatalf("accepted %s = %d", path, n)
		}
	case reflect.Float32, reflect.Float64:
		if f := v.Float(); !(f >= 0) {
			t.Fatalf("accepted %s = %v", path, f)
		}
	}
}
