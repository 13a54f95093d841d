package ipc

// ServerObserver hears of the server's connections and refusals, for
// metrics. Calls come from the accept loop and connection goroutines, so an
// implementation must be safe for concurrent use and must not block.
type ServerObserver interface {
	// ConnOpened: a peer was let in (its uid is allowed and there was room).
	ConnOpened()
	// ConnClosed: a connection ConnOpened reported has ended.
	ConnClosed()
	// RateLimited: an enqueue request was refused with CodeRateLimited.
	RateLimited()
}

// nopServerObserver is the ServerObserver of a server given none.
type nopServerObserver struct{}

func (nopServerObserver) ConnOpened()  {}
func (nopServerObserver) ConnClosed()  {}
func (nopServerObserver) RateLimited() {}
