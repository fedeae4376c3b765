package tasks

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// UniqueOpts makes a task unique (WithUnique): while a task with the same
// unique key exists in one of Statuses, Enqueue returns that task instead
// of a new one (Result.Duplicate is then true).
//
// The key is built from the task's name plus the parts chosen here; with
// none chosen, at most one task of that name exists at a time in Statuses.
type UniqueOpts struct {
	// ByArgs adds the arguments (their canonical JSON: object keys sorted)
	// to the key.
	ByArgs bool
	// ByQueue adds the queue to the key.
	ByQueue bool
	// ByPeriod adds the period of the enqueue time to the key: with an
	// hour, at most one task per clock hour (UTC, counted from the Unix
	// epoch). Zero leaves time out; otherwise at least one second.
	ByPeriod time.Duration
	// Key adds an explicit key (for example a user id) to the key.
	Key string
	// Statuses are the statuses in which an existing task makes a new one a
	// duplicate. Empty means READY and RUNNING. Any set given must contain
	// both READY and RUNNING (a task moves between them on retries and
	// rescues); SUCCESSFUL, FAILED and CANCELLED may be added.
	Statuses []Status
}

// StatusMask is a set of statuses as a bit mask: the form in which a unique
// task's statuses are handed to backends (EnqueueRequest.UniqueStatuses)
// and stored by the database backend.
type StatusMask uint8

// DefaultUniqueStatuses is the statuses of a unique task unless
// UniqueOpts.Statuses says otherwise: READY and RUNNING.
const DefaultUniqueStatuses = StatusMask(1<<0 | 1<<1)

// Bit returns the bit of s in a StatusMask: READY 1, RUNNING 2,
// SUCCESSFUL 4, FAILED 8, CANCELLED 16; 0 for an invalid status.
func (s Status) Bit() StatusMask {
	switch s {
	case StatusReady:
		return 1 << 0
	case StatusRunning:
		return 1 << 1
	case StatusSuccessful:
		return 1 << 2
	case StatusFailed:
		return 1 << 3
	case StatusCancelled:
		return 1 << 4
	}
	return 0
}

// MaskOf returns the set of ss.
func MaskOf(ss ...Status) StatusMask {
	var m StatusMask
	for _, s := range ss {
		m |= s.Bit()
	}
	return m
}

// Has reports whether s is in m.
func (m StatusMask) Has(s Status) bool { return s.Bit() != 0 && m&s.Bit() != 0 }

// WithUnique makes the task unique (see UniqueOpts), at definition or per
// call with Using. It requires a backend with CanUnique. Invalid options
// (statuses without READY or RUNNING, an invalid status, a negative or
// sub-second period) make Define panic and Enqueue of a Using copy fail,
// with ErrInvalidTask.
func WithUnique(u UniqueOpts) Option {
	return func(o *options) {
		c := u
		c.Statuses = slices.Clone(u.Statuses)
		o.unique = &c
	}
}

// validateUnique reports invalid unique options.
func validateUnique(u *UniqueOpts) error {
	if u == nil {
		return nil
	}
	if u.ByPeriod < 0 || (u.ByPeriod > 0 && u.ByPeriod < time.Second) {
		return invalidf("unique period %v must be zero or at least one second", u.ByPeriod)
	}
	for _, s := range u.Statuses {
		if !s.Valid() {
			return invalidf("unique status %q is not a status", s)
		}
	}
	if len(u.Statuses) > 0 {
		if m := MaskOf(u.Statuses...); !m.Has(StatusReady) || !m.Has(StatusRunning) {
			return invalidf("unique statuses %v must include READY and RUNNING", u.Statuses)
		}
	}
	return nil
}

// uniqueMask returns the statuses of u as a mask.
func uniqueMask(u *UniqueOpts) StatusMask {
	if len(u.Statuses) == 0 {
		return DefaultUniqueStatuses
	}
	return MaskOf(u.Statuses...)
}

// UniqueKey returns the unique key of a task named name with u, enqueued
// at now to queue with the JSON arguments args: the hex SHA-256 of the name
// and the parts u chooses. Backends compare keys, never recompute them.
func UniqueKey(u UniqueOpts, name, queue string, args json.RawMessage, now time.Time) (string, error) {
	parts := []string{"name", name}
	if u.ByArgs {
		canon, err := canonicalJSON(args)
		if err != nil {
			return "", invalidf("task %q: unique by args: %v", name, err)
		}
		parts = append(parts, "args", string(canon))
	}
	if u.ByQueue {
		parts = append(parts, "queue", queue)
	}
	if u.ByPeriod > 0 {
		p := int64(u.ByPeriod / time.Second)
		sec := now.Unix()
		start := sec - ((sec%p)+p)%p // floor, also before 1970
		parts = append(parts, "period", strconv.FormatInt(start, 10))
	}
	if u.Key != "" {
		parts = append(parts, "key", u.Key)
	}
	enc, err := json.Marshal(parts) // unambiguous separation of the parts
	if err != nil {
		return "", fmt.Errorf("unique key: %w", err)
	}
	sum := sha256.Sum256(enc)
	return hex.EncodeToString(sum[:]), nil
}

// canonicalJSON re-encodes raw with object keys sorted and numbers kept as
// written, so that equal arguments give equal bytes.
func canonicalJSON(raw json.RawMessage) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// DefaultBackoff waits attempt⁴ + 5 seconds (django-background-tasks), with
// ±10 % uniform jitter: the documented shape on average, while a burst of
// tasks that failed together does not retry together (River's choice).
// Full jitter (uniform in 0..delay) would spread a burst more but make the
// early retries far shorter than documented. ExactBackoff is the same
// without jitter, for code that needs determinism.
func DefaultBackoff(attempt int) time.Duration { return defaultJittered(attempt) }

var defaultJittered = Jitter(ExactBackoff, 0.1)

// ExactBackoff waits exactly attempt⁴ + 5 seconds: DefaultBackoff without
// its jitter.
func ExactBackoff(attempt int) time.Duration {
	a := time.Duration(attempt)
	return (a*a*a*a + 5) * time.Second
}

// Jitter returns b with uniform jitter of ±fraction (0.1 for ±10 %): each
// delay is b's multiplied by a random factor in [1−fraction, 1+fraction].
// fraction is clamped to 0..1; a zero, negative or NaN fraction returns b
// itself.
func Jitter(b Backoff, fraction float64) Backoff {
	switch {
	case !(fraction > 0): // NaN too
		return b
	case fraction > 1:
		fraction = 1
	}
	return func(attempt int) time.Duration {
		d := b(attempt)
		f := 1 + fraction*(2*rand.Float64()-1)
		return time.Duration(float64(d) * f)
	}
}
