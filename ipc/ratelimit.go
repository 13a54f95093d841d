package ipc

import (
	"math"
	"time"

	"golang.org/x/time/rate"
)

// Rate limit defaults: far above what an editor hook or an agent produces
// (tens of enqueues a second), low enough that a runaway loop cannot fill
// the disk before someone notices.
const (
	DefaultEnqueueRate      = 50000 // per second, all connections together
	DefaultEnqueueBurst     = 100000
	DefaultConnEnqueueRate  = 5000 // per second, one connection
	DefaultConnEnqueueBurst = 10000
	// Failed auth attempts, all connections together: a brute-force
	// attempt is slowed to this pace and every failure is logged.
	DefaultAuthFailureRate  = 5
	DefaultAuthFailureBurst = 20
)

// RateLimits configures the token buckets; zero fields take the defaults,
// negative ones turn that limit off.
type RateLimits struct {
	EnqueueRate, EnqueueBurst         float64
	ConnEnqueueRate, ConnEnqueueBurst float64
	AuthFailureRate, AuthFailureBurst float64
}

func newLimiter(r, burst, defRate, defBurst float64) *rate.Limiter {
	return rate.NewLimiter(limiterParams(r, burst, defRate, defBurst))
}

// setLimiter gives an existing bucket new settings, as newLimiter reads
// them; the tokens it holds stay (up to the new burst).
func setLimiter(l *rate.Limiter, r, burst, defRate, defBurst float64) {
	lim, b := limiterParams(r, burst, defRate, defBurst)
	l.SetLimit(lim)
	l.SetBurst(b)
}

func limiterParams(r, burst, defRate, defBurst float64) (rate.Limit, int) {
	switch {
	case r < 0:
		return rate.Inf, 0
	case r == 0:
		r, burst = defRate, defBurst
	case burst <= 0:
		burst = math.Max(1, r)
	}
	return rate.Limit(r), int(burst)
}

// take reserves one token now. It returns zero when the request may go
// ahead, or how long the caller should wait before trying again; a refused
// request consumes nothing.
func take(l *rate.Limiter, now time.Time) time.Duration {
	res := l.ReserveN(now, 1)
	if !res.OK() {
		return time.Second
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d
	}
	return 0
}

// fitsBurst reports whether n tokens can ever be taken at once.
func fitsBurst(l *rate.Limiter, n int) bool {
	return l == nil || l.Limit() == rate.Inf || n <= l.Burst()
}

// RateLimitedData is the error data of a CodeRateLimited reply.
type RateLimitedData struct {
	RetryAfterMS int64 `json:"retry_after_ms"`
}
