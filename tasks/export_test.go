package tasks

// NewFallback returns a new backend of the kind GetBackend uses for
// "default" when nothing is registered, configured with opts, so that the
// conformance suite can run against it.
func NewFallback(opts ...BackendOption) Backend {
	b := newFallback()
	b.Apply(opts...)
	return b
}
