package commands

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v3"

	"stq/engine"
	"stq/ipc"
)

// Chunks of a --batch run: each is one all-or-nothing dev.enqueue_many.v1
// request, small enough to stay well under the daemon's default request
// line limit (2 MiB).
const (
	batchChunkJobs  = 1000
	batchChunkBytes = 1 << 20
	// maxBatchLine bounds one input line: a payload may be 1 MiB of JSON,
	// escaped; past this something is wrong with the input.
	maxBatchLine = 16 << 20
)

// batchLine is one parsed input line and where it came from.
type batchLine struct {
	n    int // 1-based line number
	req  engine.EnqueueRequest
	size int
}

// enqueueBatch is `stq enqueue --batch FILE`.
func (a *app) enqueueBatch(ctx context.Context, c *cli.Command) error {
	for _, name := range c.LocalFlagNames() {
		if name != "batch" && name != "json" && name != "daemon-env" {
			return usageErrorf("--batch takes every job's options from its input lines; --%s cannot go with it", name)
		}
	}
	if c.Args().Present() {
		return usageErrorf("--batch takes no command; give each line a \"command\" member")
	}
	in, closeIn, err := a.openBatch(c.String("batch"))
	if err != nil {
		return err
	}
	defer closeIn()
	wd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("find working directory: %w", err)
	}
	cl, _, err := a.client(ctx, c)
	if err != nil {
		return err
	}
	defer cl.Close()
	sender := &batchSender{a: a, ctx: ctx, c: c, cl: cl, asJSON: c.Bool("json")}
	// Lines without a base_env start from this shell's environment, as
	// `stq enqueue` jobs do; it goes once per chunk, not once per line, so
	// a chunk leaves room for it.
	chunkBytes := batchChunkBytes
	if !c.Bool("daemon-env") {
		sender.baseEnv = callerEnv(os.Environ())
		for k, v := range sender.baseEnv {
			chunkBytes -= len(k) + len(v) + 6
		}
		chunkBytes = max(chunkBytes, batchChunkBytes/16)
	}
	r := bufio.NewReaderSize(in, 64<<10)
	var chunk []batchLine
	bytesIn := 0
	for n := 1; ; n++ {
		raw, err := readBatchLine(r)
		if err != nil && !errors.Is(err, io.EOF) {
			return failf("read line %d: %v", n, err)
		}
		if len(bytes.TrimSpace(raw)) > 0 {
			bl, perr := parseBatchLine(n, raw, wd)
			if perr != nil {
				return perr
			}
			if len(chunk) > 0 && (len(chunk) == batchChunkJobs || bytesIn+bl.size > chunkBytes) {
				if err := sender.send(chunk); err != nil {
					return err
				}
				chunk, bytesIn = chunk[:0], 0
			}
			chunk = append(chunk, bl)
			bytesIn += bl.size
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	if len(chunk) > 0 {
		return sender.send(chunk)
	}
	return nil
}

func (a *app) openBatch(name string) (io.Reader, func(), error) {
	if name == "-" {
		return a.stdin, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, usageErrorf("--batch: %v", err)
	}
	return f, func() { f.Close() }, nil
}

// readBatchLine reads one line without its newline; io.EOF comes with the
// last line when the input does not end in a newline.
func readBatchLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		part, err := r.ReadSlice('\n')
		line = append(line, part...)
		if len(line) > maxBatchLine {
			return nil, fmt.Errorf("longer than %d bytes", maxBatchLine)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimRight(line, "\r\n"), err
	}
}

// parseBatchLine decodes one request as the daemon would (unknown members
// are errors), so a typo stops the run before its chunk is sent. A job
// with a command and no cwd runs in the current directory, as
// `stq enqueue -- cmd` does.
func parseBatchLine(n int, raw []byte, wd string) (batchLine, error) {
	var req engine.EnqueueRequest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return batchLine{}, failf("line %d: %s", n, describeLineError(err))
	}
	if dec.More() {
		return batchLine{}, failf("line %d: more than one JSON value", n)
	}
	if len(req.Command) > 0 && req.Cwd == "" {
		req.Cwd = wd
	}
	return batchLine{n: n, req: req, size: len(raw)}, nil
}

func describeLineError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return "not valid JSON: " + trimJSON(err.Error())
	case errors.As(err, &te) && te.Field == "":
		return "want a JSON object with the members of an enqueue request"
	case errors.As(err, &te):
		return fmt.Sprintf("%s has the wrong type (%s)", te.Field, te.Value)
	}
	return trimJSON(err.Error())
}

func trimJSON(s string) string {
	if len(s) > 6 && s[:6] == "json: " {
		return s[6:]
	}
	return s
}

// batchSender sends chunks over one connection and prints their ids.
type batchSender struct {
	a      *app
	ctx    context.Context
	c      *cli.Command
	cl     *ipc.Client
	asJSON bool
	// baseEnv is the base environment of the lines without one; nil: the
	// daemon's (--daemon-env).
	baseEnv map[string]string
}

func (s *batchSender) send(chunk []batchLine) error {
	reqs := make([]engine.EnqueueRequest, len(chunk))
	for i := range chunk {
		reqs[i] = chunk[i].req
	}
	// Without --json only the ids are printed: the brief reply spares
	// both ends encoding and decoding every job.
	var res []engine.EnqueueResult
	var brief []ipc.Enqueued
	err := retryRateLimited(s.ctx, func() (err error) {
		if s.asJSON {
			res, err = s.cl.EnqueueManyEnv(s.ctx, s.baseEnv, reqs)
		} else {
			brief, err = s.cl.EnqueueManyBrief(s.ctx, s.baseEnv, reqs)
		}
		return err
	})
	if i, ok := ipc.BatchIndex(err); ok && i >= 0 && i < len(chunk) {
		var re *ipc.RPCError
		errors.As(err, &re)
		msg := strings.TrimSuffix(strings.TrimPrefix(re.Message, fmt.Sprintf("jobs[%d]: ", i)), "; nothing was stored")
		return failf("line %d: %s (nothing from line %d on was stored)", chunk[i].n, msg, chunk[0].n)
	}
	if err != nil {
		return baseEnvHint(rpcFailure(err))
	}
	w := bufio.NewWriter(s.a.stdout)
	enc := json.NewEncoder(w)
	for i := range res {
		if err := enc.Encode(&res[i]); err != nil {
			return err
		}
	}
	for i := range brief {
		fmt.Fprintln(w, brief[i].ID)
	}
	return w.Flush()
}
