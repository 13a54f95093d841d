package mcpserver

import (
	"context"
	"errors"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"stq/engine"
	"stq/ipc"
)

func (t *tools) register(s *mcp.Server) {
	readOnly := &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: new(false)}
	mcp.AddTool(s, &mcp.Tool{
		Name: "enqueue",
		Description: "Add a job to the local stq queue and return at once with its id; the stq daemon runs it in the background " +
			"with retries and a per-attempt deadline. Give command (argv, run as a subprocess in cwd) or a type whose handler " +
			"is configured in stq's config.toml. Give a subject to make a newer job for the same thing (a file, a branch) " +
			"supersede older queued ones. Then call wait with the id to get the outcome and the end of the output.",
		Annotations: &mcp.ToolAnnotations{OpenWorldHint: new(true), DestructiveHint: new(false)},
	}, t.enqueue)
	mcp.AddTool(s, &mcp.Tool{
		Name: "list",
		Description: "List jobs newest first, as compact summaries (id, state, queue, type, subject, attempts, error, why it is waiting), " +
			"without output or attempt history. Filter by state, queue, type or subject; when next_cursor is returned, pass it as " +
			"cursor to get the next page. Use it to find job ids or to see what is queued, running or failed.",
		Annotations: readOnly,
	}, t.list)
	mcp.AddTool(s, &mcp.Tool{
		Name: "show",
		Description: "Show everything about one job: command, cwd, payload, settings, timestamps, and every attempt with its " +
			"outcome, exit code and reason. Use it to find out why a job failed, was retried or is still waiting; " +
			"for its output use wait or logs.",
		Annotations: readOnly,
	}, t.show)
	mcp.AddTool(s, &mcp.Tool{
		Name: "wait",
		Description: "Wait for a job to end (up to timeout, default 60s, at most 10m) and return a digest: state, exit code, error, " +
			"run time and the last lines of output (20 by default). If the job is still queued or running when the timeout " +
			"passes, timed_out is true and the digest shows it as it is; call wait again to keep waiting. The output is never " +
			"returned whole: log_truncated says earlier lines exist, which logs can read.",
		Annotations: readOnly,
	}, t.wait)
	mcp.AddTool(s, &mcp.Tool{
		Name: "logs",
		Description: "Read a window of a job's output (stdout, stderr and stq's own notes, numbered by seq from 1): up to limit " +
			"lines after line offset. While more is true, pass next_offset as offset to read on. Use it when the digest of " +
			"wait is not enough, e.g. to find the first error of a long build.",
		Annotations: readOnly,
	}, t.logs)
	mcp.AddTool(s, &mcp.Tool{
		Name: "cancel",
		Description: "Cancel a queued or running job by id (a running job's processes are killed), or with subject every queued " +
			"and running job of that subject key. Returns the ids of the jobs cancelled. Cancelling a job that already " +
			"finished is an error; retry can run a cancelled job again.",
		Annotations: &mcp.ToolAnnotations{DestructiveHint: new(true), IdempotentHint: true, OpenWorldHint: new(false)},
	}, t.cancel)
	mcp.AddTool(s, &mcp.Tool{
		Name: "retry",
		Description: "Queue a FAILED, CANCELLED or EXPIRED job again as a new series of attempts, keeping its id and history; " +
			"returns its summary, so follow with wait. Jobs in other states, and jobs whose subject has a newer generation, " +
			"are refused.",
		Annotations: &mcp.ToolAnnotations{OpenWorldHint: new(true), DestructiveHint: new(false)},
	}, t.retry)
	mcp.AddTool(s, &mcp.Tool{
		Name: "stats",
		Description: "Show the stq daemon's state: job counts per queue and state, the number of workers, how many jobs " +
			"run now, and which queues are paused. Use it for an overview of the queue, or to check the daemon is up.",
		Annotations: readOnly,
	}, t.stats)
}

func (t *tools) enqueue(ctx context.Context, _ *mcp.CallToolRequest, in enqueueIn) (*mcp.CallToolResult, enqueueOut, error) {
	var out enqueueOut
	req, err := in.request(t.getwd)
	if err != nil {
		return nil, out, err
	}
	err = t.withClient(ctx, func(c *ipc.Client) error {
		res, err := c.Enqueue(ctx, req)
		if err != nil {
			return err
		}
		if res.Job == nil {
			return errors.New("the daemon's reply has no job")
		}
		out = enqueueOut{
			ID:         res.Job.ID,
			State:      string(res.Job.State),
			Generation: res.Job.Generation,
			Superseded: res.Superseded,
		}
		if res.Job.State == engine.StateSuperseded {
			out.Error = res.Job.Error
		}
		return nil
	})
	return nil, out, err
}

func (t *tools) list(ctx context.Context, _ *mcp.CallToolRequest, in listIn) (*mcp.CallToolResult, listOut, error) {
	out := listOut{Jobs: []jobSummary{}}
	p, err := in.params()
	if err != nil {
		return nil, out, err
	}
	err = t.withClient(ctx, func(c *ipc.Client) error {
		page, err := c.List(ctx, p)
		if err != nil {
			return err
		}
		for _, j := range page.Jobs {
			out.Jobs = append(out.Jobs, summarize(j))
		}
		out.NextCursor = page.NextCursor
		return nil
	})
	return nil, out, err
}

func (t *tools) show(ctx context.Context, _ *mcp.CallToolRequest, in idIn) (*mcp.CallToolResult, jobOut, error) {
	j, err := t.oneJob(ctx, in.ID, func(c *ipc.Client) (*engine.Job, error) { return c.Get(ctx, in.ID) })
	if err != nil {
		return nil, jobOut{}, err
	}
	return nil, detail(j), nil
}

// oneJob checks the id an agent gave, then makes the one call that answers
// with that job.
func (t *tools) oneJob(ctx context.Context, id string, call func(*ipc.Client) (*engine.Job, error)) (*engine.Job, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	var j *engine.Job
	err := t.withClient(ctx, func(c *ipc.Client) (err error) {
		j, err = call(c)
		return err
	})
	return j, err
}

func (t *tools) wait(ctx context.Context, _ *mcp.CallToolRequest, in waitIn) (*mcp.CallToolResult, waitOut, error) {
	var out waitOut
	timeout, n, err := in.options()
	if err != nil {
		return nil, out, err
	}
	err = t.withClient(ctx, func(c *ipc.Client) error {
		d := engine.Duration(timeout)
		res, err := c.Wait(ctx, ipc.WaitParams{IDs: []string{in.ID}, Timeout: &d})
		if err != nil {
			return err
		}
		if len(res.Jobs) != 1 || res.Jobs[0] == nil {
			return errors.New("the daemon's reply has no job")
		}
		lt, err := readTail(ctx, func(ctx context.Context, after int64) (*ipc.LinesResult, error) {
			return c.Logs(ctx, in.ID, after)
		}, n)
		if err != nil {
			return err
		}
		out = digest(res.Jobs[0], res.TimedOut, lt)
		return nil
	})
	return nil, out, err
}

func (t *tools) logs(ctx context.Context, _ *mcp.CallToolRequest, in logsIn) (*mcp.CallToolResult, logsOut, error) {
	out := logsOut{Lines: []logLine{}}
	offset, limit, err := in.window()
	if err != nil {
		return nil, out, err
	}
	err = t.withClient(ctx, func(c *ipc.Client) error {
		res, err := c.Logs(ctx, in.ID, offset)
		if err != nil {
			return err
		}
		lines := res.Lines
		out.More = res.More
		if len(lines) > limit {
			lines, out.More = lines[:limit], true
		}
		out.NextOffset = offset
		for _, l := range lines {
			out.Lines = append(out.Lines, logLine{Seq: l.Seq, Stream: l.Stream, Text: clip(l.Text, windowLineBytes)})
			out.NextOffset = l.Seq
		}
		return nil
	})
	return nil, out, err
}

func (t *tools) cancel(ctx context.Context, _ *mcp.CallToolRequest, in cancelIn) (*mcp.CallToolResult, cancelOut, error) {
	out := cancelOut{Cancelled: []string{}}
	req, err := in.request()
	if err != nil {
		return nil, out, err
	}
	err = t.withClient(ctx, func(c *ipc.Client) error {
		jobs, err := c.Cancel(ctx, req)
		if err != nil {
			return err
		}
		for _, j := range jobs {
			out.Cancelled = append(out.Cancelled, j.ID)
		}
		return nil
	})
	return nil, out, err
}

func (t *tools) retry(ctx context.Context, _ *mcp.CallToolRequest, in idIn) (*mcp.CallToolResult, jobSummary, error) {
	j, err := t.oneJob(ctx, in.ID, func(c *ipc.Client) (*engine.Job, error) { return c.Retry(ctx, in.ID) })
	if err != nil {
		return nil, jobSummary{}, err
	}
	return nil, summarize(j), nil
}

func (t *tools) stats(ctx context.Context, _ *mcp.CallToolRequest, _ statsIn) (*mcp.CallToolResult, statsOut, error) {
	var out statsOut
	err := t.withClient(ctx, func(c *ipc.Client) error {
		st, err := c.Stats(ctx)
		if err != nil {
			return err
		}
		out = stats(st)
		return nil
	})
	return nil, out, err
}
