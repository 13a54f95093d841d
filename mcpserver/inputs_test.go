package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"stq/engine"
	"stq/ipc"
)

func TestEnqueueRequest(t *testing.T) {
	wd := func() (string, error) { return "/srv/proj", nil }
	noWd := func() (string, error) { return "", errors.New("gone") }
	gen := int64(4)
	negGen := int64(-1)
	yes := true
	dur := func(d time.Duration) *engine.Duration { v := engine.Duration(d); return &v }
	tests := []struct {
		name    string
		in      enqueueIn
		getwd   func() (string, error)
		want    engine.EnqueueRequest
		wantErr string
	}{
		{
			name: "command runs in the server's directory",
			in:   enqueueIn{Command: []string{"go", "test"}},
			want: engine.EnqueueRequest{Command: []string{"go", "test"}, Cwd: "/srv/proj"},
		},
		{
			name:  "command with its own cwd",
			in:    enqueueIn{Command: []string{"make"}, Cwd: "/tmp/x"},
			getwd: noWd,
			want:  engine.EnqueueRequest{Command: []string{"make"}, Cwd: "/tmp/x"},
		},
		{
			name:  "type alone needs no cwd",
			in:    enqueueIn{Type: "index"},
			getwd: noWd,
			want:  engine.EnqueueRequest{Type: "index"},
		},
		{
			name: "everything",
			in: enqueueIn{
				Command: []string{"lint"}, Type: "lint", Subject: "a.go", Generation: &gen, Payload: map[string]any{"file": "a.go"},
				Queue: "q", Priority: 3, After: []string{"j1"}, Debounce: "2s", Replace: true, Deadline: "1d", Cwd: "/w",
			},
			want: engine.EnqueueRequest{
				Command: []string{"lint"}, Type: "lint", Subject: "a.go", Generation: &gen, Payload: json.RawMessage(`{"file":"a.go"}`),
				Queue: "q", Priority: 3, After: []string{"j1"}, Debounce: dur(2 * time.Second), Replace: &yes, Deadline: dur(24 * time.Hour), Cwd: "/w",
			},
		},
		{
			name: "a deadline of 0 is no deadline",
			in:   enqueueIn{Type: "t", Deadline: "0"},
			want: engine.EnqueueRequest{Type: "t", Deadline: dur(0)},
		},
		{
			name: "scalar payload",
			in:   enqueueIn{Type: "t", Payload: 42.0},
			want: engine.EnqueueRequest{Type: "t", Payload: json.RawMessage(`42`)},
		},
		{
			// false is the default, which leaves the job type's in force.
			name: "replace false is left out",
			in:   enqueueIn{Type: "t", Subject: "s", Replace: false},
			want: engine.EnqueueRequest{Type: "t", Subject: "s"},
		},
		{name: "nothing to run", in: enqueueIn{Subject: "s"}, wantErr: "give command"},
		{name: "empty program", in: enqueueIn{Command: []string{"", "x"}}, wantErr: "command[0]"},
		{name: "generation without subject", in: enqueueIn{Type: "t", Generation: &gen}, wantErr: "generation needs a subject"},
		{name: "negative generation", in: enqueueIn{Type: "t", Subject: "s", Generation: &negGen}, wantErr: "negative"},
		{name: "replace without subject", in: enqueueIn{Type: "t", Replace: true}, wantErr: "replace needs a subject"},
		{name: "debounce without subject", in: enqueueIn{Type: "t", Debounce: "2s"}, wantErr: "debounce needs a subject"},
		{name: "bad debounce", in: enqueueIn{Type: "t", Subject: "s", Debounce: "soon"}, wantErr: "debounce: invalid duration"},
		{name: "number as deadline", in: enqueueIn{Type: "t", Deadline: "30"}, wantErr: "deadline: invalid duration"},
		{name: "negative deadline", in: enqueueIn{Type: "t", Deadline: "-1s"}, wantErr: "deadline: negative"},
		{name: "relative cwd", in: enqueueIn{Command: []string{"ls"}, Cwd: "src"}, wantErr: "absolute"},
		{name: "empty dependency", in: enqueueIn{Type: "t", After: []string{"j1", ""}}, wantErr: "after[1]"},
		{name: "no working directory", in: enqueueIn{Command: []string{"ls"}}, getwd: noWd, wantErr: "give cwd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getwd := tt.getwd
			if getwd == nil {
				getwd = wd
			}
			got, err := tt.in.request(getwd)
			checkErr(t, err, tt.wantErr)
			if tt.wantErr == "" && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("request =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// checkErr fails unless err contains want, or is nil when want is empty.
func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not contain %q", err, want)
	}
}

func TestListParams(t *testing.T) {
	tests := []struct {
		name    string
		in      listIn
		want    ipc.ListParams
		wantErr string
	}{
		{name: "defaults", in: listIn{}, want: ipc.ListParams{Limit: defaultListLimit}},
		{
			name: "filters",
			in:   listIn{State: []string{"failed", " Running "}, Queue: "q", Type: "t", Subject: "s", Limit: 500, Cursor: "c1"},
			want: ipc.ListParams{States: []string{"FAILED", "RUNNING"}, Queue: "q", Type: "t", Subject: "s", Limit: 500, Cursor: "c1"},
		},
		{name: "limit too large", in: listIn{Limit: 501}, wantErr: "limit must be between 1 and 500"},
		{name: "negative limit", in: listIn{Limit: -1}, wantErr: "limit"},
		{name: "unknown state", in: listIn{State: []string{"done", "finished"}}, wantErr: `unknown state "finished"; states are QUEUED, RUNNING`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.in.params()
			checkErr(t, err, tt.wantErr)
			if tt.wantErr == "" && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("params = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestWaitOptions(t *testing.T) {
	tests := []struct {
		name        string
		in          waitIn
		wantTimeout time.Duration
		wantLines   int
		wantErr     string
	}{
		{name: "defaults", in: waitIn{ID: "j1"}, wantTimeout: time.Minute, wantLines: 20},
		{name: "given", in: waitIn{ID: "j1", Timeout: "90s", Lines: 200}, wantTimeout: 90 * time.Second, wantLines: 200},
		{name: "poll", in: waitIn{ID: "j1", Timeout: "0s"}, wantTimeout: 0, wantLines: 20},
		{name: "longest", in: waitIn{ID: "j1", Timeout: "10m"}, wantTimeout: 10 * time.Minute, wantLines: 20},
		{name: "too long", in: waitIn{ID: "j1", Timeout: "10m1s"}, wantErr: "over the maximum of 10m0s"},
		{name: "bad timeout", in: waitIn{ID: "j1", Timeout: "a while"}, wantErr: "timeout: invalid duration"},
		{name: "too many lines", in: waitIn{ID: "j1", Lines: 201}, wantErr: "lines must be between 1 and 200"},
		{name: "negative lines", in: waitIn{ID: "j1", Lines: -5}, wantErr: "lines must be"},
		{name: "no id", in: waitIn{ID: " "}, wantErr: "id is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout, lines, err := tt.in.options()
			checkErr(t, err, tt.wantErr)
			if tt.wantErr == "" && (timeout != tt.wantTimeout || lines != tt.wantLines) {
				t.Errorf("options = %v, %d; want %v, %d", timeout, lines, tt.wantTimeout, tt.wantLines)
			}
		})
	}
}

func TestLogsWindow(t *testing.T) {
	tests := []struct {
		name       string
		in         logsIn
		wantOffset int64
		wantLimit  int
		wantErr    string
	}{
		{name: "defaults", in: logsIn{ID: "j1"}, wantOffset: 0, wantLimit: 100},
		{name: "given", in: logsIn{ID: "j1", Offset: 10, Limit: 1000}, wantOffset: 10, wantLimit: 1000},
		{name: "limit too large", in: logsIn{ID: "j1", Limit: 1001}, wantErr: "limit must be between 1 and 1000"},
		{name: "negative offset", in: logsIn{ID: "j1", Offset: -1}, wantErr: "offset"},
		{name: "no id", in: logsIn{}, wantErr: "id is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			offset, limit, err := tt.in.window()
			checkErr(t, err, tt.wantErr)
			if tt.wantErr == "" && (offset != tt.wantOffset || limit != tt.wantLimit) {
				t.Errorf("window = %d, %d; want %d, %d", offset, limit, tt.wantOffset, tt.wantLimit)
			}
		})
	}
}

func TestCancelRequest(t *testing.T) {
	tests := []struct {
		name    string
		in      cancelIn
		want    engine.CancelRequest
		wantErr string
	}{
		{name: "by id", in: cancelIn{ID: "j1"}, want: engine.CancelRequest{ID: "j1"}},
		{name: "by subject", in: cancelIn{Subject: "s", Queue: "q", Type: "t"}, want: engine.CancelRequest{Subject: "s", Queue: "q", Type: "t"}},
		{name: "neither", in: cancelIn{}, wantErr: "give id"},
		{name: "both", in: cancelIn{ID: "j1", Subject: "s"}, wantErr: "not both"},
		{name: "queue with id", in: cancelIn{ID: "j1", Queue: "q"}, wantErr: "go with subject"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.in.request()
			checkErr(t, err, tt.wantErr)
			if tt.wantErr == "" && got != tt.want {
				t.Errorf("request = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestToolError(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"no daemon", fmt.Errorf("dial: %w", ipc.ErrNoDaemon), "start it with `stq daemon`"},
		{"daemon message", &ipc.RPCError{Code: ipc.CodeNotFound, Message: "get nope: job not found"}, "get nope: job not found"},
		{"unauthorized", &ipc.RPCError{Code: ipc.CodeUnauthorized, Message: "bad token"}, "refused this server's token"},
		{"other", errors.New("dev.get.v1: EOF"), "talk to the stq daemon: dev.get.v1: EOF"},
		{"cancelled", context.Canceled, "context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := toolError(tt.err).Error(); !strings.Contains(got, tt.want) {
				t.Errorf("toolError = %q, want it to contain %q", got, tt.want)
			}
		})
	}
}

// TestToolErrorsInProcess checks, without a daemon, that refusals reach
// the agent as tool errors rather than protocol errors, whichever layer
// (the SDK's schema check, the tool's own check, the connection) refused.
func TestToolErrorsInProcess(t *testing.T) {
	ctx := t.Context()
	noDaemon := func(context.Context) (*ipc.Client, error) {
		return nil, fmt.Errorf("connect: %w", ipc.ErrNoDaemon)
	}
	srv := newServer(Config{Version: "test", Connect: noDaemon}, func() (string, error) { return "/", nil })
	st, ct := mcp.NewInMemoryTransports()
	ss, err := srv.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "0"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })

	tests := []struct {
		tool string
		args map[string]any
		want string
	}{
		{"stats", nil, "`stq daemon`"},
		{"enqueue", map[string]any{"command": []string{"true"}}, "`stq daemon`"},
		{"list", map[string]any{"limit": 501}, "limit must be between 1 and 500"},
		{"wait", map[string]any{"id": "j1", "timeout": "1h"}, "over the maximum"},
		{"enqueue", map[string]any{"command": "make test"}, "command"},
		{"show", map[string]any{"job": "j1"}, "job"},
		{"logs", map[string]any{}, "id"},
	}
	for _, tt := range tests {
		t.Run(tt.tool, func(t *testing.T) {
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tt.tool, Arguments: tt.args})
			if err != nil {
				t.Fatalf("protocol error, want a tool error: %v", err)
			}
			t.Logf("%s", resultText(res))
			if !res.IsError || !strings.Contains(resultText(res), tt.want) {
				t.Errorf("isError=%v, text %q; want a tool error containing %q", res.IsError, resultText(res), tt.want)
			}
		})
	}
}

// resultText joins a result's text contents.
func resultText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}
