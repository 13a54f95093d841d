package ipc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"stq/engine"
	"stq/ipc"
)

// TestMain runs a real daemon for the examples: it builds stq, starts it
// on a fresh home and points STQ_HOME there, so the examples connect the
// way a program would, with ipc.DialHome(ctx, "").
func TestMain(m *testing.M) {
	os.Exit(runWithDaemon(m))
}

func runWithDaemon(m *testing.M) int {
	dir, err := os.MkdirTemp("/tmp", "stqex")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "stq")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build stq:", err)
		return 1
	}
	home := filepath.Join(dir, "h")
	os.Setenv("STQ_HOME", home)
	daemon := exec.Command(bin, "daemon")
	logs := &syncBuffer{} // shown only when something fails
	daemon.Stdout, daemon.Stderr = logs, logs
	if err := daemon.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "start stq daemon:", err)
		return 1
	}
	defer func() {
		daemon.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { daemon.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			daemon.Process.Kill()
			<-done
		}
	}()
	if err := awaitDaemon(home); err != nil {
		fmt.Fprintf(os.Stderr, "%v\n%s", err, logs.Bytes())
		return 1
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "daemon log:\n%s", logs.Bytes())
	}
	return code
}

// syncBuffer is a buffer the daemon's output copier writes while the
// tests may read it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func awaitDaemon(home string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		cl, err := ipc.DialHome(context.Background(), home)
		if err == nil {
			cl.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("daemon not ready: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Enqueue a job with a subject and wait for it to end. An editor hook does
// this on every save: a newer generation of the same subject supersedes an
// older one that has not started.
func ExampleClient_Enqueue() {
	ctx := context.Background()
	cl, err := ipc.DialHome(ctx, "") // $STQ_HOME, or the default home, as `stq` finds it
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()

	res, err := cl.Enqueue(ctx, engine.EnqueueRequest{
		Queue:   "indexing",
		Subject: "src/main.rs",
		Command: []string{"sh", "-c", "echo indexing src/main.rs"},
	})
	if err != nil {
		log.Fatal(err)
	}
	w, err := cl.Wait(ctx, ipc.WaitParams{IDs: []string{res.Job.ID}})
	if err != nil {
		log.Fatal(err)
	}
	job := w.Jobs[0]
	fmt.Println(job.Subject, job.State, *job.ExitCode)
	// Output: src/main.rs DONE 0
}

// Follow a job's output as it runs; the sequence ends after the job's
// terminal state.
func ExampleClient_Tail() {
	ctx := context.Background()
	cl, err := ipc.DialHome(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()

	res, err := cl.Enqueue(ctx, engine.EnqueueRequest{Command: []string{"sh", "-c", "echo compiling; echo linking"}})
	if err != nil {
		log.Fatal(err)
	}
	for ev, err := range cl.Tail(ctx, ipc.TailParams{JobID: res.Job.ID, Follow: true}) {
		if err != nil {
			log.Fatal(err)
		}
		switch {
		case ev.Kind == engine.EventLog && ev.Line.Stream == "stdout":
			fmt.Println(ev.Line.Text)
		case ev.Kind == engine.EventJob && ev.Job.State.Terminal():
			fmt.Println("ended", ev.Job.State)
		}
	}
	// Output:
	// compiling
	// linking
	// ended DONE
}

// Enqueue many jobs at once: all or nothing, in one commit, in order, so
// the last generation of a subject in the batch wins.
func ExampleClient_EnqueueMany() {
	ctx := context.Background()
	cl, err := ipc.DialHome(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()

	var reqs []engine.EnqueueRequest
	for _, file := range []string{"lint/a.go", "lint/b.go", "lint/a.go"} {
		reqs = append(reqs, engine.EnqueueRequest{Type: "noop", Queue: "lint", Subject: file})
	}
	results, err := cl.EnqueueMany(ctx, reqs)
	if err != nil {
		if i, ok := ipc.BatchIndex(err); ok {
			log.Fatalf("request %d was refused, nothing was stored: %v", i, err)
		}
		log.Fatal(err)
	}
	for _, r := range results {
		fmt.Println(r.Job.Subject, "generation", r.Job.Generation, "superseded", len(r.Superseded))
	}
	// Output:
	// lint/a.go generation 1 superseded 0
	// lint/b.go generation 1 superseded 0
	// lint/a.go generation 2 superseded 1
}

// Errors from the daemon match the package's sentinels.
func ExampleClient_Get() {
	ctx := context.Background()
	cl, err := ipc.DialHome(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()

	_, err = cl.Get(ctx, "no-such-job")
	fmt.Println(errors.Is(err, ipc.ErrNotFound))
	// Output: true
}

// List every job of a queue, newest first, a page at a time.
func ExampleClient_ListAll() {
	ctx := context.Background()
	cl, err := ipc.DialHome(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()

	hour := engine.Duration(time.Hour)
	for i := range 5 {
		if _, err := cl.Enqueue(ctx, engine.EnqueueRequest{Type: "noop", Queue: "listed", Subject: fmt.Sprint("file", i), Delay: &hour}); err != nil {
			log.Fatal(err)
		}
	}
	for job, err := range cl.ListAll(ctx, ipc.ListParams{Queue: "listed", Limit: 2}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(job.Subject, job.State)
	}
	// Output:
	// file4 QUEUED
	// file3 QUEUED
	// file2 QUEUED
	// file1 QUEUED
	// file0 QUEUED
}
