package cliflags

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ageRe splits an age into weeks, days and the rest (a Go duration).
var ageRe = regexp.MustCompile(`^(?:([0-9]+(?:\.[0-9]+)?)w)?(?:([0-9]+(?:\.[0-9]+)?)d)?(.*)$`)

// ParseAge reads an age as the commands take it: weeks and days followed by
// an optional Go duration ("2w", "7d", "1d12h", "1w2d6h30m"), or a Go
// duration ("36h", "90m"); with bareDays, also a number of days ("14",
// "1.5"). A day is 24 hours, a week 7 days. The age must be positive.
func ParseAge(s string, bareDays bool) (time.Duration, error) {
	s = strings.TrimSpace(s)
	bad := fmt.Errorf("%q: want days or weeks with an optional Go duration (1d, 2w, 1d12h) or a Go duration (30m, 2h)", s)
	if bareDays {
		bad = fmt.Errorf("%q: want a number of days (14, 1.5), days or weeks with an optional Go duration (7d, 2w, 1d12h) or a Go duration (36h, 90m)", s)
	}
	var (
		days float64
		rest string
	)
	if f, err := strconv.ParseFloat(s, 64); err == nil && bareDays {
		days = f
	} else {
		m := ageRe.FindStringSubmatch(s)
		if m == nil || (m[1] == "" && m[2] == "" && m[3] == "") {
			return 0, bad
		}
		for _, part := range []struct {
			num  string
			days float64
		}{{m[1], 7}, {m[2], 1}} {
			if part.num != "" {
				f, _ := strconv.ParseFloat(part.num, 64)
				days += f * part.days
			}
		}
		rest = m[3]
	}
	if math.IsNaN(days) || math.IsInf(days, 0) || days*24*float64(time.Hour) >= math.MaxInt64 {
		return 0, fmt.Errorf("%q: not a usable number of days", s)
	}
	d := time.Duration(math.Round(days * 24 * float64(time.Hour)))
	if rest != "" {
		if (rest[0] == '-' || rest[0] == '+') && d != 0 { // "1d-2h": a sign in the middle
			return 0, bad
		}
		r, err := time.ParseDuration(rest)
		if err != nil {
			return 0, bad
		}
		if r > 0 && d > math.MaxInt64-r {
			return 0, fmt.Errorf("%q: not a usable number of days", s)
		}
		d += r
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q: must be more than 0", s)
	}
	return d, nil
}
