package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
)

// flagSet is a subcommand's flags, with the environment as a fallback:
// every flag --some-flag may be set as TSCONNECT_SOME_FLAG. The order is
// command line, then environment, then default.
type flagSet struct {
	*flag.FlagSet
	usage    string            // synopsis, description and examples
	groups   []string          // section titles for the flag list, in order
	groupOf  map[string]string // flag name -> section title
	explicit map[string]bool   // flags given on the command line
}

func newFlagSet(name, usage string) *flagSet {
	fs := &flagSet{
		FlagSet: flag.NewFlagSet("tsconnect "+name, flag.ContinueOnError),
		usage:   usage,
		groupOf: map[string]string{},
	}
	fs.SetOutput(io.Discard) // errors are reported by sio.fail
	return fs
}

// section files every flag defined since the previous call under title.
func (fs *flagSet) section(title string) {
	fs.VisitAll(func(f *flag.Flag) {
		if _, ok := fs.groupOf[f.Name]; !ok {
			fs.groupOf[f.Name] = title
		}
	})
	fs.groups = append(fs.groups, title)
}

// secretFlag matches the error for an undefined flag that looks like an
// attempt to pass a secret on the command line.
var secretFlag = regexp.MustCompile(`not defined: -+(auth-?key|key|token|vault-token|vault-secret-id|secret-id|wrapped-token|vault-wrapped-token|password|proxy-password)$`)

// envName is the variable that sets flag name when it is not on the command
// line.
func envName(name string) string {
	if name == "v" {
		return "TSCONNECT_VERBOSE"
	}
	return "TSCONNECT_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// parse parses args, then fills flags not given from the environment. It
// returns done when the caller should return code at once: after --help
// (exit 0) or a usage error (exit 2, reported).
func (fs *flagSet) parse(args []string, sio stdio) (code int, done bool) {
	sub := strings.TrimPrefix(fs.Name(), "tsconnect ")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.printUsage(sio.Out)
			return exitOK, true
		}
		uerr := usageErrorf(sub, "%v", err)
		if secretFlag.MatchString(err.Error()) {
			uerr.(*exitError).hint = "a key, token or password is never a flag value (it would show in ps): use TS_AUTHKEY, --auth-key-file, Vault (--vault-path) or a --…-file flag"
		}
		return sio.fail(uerr), true
	}
	fs.explicit = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { fs.explicit[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || fs.explicit[f.Name] {
			return
		}
		name := envName(f.Name)
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = usageErrorf(sub, "%s=%q: invalid value for --%s: %v", name, v, f.Name, serr)
		}
	})
	if err != nil {
		return sio.fail(err), true
	}
	return 0, false
}

// printUsage writes the usage text and the flags, by section, with their
// environment variables.
func (fs *flagSet) printUsage(w io.Writer) {
	fmt.Fprint(w, fs.usage)
	fs.section("Other flags") // anything not yet filed
	// Output flags last, after the subcommand's own.
	groups := slices.DeleteFunc(slices.Clone(fs.groups), func(g string) bool { return g == "Output" })
	for _, g := range append(groups, "Output") {
		var b strings.Builder
		fs.VisitAll(func(f *flag.Flag) {
			if fs.groupOf[f.Name] != g {
				return
			}
			dash := "--"
			if len(f.Name) == 1 {
				dash = "-"
			}
			arg, help := flag.UnquoteUsage(f)
			fmt.Fprintf(&b, "  %s%s", dash, f.Name)
			if arg != "" {
				fmt.Fprintf(&b, " %s", arg)
			}
			fmt.Fprintf(&b, "\n        %s", strings.ReplaceAll(help, "\n", "\n        "))
			var extra []string
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
				extra = append(extra, "default "+f.DefValue)
			}
			extra = append(extra, "$"+envName(f.Name))
			fmt.Fprintf(&b, " (%s)\n", strings.Join(extra, "; "))
		})
		if b.Len() > 0 {
			fmt.Fprintf(w, "\n%s:\n%s", g, b.String())
		}
	}
}

// listFlag collects a repeatable flag's values. A value may itself be a
// comma-separated list, which is how the environment variable gives
// several.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}
