package workercmd

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseQueues(t *testing.T) {
	for _, tc := range []struct {
		in    string
		names []string
		caps  map[string]int
		bad   bool
	}{
		{in: "*"},
		{in: "a,b", names: []string{"a", "b"}},
		{in: "emails=5, default=20,x", names: []string{"emails", "default", "x"}, caps: map[string]int{"emails": 5, "default": 20}},
		{in: "emails=0", bad: true},
		{in: "emails=x", bad: true},
		{in: "=3", bad: true},
	} {
		names, caps, err := parseQueues(tc.in)
		if (err != nil) != tc.bad {
			t.Errorf("%q: err %v, want error %v", tc.in, err, tc.bad)
			continue
		}
		if diff := cmp.Diff(tc.names, names); diff != "" {
			t.Errorf("%q: queues (-want +got):\n%s", tc.in, diff)
		}
		if diff := cmp.Diff(tc.caps, caps); diff != "" {
			t.Errorf("%q: caps (-want +got):\n%s", tc.in, diff)
		}
	}
}
