package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// settings are the parts of Config that Reconfigure may change while the
// engine runs, with what is derived from them. A settings value is never
// changed once stored: Reconfigure stores a new one, so a reader holds a
// consistent snapshot for as long as it keeps the pointer.
type settings struct {
	Config
	// queueLimits is the per-queue concurrency caps: every claim hands it
	// to the store, which only reads it.
	queueLimits map[string]int
}

// conf is the settings in force now.
func (e *Engine) conf() *settings { return e.live.Load() }

// newSettings checks the handler types and queues of cfg (defaults already
// filled in) and derives what the dispatcher needs from them.
func newSettings(cfg Config, reg *Registry) (*settings, error) {
	for name, tc := range cfg.Types {
		if err := checkName("handler type", name); err != nil {
			return nil, err
		}
		switch tc.Mode {
		case "", ModeSubprocess:
			if tc.Mode == ModeSubprocess && len(tc.Command) == 0 {
				return nil, fmt.Errorf("handler %q: mode %q needs a command", name, tc.Mode)
			}
		case ModeInProcess:
			h := tc.Handler
			if h == "" {
				h = name
			}
			if _, ok := reg.Lookup(h); !ok {
				return nil, fmt.Errorf("handler %q: no in-process handler named %q", name, h)
			}
		default:
			return nil, fmt.Errorf("handler %q: unknown mode %q (want %q or %q)", name, tc.Mode, ModeSubprocess, ModeInProcess)
		}
	}
	for name, q := range cfg.Queues {
		if err := checkName("queue", name); err != nil {
			return nil, err
		}
		if err := q.Check(); err != nil {
			return nil, fmt.Errorf("queue %q: %w", name, err)
		}
	}
	var limits map[string]int
	for name, q := range cfg.Queues {
		if q.Concurrency > 0 {
			if limits == nil {
				limits = make(map[string]int)
			}
			limits[name] = q.Concurrency
		}
	}
	return &settings{Config: cfg, queueLimits: limits}, nil
}

// Reconfigure puts cfg's handler types, queues (concurrency caps and
// weights), retention, default deadline, payload and log limits and grace
// periods in force, as New would have from them. Workers, Host and Owner
// keep the values New gave them: they cannot change while the engine runs.
//
// Nothing running is touched: an attempt keeps the command, deadline and
// kill grace it started with, and no job is stopped or started again by a
// reload. Jobs start under the new settings from the next claim on (queued
// jobs of a type that lost its handler fail when they start). An invalid
// cfg changes nothing; the error wraps ErrInvalid.
func (e *Engine) Reconfigure(cfg Config) error {
	cur := e.conf()
	cfg.Workers, cfg.Host, cfg.Owner = cur.Workers, cur.Host, cur.Owner
	s, err := newSettings(withDefaults(cfg), e.reg)
	if err != nil {
		if !errors.Is(err, ErrInvalid) {
			err = fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return err
	}
	e.live.Store(s)
	// The maintenance timer and the dispatcher pick the new settings up
	// now, not at their next beat: a raised queue cap starts jobs at once.
	select {
	case e.reconfigured <- struct{}{}:
	default:
	}
	e.notify()
	return nil
}

// Control is what admin.shutdown.v1 and admin.reload.v1 need from the
// program that runs the engine, which owns the signals, the listener and
// the configuration file. Without one (Deps.Control nil) both methods are
// refused.
type Control interface {
	// Shutdown begins a graceful shutdown, the same as SIGTERM, and
	// returns at once.
	Shutdown()
	// Reload reads the configuration again and puts it in force (see
	// Reconfigure); on error the configuration in force stays.
	Reload(ctx context.Context) (ReloadResult, error)
}

// ShutdownResult answers a shutdown request: the daemon's process, and the
// grace periods it gives running jobs before it exits (Grace, then
// KillGrace between SIGTERM and SIGKILL of a job still running).
type ShutdownResult struct {
	PID       int      `json:"pid"`
	Grace     Duration `json:"grace"`
	KillGrace Duration `json:"kill_grace"`
}

// ReloadResult says what a reload did.
type ReloadResult struct {
	// Config is the file that was read.
	Config string `json:"config"`
	// RestartNeeded lists the settings that differ from those in force
	// but take effect only when the daemon restarts (e.g.
	// "daemon.workers"); empty when none.
	RestartNeeded []string `json:"restart_needed"`
}

// Shutdown begins a graceful shutdown through the engine's Control (the
// same as SIGTERM: running jobs get the grace period) and returns at once.
func (e *Engine) Shutdown(ctx context.Context) (ShutdownResult, error) {
	if e.control == nil {
		return ShutdownResult{}, fmt.Errorf("%w: this daemon cannot be shut down through its socket", ErrInvalid)
	}
	s := e.conf()
	res := ShutdownResult{PID: os.Getpid(), Grace: Duration(s.Grace), KillGrace: Duration(s.KillGrace)}
	e.log.Info("shutdown requested through the socket")
	e.control.Shutdown()
	return res, nil
}

// Reload reads the configuration again through the engine's Control and
// puts it in force.
func (e *Engine) Reload(ctx context.Context) (ReloadResult, error) {
	if e.control == nil {
		return ReloadResult{}, fmt.Errorf("%w: this daemon cannot reload its configuration", ErrInvalid)
	}
	res, err := e.control.Reload(ctx)
	if res.RestartNeeded == nil {
		res.RestartNeeded = []string{}
	}
	return res, err
}
