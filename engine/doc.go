// Package engine is stq's domain: jobs and their states, the supersede,
// priority and retry rules, and the dispatcher and workers that run jobs.
// It owns the interfaces its adapters implement and imports no stq package.
package engine
