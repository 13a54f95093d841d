package engine

import "testing"

func TestAJobEventSubscriberIsNotCutOffByOutput(t *testing.T) {
	t.Parallel()
	b := newBus()
	jobs := b.subscribe(EventFilter{Kind: EventJob})
	all := b.subscribe(EventFilter{})
	line := &LogLine{Text: "spam"}
	for i := 0; i < 2*subscriberBuffer; i++ {
		b.publish(Event{Kind: EventLog, JobID: "noisy", Line: line})
	}
	b.publish(Event{Kind: EventJob, JobID: "quiet", Job: &Job{ID: "quiet", State: StateDone}})
	if !all.Lagged() {
		t.Fatal("an unfiltered subscriber that never reads was not cut off")
	}
	if jobs.Lagged() {
		t.Fatal("a job-event subscriber was cut off by log lines it does not want")
	}
	if ev := <-jobs.C; ev.JobID != "quiet" || ev.Kind != EventJob {
		t.Fatalf("job subscriber got %+v", ev)
	}
}
