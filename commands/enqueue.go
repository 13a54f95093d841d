package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"stq/engine"
	"stq/ipc"
)

func (a *app) enqueueCommand() *cli.Command {
	return &cli.Command{
		Name:      "enqueue",
		Usage:     "add a job; prints only its id",
		ArgsUsage: "[-- COMMAND [ARG...]]",
		Description: "Adds a job and prints its id on stdout, so `id=$(stq enqueue ...)` works.\n" +
			"A command after -- runs as a subprocess in the current directory; without one,\n" +
			"the job runs the handler config.toml gives its --type.\n\n" +
			"--batch FILE reads one request per line, with the members of the socket API's\n" +
			"dev.enqueue.v1 params (queue, type, subject, payload, command, ...), sends them\n" +
			"in all-or-nothing chunks of up to 1000 and prints one id per line in input order.\n" +
			"A bad line stops the run before anything of its chunk is stored and names the\n" +
			"line; the chunks before it stay stored (their ids are printed).\n\n" +
			"The job runs with this shell's environment plus --env (with --batch: every line\n" +
			"without a base_env member); --daemon-env runs it with the daemon's instead.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "queue", Aliases: []string{"q"}, Value: engine.DefaultQueue, Usage: "queue name"},
			&cli.StringFlag{Name: "type", Aliases: []string{"t"}, Value: engine.DefaultType, Usage: "job type"},
			&cli.StringFlag{Name: "subject", Aliases: []string{"s"}, Usage: "supersede key: a newer generation of (queue, type, subject) replaces older queued ones"},
			&cli.Int64Flag{Name: "gen", Usage: "generation (default: latest for the subject + 1)"},
			&cli.IntFlag{Name: "priority", Aliases: []string{"p"}, Usage: "higher runs first"},
			&cli.StringFlag{Name: "payload", Usage: "JSON payload, given to the job on stdin"},
			&cli.StringFlag{Name: "payload-file", Usage: "read the JSON payload from FILE (- for stdin)"},
			&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "K=V added to the job's environment (repeatable)"},
			&cli.BoolFlag{Name: "daemon-env", Usage: "run the job with the daemon's environment instead of this shell's (plus --env)"},
			&cli.IntFlag{Name: "max-attempts", Usage: "attempts before the job FAILS (default 3)"},
			&cli.StringFlag{Name: "backoff", Usage: "base retry delay, doubled each retry, ±25% jitter (default 1s)"},
			&cli.StringFlag{Name: "deadline", Usage: "time limit per attempt, 0 for none (default 60s)"},
			&cli.StringFlag{Name: "ttl", Usage: "expire the job if it has not started this long after enqueue"},
			&cli.StringFlag{Name: "at", Usage: "run at TIME (RFC 3339, \"2006-01-02 15:04\", or \"15:04\": the next 15:04, today or tomorrow; local time)"},
			&cli.StringFlag{Name: "in", Usage: "run after DURATION"},
			&cli.BoolFlag{Name: "wait-idle", Usage: "start only while system CPU use is below the idle threshold"},
			&cli.BoolFlag{Name: "require-charging", Usage: "start only on AC power"},
			&cli.StringFlag{Name: "debounce", Usage: "start only once no newer generation of the subject arrived for DURATION"},
			&cli.BoolFlag{Name: "replace", Usage: "stop a running older generation of the subject (it ends SUPERSEDED) instead of waiting for it"},
			&cli.StringSliceFlag{Name: "after", Usage: "start only after job ID is DONE; cancelled if it ends otherwise (repeatable)"},
			&cli.StringFlag{Name: "batch", Usage: "read enqueue requests from FILE (- for stdin), one JSON object per line, and print one id per line"},
			&cli.BoolFlag{Name: "json", Usage: "print the whole reply as JSON instead of the id"},
		},
		Action: a.enqueue,
	}
}

func (a *app) enqueue(ctx context.Context, c *cli.Command) error {
	if c.IsSet("batch") {
		return a.enqueueBatch(ctx, c)
	}
	req, err := a.enqueueRequest(c)
	if err != nil {
		return err
	}
	res, err := a.enqueueWithRetry(ctx, c, req)
	if err != nil {
		return baseEnvHint(err)
	}
	if req.RunAt != nil && isClockTime(c.String("at")) {
		// A bare clock time may have meant tomorrow: say which day it is.
		day := "today"
		if !midnight(*req.RunAt).Equal(midnight(time.Now())) {
			day = "tomorrow"
		}
		fmt.Fprintf(a.stderr, "stq: runs at %s (%s)\n", req.RunAt.Format("2006-01-02 15:04:05 -0700"), day)
	}
	if c.Bool("json") {
		return writeJSON(a.stdout, res)
	}
	fmt.Fprintln(a.stdout, res.Job.ID)
	switch res.Job.State {
	case engine.StateSuperseded:
		fmt.Fprintf(a.stderr, "stq: job %s: %s\n", res.Job.ID, res.Job.Error) // "superseded on arrival: …"
	case engine.StateCancelled:
		fmt.Fprintf(a.stderr, "stq: job %s cancelled on arrival: %s\n", res.Job.ID, res.Job.Error) // a dependency already failed
	}
	return nil
}

// enqueueRequest builds the request from flags. Everything the client can
// check on its own is checked here, so a typo costs no round trip; the
// daemon checks again.
func (a *app) enqueueRequest(c *cli.Command) (engine.EnqueueRequest, error) {
	given := givenFlags(c)
	req := engine.EnqueueRequest{
		Queue:    c.String("queue"),
		Type:     c.String("type"),
		Subject:  c.String("subject"),
		Priority: c.Int("priority"),
		Command:  c.Args().Slice(),
	}
	// The checks run in flag order, so a command line with two mistakes
	// names the same one first as it always has.
	for _, name := range []string{"queue", "type", "subject"} {
		if given[name] && c.String(name) == "" {
			return req, usageErrorf("--%s must not be empty", name)
		}
	}
	if given["gen"] {
		g := c.Int64("gen")
		req.Generation = &g
	}
	if len(req.Command) > 0 {
		wd, err := os.Getwd()
		if err != nil {
			return req, fmt.Errorf("find working directory: %w", err)
		}
		req.Cwd = wd
	}
	var err error
	if req.Payload, err = a.payloadFlags(c, given); err != nil {
		return req, err
	}
	if req.Env, err = envFlags(c.StringSlice("env")); err != nil {
		return req, err
	}
	if !given["daemon-env"] || !c.Bool("daemon-env") {
		req.BaseEnv = callerEnv(os.Environ())
	}
	if err := scheduleFlags(c, given, &req); err != nil {
		return req, err
	}
	return req, nil
}

// givenFlags are the flags on the command line. urfave/cli's IsSet walks
// every flag's names through a regexp for each flag not given; asking once
// for the given ones is a tenth of a millisecond less on every save.
func givenFlags(c *cli.Command) map[string]bool {
	given := make(map[string]bool)
	for _, name := range c.LocalFlagNames() {
		given[name] = true
	}
	return given
}

// payloadFlags is the job's JSON payload from --payload or --payload-file;
// nil when neither is given.
func (a *app) payloadFlags(c *cli.Command, given map[string]bool) (json.RawMessage, error) {
	if given["payload"] && given["payload-file"] {
		return nil, usageErrorf("give --payload or --payload-file, not both")
	}
	var payload []byte
	switch {
	case given["payload"]:
		payload = []byte(c.String("payload"))
	case given["payload-file"]:
		var err error
		if payload, err = a.readPayloadFile(c.String("payload-file")); err != nil {
			return nil, err
		}
	default:
		return nil, nil
	}
	if !json.Valid(payload) {
		return nil, usageErrorf("payload is not valid JSON")
	}
	return json.RawMessage(payload), nil
}

// envFlags are the --env KEY=VALUE pairs as a map; nil when none is given.
func envFlags(pairs []string) (map[string]string, error) {
	var env map[string]string
	for _, kv := range pairs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageErrorf("--env %q: want KEY=VALUE", kv)
		}
		if env == nil {
			env = map[string]string{}
		}
		env[k] = v
	}
	return env, nil
}

// scheduleFlags sets what decides when and how often the job runs: its
// conditions, dependencies, attempts, durations and start time. A flag not
// given leaves its field nil, for the daemon's default.
func scheduleFlags(c *cli.Command, given map[string]bool, req *engine.EnqueueRequest) error {
	for _, f := range []struct {
		name string
		dst  **bool
	}{{"wait-idle", &req.WaitIdle}, {"require-charging", &req.RequireCharging}, {"replace", &req.Replace}} {
		if given[f.name] {
			v := c.Bool(f.name)
			*f.dst = &v
		}
	}
	for _, id := range c.StringSlice("after") {
		if id == "" {
			return usageErrorf("--after needs a job id")
		}
		req.After = append(req.After, id)
	}
	if given["max-attempts"] {
		n := c.Int("max-attempts")
		req.MaxAttempts = &n
	}
	for _, f := range []struct {
		name string
		dst  **engine.Duration
	}{{"backoff", &req.Backoff}, {"deadline", &req.Deadline}, {"ttl", &req.TTL}, {"in", &req.Delay}, {"debounce", &req.Debounce}} {
		if !given[f.name] {
			continue
		}
		d, err := engine.ParseDuration(c.String(f.name))
		if err != nil {
			return usageErrorf("--%s: %v", f.name, err)
		}
		v := engine.Duration(d)
		*f.dst = &v
	}
	if given["at"] {
		if given["in"] {
			return usageErrorf("give --at or --in, not both")
		}
		t, err := parseTime(c.String("at"), time.Now())
		if err != nil {
			return usageErrorf("--at: %v", err)
		}
		req.RunAt = &t
	}
	return nil
}

// maxPayloadRead stops a runaway --payload-file early; the daemon enforces
// its own, configurable limit.
const maxPayloadRead = 64 << 20

func (a *app) readPayloadFile(name string) ([]byte, error) {
	var r io.Reader
	if name == "-" {
		r = a.stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, usageErrorf("--payload-file: %v", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxPayloadRead+1))
	if err != nil {
		return nil, fmt.Errorf("read payload: %w", err)
	}
	if len(b) > maxPayloadRead {
		return nil, usageErrorf("--payload-file: larger than %d bytes", maxPayloadRead)
	}
	return b, nil
}

// clockLayouts are the bare clock times --at takes, each with the unit it
// is precise to.
var clockLayouts = []struct {
	layout string
	unit   time.Duration
}{{"15:04:05", time.Second}, {"15:04", time.Minute}}

// isClockTime says whether s is a bare clock time, with no date.
func isClockTime(s string) bool {
	for _, l := range clockLayouts {
		if _, err := time.Parse(l.layout, s); err == nil {
			return true
		}
	}
	return false
}

// midnight is the start of t's day, in local time.
func midnight(t time.Time) time.Time {
	y, m, d := t.Local().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.Local)
}

// parseTime accepts RFC 3339, or a local "2006-01-02 15:04[:05]", or a local
// clock time "15:04[:05]": the next time the clock shows it, as at(1) reads
// it. That is today unless the time has passed, to the unit given ("10:27"
// is today until 10:28:00, "10:27:00" until 10:27:01), and then tomorrow;
// the day is counted on the calendar, so a DST change in between keeps the
// clock time.
func parseTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, now.Location()); err == nil {
			return t, nil
		}
	}
	for _, cl := range clockLayouts {
		if t, err := time.ParseInLocation(cl.layout, s, now.Location()); err == nil {
			y, m, d := now.Date()
			at := time.Date(y, m, d, t.Hour(), t.Minute(), t.Second(), 0, now.Location())
			if !at.Add(cl.unit).After(now) {
				at = time.Date(y, m, d+1, t.Hour(), t.Minute(), t.Second(), 0, now.Location())
			}
			return at, nil
		}
	}
	return time.Time{}, fmt.Errorf("cannot read %q as a time (examples: 2026-11-25T18:00:00Z, \"2026-11-25 18:00\", 18:00)", s)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// rateLimitPatience bounds how long `stq enqueue` waits out the daemon's
// rate limit before it gives up.
const rateLimitPatience = 5 * time.Second

// enqueueWithRetry sends the request and, when the daemon answers "rate
// limited", waits as long as it says (within rateLimitPatience) and tries
// again on the same connection.
func (a *app) enqueueWithRetry(ctx context.Context, c *cli.Command, req engine.EnqueueRequest) (*engine.EnqueueResult, error) {
	cl, p, err := a.client(ctx, c)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var res *engine.EnqueueResult
	err = retryRateLimited(ctx, func() (err error) {
		res, err = cl.Enqueue(ctx, req)
		return err
	})
	if err != nil {
		return nil, noHandlerHint(rpcFailure(err), req.Type, p)
	}
	return res, nil
}

// noHandlerHint gives the daemon's "job type T has no handler" refusal the
// fix as a hint: a handler in config.toml, put in force by stq reload.
func noHandlerHint(err error, jobType string, p Paths) error {
	var ee *exitError
	if !errors.As(err, &ee) || ee.hint != "" || !strings.Contains(ee.err.Error(), "has no handler") {
		return err
	}
	msg, _, _ := strings.Cut(ee.err.Error(), ": give a command")
	return &exitError{code: ee.code, err: errors.New(msg),
		hint: fmt.Sprintf("give a command after --, or add [handlers.%s] with a command to %s and run 'stq reload'", jobType, p.Config)}
}

// retryRateLimited runs send until the daemon stops answering "rate
// limited", waiting as long as each answer asks, for rateLimitPatience at
// most.
func retryRateLimited(ctx context.Context, send func() error) error {
	give := time.Now().Add(rateLimitPatience)
	for {
		err := send()
		wait, limited := ipc.RetryAfter(err)
		if !limited {
			return err
		}
		if wait <= 0 {
			wait = 100 * time.Millisecond
		}
		if time.Now().Add(wait).After(give) {
			return failf("the daemon is rate-limiting enqueues and asked to wait %s; gave up after trying for %s", wait, rateLimitPatience)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
