package oteltasks

// WithDepthTimeout bounds one reading of queue depths (5 s by default), so
// that a test of a backend that does not answer does not wait that long.
var WithDepthTimeout = withDepthTimeout

// WithDepthMaxAge sets how long a reading of queue depths serves further
// collections (1 s by default; 0: only those that waited for it), so that
// a test sees a change at its next collection.
var WithDepthMaxAge = withDepthMaxAge

// DepthWaiting returns how many collections wait for the reading of queue
// depths of m in flight.
func DepthWaiting(m *Middleware) int64 {
	if m.depth == nil {
		return 0
	}
	return m.depth.waiting.Load()
}

// RecordError is recordError.
var RecordError = recordError
