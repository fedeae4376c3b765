//go:build !unix

package main

import "time"

// processCPU is not measured off Unix (getrusage is unavailable): it
// returns 0.
func processCPU() time.Duration { return 0 }
