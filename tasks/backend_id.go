package tasks

import (
	"crypto/rand"
	"encoding/hex"
	"sync/atomic"
	"time"
)

// lastID is the time and counter of the last id made in this process:
// milliseconds << 12 | counter (the 12 bits of rand_a).
var lastID atomic.Uint64

// NewID returns a new result id: a UUIDv7 string (36 characters) that
// sorts by creation time. Within a process, ids are strictly increasing:
// ids made in the same millisecond carry a counter in their 12 rand_a bits
// (RFC 9562, section 6.2, method 1), and a millisecond whose 4,096 counter
// values are used up borrows the next one. So the order of ids is the
// order of enqueues, which the admin API's lists rely on. The core assigns
// the id of every EnqueueRequest; backends call NewID for results they
// create themselves, such as the next run of a repeating task.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[8:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	now := uint64(time.Now().UnixMilli()) << 12
	var v uint64
	for {
		last := lastID.Load()
		v = max(now, last+1)
		if lastID.CompareAndSwap(last, v) {
			break
		}
	}
	ms, seq := v>>12, v&0xfff
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	b[6], b[7] = 0x70|byte(seq>>8), byte(seq)
	b[8] = 0x80 | b[8]&0x3f
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}
