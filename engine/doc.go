// Package engine is the domain core of stq: the Job and its state machine,
// the supersede, priority and retry rules, and the worker loop. It defines the
// interfaces it needs (Store, Executor, Processes, Clock) and imports none of
// the packages that implement them.
package engine
