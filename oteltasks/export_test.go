package oteltasks

// WithDepthTimeout bounds one reading of queue depths (5 s by default), so
// that a test of a backend that does not answer does not wait that long.
var WithDepthTimeout = withDepthTimeout
