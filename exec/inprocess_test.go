package exec

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"stq/engine"
)

func TestInProcess(t *testing.T) {
	t.Parallel()
	errBoom := errors.New("boom")
	tests := []struct {
		name       string
		handler    engine.Handler
		runHandler string // run.Handler; the handler is registered as "work"
		jobType    string
		wantErr    string
		wantIs     error
		wantStdout []string
	}{
		{
			name:    "a handler that returns nil succeeds",
			handler: func(context.Context, *engine.Job) error { return nil },
			jobType: "work",
		},
		{
			name:    "a handler's error fails the attempt",
			handler: func(context.Context, *engine.Job) error { return errBoom },
			jobType: "work",
			wantErr: "boom",
			wantIs:  errBoom,
		},
		{
			name: "a wrapped ErrPermanent stays recognisable",
			handler: func(context.Context, *engine.Job) error {
				return fmt.Errorf("parse payload: %w", engine.ErrPermanent)
			},
			jobType: "work",
			wantErr: "parse payload: permanent failure",
			wantIs:  engine.ErrPermanent,
		},
		{
			name:    "a panic is recovered as an error",
			handler: func(context.Context, *engine.Job) error { panic("kaboom") },
			jobType: "work",
			wantErr: "handler panicked: kaboom",
		},
		{
			name:    "a panic with an error keeps it wrapped",
			handler: func(context.Context, *engine.Job) error { panic(errBoom) },
			jobType: "work",
			wantErr: "handler panicked: boom",
			wantIs:  errBoom,
		},
		{
			name:    "an unknown type is a permanent failure",
			handler: func(context.Context, *engine.Job) error { return nil },
			jobType: "other",
			wantErr: `no in-process handler for type "other": permanent failure`,
			wantIs:  engine.ErrPermanent,
		},
		{
			name:       "the run's handler name wins over the job type",
			handler:    func(context.Context, *engine.Job) error { return nil },
			runHandler: "work",
			jobType:    "other",
		},
		{
			name: "Logf lines reach the job's output",
			handler: func(ctx context.Context, job *engine.Job) error {
				engine.Logf(ctx, "working on %s", job.ID)
				engine.Logf(ctx, "two\nlines\n")
				return nil
			},
			jobType:    "work",
			wantStdout: []string{"working on job-1", "two", "lines"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg := engine.NewRegistry()
			if err := reg.Register("work", tt.handler); err != nil {
				t.Fatal(err)
			}
			run, out := newRun()
			run.Handler, run.Job.Type = tt.runHandler, tt.jobType
			run.Started = func(int, int64) { t.Error("Started called by an in-process handler") }
			res := InProcess{Registry: reg}.Execute(context.Background(), run)
			if res.ExitCode != nil || res.Signal != "" {
				t.Errorf("ExitCode = %v, Signal = %q, want neither", res.ExitCode, res.Signal)
			}
			switch {
			case tt.wantErr == "" && res.Err != nil:
				t.Fatalf("Err = %v, want nil", res.Err)
			case tt.wantErr != "" && (res.Err == nil || res.Err.Error() != tt.wantErr):
				t.Fatalf("Err = %v, want %q", res.Err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(res.Err, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", res.Err, tt.wantIs)
			}
			if got := out.stream("stdout"); !slices.Equal(got, tt.wantStdout) {
				t.Errorf("stdout = %q, want %q", got, tt.wantStdout)
			}
		})
	}
}

func TestInProcessPanicWritesStack(t *testing.T) {
	t.Parallel()
	t.Run("a panic's value and stack go to stderr", func(t *testing.T) {
		t.Parallel()
		reg := engine.NewRegistry()
		if err := reg.Register("work", func(context.Context, *engine.Job) error { panic("kaboom") }); err != nil {
			t.Fatal(err)
		}
		run, out := newRun()
		run.Job.Type = "work"
		InProcess{Registry: reg}.Execute(context.Background(), run)
		stderr := out.stream("stderr")
		if len(stderr) == 0 || stderr[0] != "panic: kaboom" {
			t.Fatalf("stderr = %q, want it to start with the panic value", stderr)
		}
		if !slices.ContainsFunc(stderr, func(l string) bool { return strings.HasPrefix(l, "goroutine ") }) {
			t.Errorf("stderr = %q, want a goroutine stack", stderr)
		}
		for _, l := range stderr {
			if strings.Contains(l, "\n") {
				t.Errorf("stderr line %q holds a newline", l)
			}
		}
	})
}

func TestInProcessDropsOutputAfterReturn(t *testing.T) {
	t.Parallel()
	t.Run("lines logged after the handler returned are dropped", func(t *testing.T) {
		t.Parallel()
		var kept context.Context
		reg := engine.NewRegistry()
		if err := reg.Register("work", func(ctx context.Context, _ *engine.Job) error {
			kept = ctx
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		run, out := newRun()
		run.Job.Type = "work"
		InProcess{Registry: reg}.Execute(context.Background(), run)
		engine.Logf(kept, "too late")
		if got := out.stream("stdout"); len(got) != 0 {
			t.Errorf("stdout = %q, want nothing", got)
		}
	})
}

func TestNoop(t *testing.T) {
	t.Parallel()
	t.Run("the noop handler succeeds", func(t *testing.T) {
		t.Parallel()
		reg := engine.NewRegistry()
		if err := reg.Register("noop", Noop); err != nil {
			t.Fatal(err)
		}
		run, _ := newRun()
		run.Job.Type = "noop"
		if res := (InProcess{Registry: reg}).Execute(context.Background(), run); res.Err != nil {
			t.Errorf("Err = %v, want nil", res.Err)
		}
	})
}
