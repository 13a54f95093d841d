package ipc

import (
	"encoding/json"
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

// admitEnqueues takes n enqueues from the connection's and the server's
// buckets, all at once: a batch is admitted whole or not at all, and a
// refused request consumes nothing from either.
func (c *conn) admitEnqueues(n int) error {
	now := time.Now()
	// Arrays, not slices: this runs for every enqueue and allocates nothing.
	limits := [...]*rate.Limiter{c.connLimit(), c.srv.enqLimit}
	for _, l := range limits {
		if !fitsBurst(l, n) {
			return rpcErr(CodeLimitExceeded, "%d enqueues in one request, over the enqueue rate limit's burst of %d; send smaller batches", n, l.Burst())
		}
	}
	var granted [len(limits)]*rate.Reservation
	for i, l := range limits {
		if l == nil {
			continue // a conn or server built without limits (tests)
		}
		r := l.ReserveN(now, n)
		d := time.Second
		if r.OK() {
			d = r.DelayFrom(now)
		}
		if d > 0 {
			// Give back this bucket's tokens and those the buckets before
			// it granted.
			r.CancelAt(now)
			for _, g := range granted[:i] {
				if g != nil {
					g.CancelAt(now)
				}
			}
			c.srv.opts.Observer.RateLimited()
			return rateLimited(d)
		}
		granted[i] = r
	}
	return nil
}

func rateLimited(d time.Duration) *RPCError {
	// Round up: a client that waits exactly this long must get through.
	ms := max(int64((d+time.Millisecond-1)/time.Millisecond), 1)
	e := rpcErr(CodeRateLimited, "rate limited: too many enqueues; retry in %dms", ms)
	e.Data, _ = json.Marshal(RateLimitedData{RetryAfterMS: ms})
	return e
}
