package commands

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"stq/engine"
)

// fileConfig is config.toml. Every key is optional; an unknown key is an
// error so a typo never silently does nothing.
type fileConfig struct {
	Daemon   daemonConfig             `toml:"daemon"`
	Handlers map[string]handlerConfig `toml:"handlers"`
}

type daemonConfig struct {
	Workers         int    `toml:"workers"`
	Grace           string `toml:"grace"`
	KillGrace       string `toml:"kill_grace"`
	DefaultDeadline string `toml:"default_deadline"`
	LogLimit        int64  `toml:"log_limit"`
	MaxPayload      int    `toml:"max_payload"`
	Durability      string `toml:"durability"`
	MaxConnections  int    `toml:"max_connections"`
	MaxRequestBytes int    `toml:"max_request_bytes"`
}

type handlerConfig struct {
	Command     []string `toml:"command"`
	Deadline    string   `toml:"deadline"`
	MaxAttempts *int     `toml:"max_attempts"`
	Backoff     string   `toml:"backoff"`
	Mode        string   `toml:"mode"`
	Handler     string   `toml:"handler"`
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
	Types           map[string]engine.TypeConfig
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
	var fc fileConfig
	md, err := toml.Decode(text, &fc)
	if err != nil {
		return Config{}, fmt.Errorf("parse config: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return Config{}, fmt.Errorf("unknown config key %s", strings.Join(keys, ", "))
	}
	d := fc.Daemon
	cfg := Config{
		Workers:         d.Workers,
		LogLimit:        d.LogLimit,
		MaxPayload:      d.MaxPayload,
		Durability:      d.Durability,
		MaxConnections:  d.MaxConnections,
		MaxRequestBytes: d.MaxRequestBytes,
		Types:           map[string]engine.TypeConfig{},
	}
	if d.Workers < 0 || d.LogLimit < 0 || d.MaxPayload < 0 || d.MaxConnections < 0 || d.MaxRequestBytes < 0 {
		return Config{}, errors.New("daemon: numbers must not be negative")
	}
	if cfg.Durability == "" {
		cfg.Durability = "full"
	}
	if !slices.Contains([]string{"full", "normal"}, cfg.Durability) {
		return Config{}, fmt.Errorf("daemon.durability: %q is not \"full\" or \"normal\"", cfg.Durability)
	}
	for _, f := range []struct {
		name string
		in   string
		out  *time.Duration
	}{
		{"daemon.grace", d.Grace, &cfg.Grace},
		{"daemon.kill_grace", d.KillGrace, &cfg.KillGrace},
		{"daemon.default_deadline", d.DefaultDeadline, &cfg.DefaultDeadline},
	} {
		if f.in == "" {
			continue
		}
		v, err := engine.ParseDuration(f.in)
		if err != nil {
			return Config{}, fmt.Errorf("%s: %w", f.name, err)
		}
		*f.out = v
	}
	if d.DefaultDeadline != "" && cfg.DefaultDeadline == 0 {
		cfg.DefaultDeadline = -1 // "0" in the file means no deadline
	}
	for name, h := range fc.Handlers {
		tc := engine.TypeConfig{Command: h.Command, MaxAttempts: h.MaxAttempts, Mode: h.Mode, Handler: h.Handler}
		for _, f := range []struct {
			key string
			in  string
			out **time.Duration
		}{{"deadline", h.Deadline, &tc.Deadline}, {"backoff", h.Backoff, &tc.Backoff}} {
			if f.in == "" {
				continue
			}
			v, err := engine.ParseDuration(f.in)
			if err != nil {
				return Config{}, fmt.Errorf("handlers.%s.%s: %w", name, f.key, err)
			}
			*f.out = &v
		}
		if h.MaxAttempts != nil && (*h.MaxAttempts < 1 || *h.MaxAttempts > 1000) {
			return Config{}, fmt.Errorf("handlers.%s.max_attempts: must be between 1 and 1000", name)
		}
		if len(h.Command) > 0 && h.Command[0] == "" {
			return Config{}, fmt.Errorf("handlers.%s.command: the program name is empty", name)
		}
		if len(h.Command) == 0 && h.Mode != engine.ModeInProcess {
			return Config{}, fmt.Errorf("handlers.%s: needs a command (or mode = \"inprocess\")", name)
		}
		cfg.Types[name] = tc
	}
	return cfg, nil
}
