package commands

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"stq/engine"
	"stq/ipc"
	"stq/metrics"
	"stq/store/sqlite"
)

// fileConfig is config.toml. Every key is optional; an unknown key is an
// error so a typo never silently does nothing.
type fileConfig struct {
	Daemon    daemonConfig             `toml:"daemon"`
	Handlers  map[string]handlerConfig `toml:"handlers"`
	Queues    map[string]queueConfig   `toml:"queues"`
	Retention retentionConfig          `toml:"retention"`
	Limits    limitsConfig             `toml:"limits"`
	Metrics   metricsConfig            `toml:"metrics"`
	Store     storeConfig              `toml:"store"`
}

type metricsConfig struct {
	Listen string `toml:"listen"`
}

type limitsConfig struct {
	EnqueueRate      float64 `toml:"enqueue_rate"`
	EnqueueBurst     float64 `toml:"enqueue_burst"`
	ConnEnqueueRate  float64 `toml:"conn_enqueue_rate"`
	ConnEnqueueBurst float64 `toml:"conn_enqueue_burst"`
}

type queueConfig struct {
	Concurrency int `toml:"concurrency"`
	Weight      int `toml:"weight"`
}

type retentionConfig struct {
	MaxAge   string `toml:"max_age"`
	Keep     *int   `toml:"keep"`
	Interval string `toml:"interval"`
}

type daemonConfig struct {
	Workers         int     `toml:"workers"`
	Grace           string  `toml:"grace"`
	KillGrace       string  `toml:"kill_grace"`
	DefaultDeadline string  `toml:"default_deadline"`
	LogLimit        int64   `toml:"log_limit"`
	MaxPayload      int     `toml:"max_payload"`
	Durability      string  `toml:"durability"`
	MaxConnections  int     `toml:"max_connections"`
	MaxRequestBytes int     `toml:"max_request_bytes"`
	IdleThreshold   float64 `toml:"idle_threshold"`
}

type handlerConfig struct {
	Command         []string `toml:"command"`
	Deadline        string   `toml:"deadline"`
	MaxAttempts     *int     `toml:"max_attempts"`
	Backoff         string   `toml:"backoff"`
	Mode            string   `toml:"mode"`
	Handler         string   `toml:"handler"`
	WaitForIdle     bool     `toml:"wait_for_idle"`
	RequireCharging bool     `toml:"require_charging"`
	ReplaceRunning  bool     `toml:"replace_running"`
}

// Config is config.toml, checked and converted to the types the daemon uses.
type Config struct {
	Workers         int
	Grace           time.Duration
	KillGrace       time.Duration
	DefaultDeadline time.Duration
	LogLimit        int64
	MaxPayload      int
	Durability      string
	MaxConnections  int
	MaxRequestBytes int
	IdleThreshold   float64
	Types           map[string]engine.TypeConfig
	Queues          map[string]engine.QueueConfig
	Retention       engine.RetentionConfig
	Limits          ipc.RateLimits
	// MetricsListen is where Prometheus metrics are served; "" for nowhere.
	MetricsListen string
	Store         StoreConfig
}

// loadConfig reads the config file; a missing file is an empty config.
func loadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return parseConfig("")
	}
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	cfg, err := parseConfig(string(data))
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

func parseConfig(text string) (Config, error) {
	fc, err := decodeConfig(text)
	if err != nil {
		return Config{}, err
	}
	d := fc.Daemon
	cfg := Config{
		Workers:         d.Workers,
		LogLimit:        d.LogLimit,
		MaxPayload:      d.MaxPayload,
		Durability:      d.Durability,
		MaxConnections:  d.MaxConnections,
		MaxRequestBytes: d.MaxRequestBytes,
		IdleThreshold:   d.IdleThreshold,
		Types:           map[string]engine.TypeConfig{},
		Queues:          map[string]engine.QueueConfig{},
	}
	if !(d.IdleThreshold >= 0 && d.IdleThreshold <= 100) { // NaN too
		return Config{}, errors.New("daemon.idle_threshold: a CPU percentage between 0 and 100")
	}
	// One step per table, in this order, so a file with several mistakes
	// always names the same one first.
	for _, step := range []func() error{
		func() error { return parseQueues(fc.Queues, &cfg) },
		func() error { return parseLimits(fc.Limits, &cfg) },
		func() error { return parseMetrics(fc.Metrics, &cfg) },
		func() error { return parseRetention(fc.Retention, &cfg) },
		func() error { return parseDaemon(d, fc.Store, &cfg) },
		func() error { return parseHandlers(fc.Handlers, &cfg) },
	} {
		if err := step(); err != nil {
			return Config{}, err
		}
	}
	return cfg, nil
}

// decodeConfig reads config.toml's text, refusing keys it does not know,
// in any case.
func decodeConfig(text string) (fileConfig, error) {
	var fc fileConfig
	md, err := toml.Decode(text, &fc)
	if err != nil {
		return fc, fmt.Errorf("parse config: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fc, fmt.Errorf("unknown config key %s", strings.Join(keys, ", "))
	}
	if k, ok := inexactKey(md.Keys()); ok {
		return fc, fmt.Errorf("unknown config key %s (keys are case-sensitive)", k)
	}
	return fc, nil
}

func parseQueues(queues map[string]queueConfig, cfg *Config) error {
	for name, q := range queues {
		qc := engine.QueueConfig{Concurrency: q.Concurrency, Weight: q.Weight}
		if err := qc.Check(); err != nil {
			return fmt.Errorf("queues.%s: %w", name, err)
		}
		cfg.Queues[name] = qc
	}
	return nil
}

func parseLimits(l limitsConfig, cfg *Config) error {
	for _, v := range []float64{l.EnqueueRate, l.EnqueueBurst, l.ConnEnqueueRate, l.ConnEnqueueBurst} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return errors.New("limits: rates and bursts must be finite and not negative")
		}
	}
	cfg.Limits = ipc.RateLimits{EnqueueRate: l.EnqueueRate, EnqueueBurst: l.EnqueueBurst,
		ConnEnqueueRate: l.ConnEnqueueRate, ConnEnqueueBurst: l.ConnEnqueueBurst}
	return nil
}

func parseMetrics(m metricsConfig, cfg *Config) error {
	if m.Listen == "" {
		return nil
	}
	if err := metrics.CheckListen(m.Listen); err != nil {
		return fmt.Errorf("metrics.listen: %w", err)
	}
	cfg.MetricsListen = m.Listen
	return nil
}

func parseRetention(r retentionConfig, cfg *Config) error {
	if r.Keep != nil {
		if *r.Keep < 0 {
			return errors.New("retention.keep: must not be negative (0 keeps every finished job)")
		}
		cfg.Retention.Keep = *r.Keep
		if *r.Keep == 0 {
			cfg.Retention.Keep = -1 // 0 in the file: no count limit
		}
	}
	err := parseDurations([]namedDuration{
		{"retention.max_age", r.MaxAge, &cfg.Retention.MaxAge},
		{"retention.interval", r.Interval, &cfg.Retention.Interval},
	})
	if err != nil {
		return err
	}
	if r.MaxAge != "" && cfg.Retention.MaxAge == 0 {
		cfg.Retention.MaxAge = -1 // "0": no age limit
	}
	return nil
}

// parseDaemon checks the [daemon] table's numbers, durability and
// durations, and the [store] table, which the daemon's durability reaches.
func parseDaemon(d daemonConfig, st storeConfig, cfg *Config) error {
	if d.Workers < 0 || d.LogLimit < 0 || d.MaxPayload < 0 || d.MaxConnections < 0 || d.MaxRequestBytes < 0 {
		return errors.New("daemon: numbers must not be negative")
	}
	var err error
	if cfg.Store, err = parseStoreConfig(st); err != nil {
		return err
	}
	if cfg.Durability == "" {
		cfg.Durability = "full"
	}
	if !slices.Contains(sqlite.DurabilityModes(), cfg.Durability) {
		return fmt.Errorf("daemon.durability: %q is not \"full\" or \"normal\"", cfg.Durability)
	}
	err = parseDurations([]namedDuration{
		{"daemon.grace", d.Grace, &cfg.Grace},
		{"daemon.kill_grace", d.KillGrace, &cfg.KillGrace},
		{"daemon.default_deadline", d.DefaultDeadline, &cfg.DefaultDeadline},
	})
	if err != nil {
		return err
	}
	if d.DefaultDeadline != "" && cfg.DefaultDeadline == 0 {
		cfg.DefaultDeadline = -1 // "0" in the file means no deadline
	}
	return nil
}

// namedDuration is a duration setting: its key for errors, its text in the
// file ("" when not set) and where the parsed value goes.
type namedDuration struct {
	name string
	in   string
	out  *time.Duration
}

func parseDurations(ds []namedDuration) error {
	for _, f := range ds {
		if f.in == "" {
			continue
		}
		v, err := parseConfigDuration(f.in)
		if err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		*f.out = v
	}
	return nil
}

func parseHandlers(handlers map[string]handlerConfig, cfg *Config) error {
	for name, h := range handlers {
		tc, err := parseHandler(name, h)
		if err != nil {
			return err
		}
		cfg.Types[name] = tc
	}
	return nil
}

func parseHandler(name string, h handlerConfig) (engine.TypeConfig, error) {
	tc := engine.TypeConfig{Command: h.Command, MaxAttempts: h.MaxAttempts, Mode: h.Mode, Handler: h.Handler,
		WaitIdle: h.WaitForIdle, RequireCharging: h.RequireCharging, ReplaceRunning: h.ReplaceRunning}
	for _, f := range []struct {
		key string
		in  string
		out **time.Duration
	}{{"deadline", h.Deadline, &tc.Deadline}, {"backoff", h.Backoff, &tc.Backoff}} {
		if f.in == "" {
			continue
		}
		v, err := parseConfigDuration(f.in)
		if err != nil {
			return tc, fmt.Errorf("handlers.%s.%s: %w", name, f.key, err)
		}
		*f.out = &v
	}
	if h.MaxAttempts != nil && (*h.MaxAttempts < 1 || *h.MaxAttempts > 1000) {
		return tc, fmt.Errorf("handlers.%s.max_attempts: must be between 1 and 1000", name)
	}
	if len(h.Command) > 0 && h.Command[0] == "" {
		return tc, fmt.Errorf("handlers.%s.command: the program name is empty", name)
	}
	for i, a := range h.Command {
		if strings.IndexByte(a, 0) >= 0 {
			return tc, fmt.Errorf("handlers.%s.command[%d]: contains a NUL character", name, i)
		}
	}
	if len(h.Command) == 0 && h.Mode != engine.ModeInProcess {
		return tc, fmt.Errorf("handlers.%s: needs a command (or mode = \"inprocess\")", name)
	}
	return tc, nil
}

// parseConfigDuration is engine.ParseDuration that never returns a negative
// duration: ParseDuration refuses "-1s", but a number of days too large for
// a time.Duration ("1e300d", "infd") used to come back negative, and the
// config must not depend on that staying fixed.
func parseConfigDuration(s string) (time.Duration, error) {
	v, err := engine.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if v < 0 {
		return 0, fmt.Errorf("duration %q is out of range", s)
	}
	return v, nil
}

// inexactKey returns a key of the file that names a setting only when case
// is ignored. The toml package falls back to such matches, so "Workers = 3"
// would be read as workers, and with both "workers" and "wOrkers" in one
// file which of them wins would depend on map iteration order.
func inexactKey(keys []toml.Key) (toml.Key, bool) {
	root := reflect.TypeFor[fileConfig]()
next:
	for _, k := range keys {
		t := root
		for _, part := range k {
			for t.Kind() == reflect.Pointer {
				t = t.Elem()
			}
			switch t.Kind() {
			case reflect.Map: // [handlers.NAME]: any name
				t = t.Elem()
			case reflect.Struct:
				f, ok := tomlField(t, part)
				if !ok {
					return k, true
				}
				t = f.Type
			default:
				continue next
			}
		}
	}
	return nil, false
}

// tomlField is the field of struct type t whose toml name is exactly name.
func tomlField(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if tag == "" {
			tag = f.Name
		}
		if tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}
