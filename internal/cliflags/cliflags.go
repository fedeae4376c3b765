// Package cliflags holds what the gotasks commands (dbworker, prune) share
// about their flags.
package cliflags

import (
	"flag"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// PrintFlags is flag.PrintDefaults in the --flag style that the commands'
// usage texts and the docs use (the flag package accepts both -flag and
// --flag).
func PrintFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		var b strings.Builder
		b.WriteString("  --" + f.Name)
		if arg != "" {
			b.WriteString(" " + arg)
		}
		b.WriteString("\n    \t")
		b.WriteString(strings.ReplaceAll(usage, "\n", "\n    \t"))
		if d := f.DefValue; d != "" && d != "0" && d != "0s" && d != "false" {
			if reflect.TypeOf(f.Value).String() == "*flag.stringValue" {
				d = fmt.Sprintf("%q", d)
			}
			fmt.Fprintf(&b, " (default %s)", d)
		}
		fmt.Fprintln(w, b.String())
	})
}
