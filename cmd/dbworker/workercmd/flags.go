package workercmd

import (
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/cliflags"
	"github.com/gotasks/gotasks/tasks"
)

// Flags and logging shared by the sub-commands.

type common struct {
	dsn, backend, logLevel, logFormat string
}

func (c *common) register(fs *flag.FlagSet) {
	def := os.Getenv(database.DSNEnv)
	if def == "" {
		def = database.DefaultDSN
	}
	fs.StringVar(&c.dsn, "database", def, "database DSN: sqlite:///path/tasks.db, sqlite://relative.db or postgres://… (env "+database.DSNEnv+")")
	fs.StringVar(&c.backend, "backend", tasks.DefaultBackendName, "name of the backend whose tasks to run")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
}

func (c *common) logger(stderr io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: readableDurations}
	switch c.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", c.logFormat)
}

// readableDurations is the loggers' ReplaceAttr: a time.Duration is
// written as its String() ("1.5s"), not as nanoseconds (JSON).
func readableDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// useAsDefault makes l the process's default slog logger (and the output
// of package log) until restore is called.
func useAsDefault(l *slog.Logger) (restore func()) {
	prev, prevOut, prevFlags := slog.Default(), log.Writer(), log.Flags()
	slog.SetDefault(l)
	return func() {
		slog.SetDefault(prev)
		log.SetOutput(prevOut)
		log.SetFlags(prevFlags)
	}
}

func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		cliflags.PrintFlags(stderr, fs)
	}
	return fs
}
