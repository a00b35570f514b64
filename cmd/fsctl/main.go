// Command fsctl is the feature store's command-line client: apply, list, show and retire
// feature sets, write, read and delete rows, import files, stream JSON Lines, file GDPR
// deletions, and create the DynamoDB tables.
//
// Exit status: 0 on success (also for -h and help), 1 when the command failed, 2 when
// it was called wrongly (unknown command or flag, missing argument, conflicting flags).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/dsfeatures/featurestore/featurestore/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := realMain(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// realMain runs fsctl and returns its exit status, reporting errors on stderr.
func realMain(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := run(ctx, args, getenv, stdin, stdout, stderr)
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "fsctl: %v\nRun 'fsctl help' for usage.\n", err)
		return 2
	default:
		fmt.Fprintln(stderr, "fsctl:", err)
		return 1
	}
}

// usageError is a command called wrongly: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usageErrorf(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

const usage = `Usage: fsctl [GLOBAL FLAGS] COMMAND [ARGS] [FLAGS]

Commands:
  apply FILE                      apply a feature set from a YAML or JSON file (also the
                                  output of 'fsctl set NAME -o yaml' or '-o json')
  sets [-page-size N]             list feature sets (every page)
  set NAME                        show one feature set (-o yaml gives a file for apply)
  retire NAME -yes                retire a feature set: its rows stop being served and the
                                  name can never be applied again
  write -set S -entity E [-subject ID] [-time RFC3339] NAME=VALUE...
                                  write one row (values parsed by the features' types;
                                  lists are comma-separated, bytes are base64)
  get -features S:F,... -entities E,...
                                  read features for entities
  delete -set S ENTITY...         delete entities' rows from a feature set
  import -set S [-format csv|jsonl|parquet] FILE
                                  write a file on the batch lane, with progress and a summary;
                                  columns map to features by name (plus entity_id, subject_id,
                                  event_time as RFC 3339 or Unix seconds; default now)
  stream -set S < rows.jsonl      write JSON Lines from stdin on the streaming lane
  gdpr delete SUBJECT [-reason R] [-wait]
                                  erase a data subject (durable when it returns)
  gdpr status ID [-wait]          a deletion's state; -wait shows a spinner until done
  create-tables [-dynamodb-endpoint URL] [-region R] [-table-prefix P]
                                  create the DynamoDB tables, GSI and TTL (idempotent)
  help [COMMAND]                  this text, or a command's flags

Global flags go before or after the command. A DNS name is balanced over all its
addresses. Plaintext is used only for a loopback -addr unless -insecure is given; any
other address gets TLS (the system's roots, or -tls-ca). Prefer FSCTL_TOKEN to -token:
a flag is visible to other users in the process list.

Exit status: 0 success, 1 failure, 2 wrong usage.

Global flags:
`

// globals are the flags every command accepts, and fsctl's environment.
type globals struct {
	addr, output                      string
	tlsCA, tlsCert, tlsKey, tlsServer string
	token                             string
	insecure                          bool
	stdin                             io.Reader
	stdout, stderr                    io.Writer
	getenv                            func(string) string
	// globalNames are the flags register added, to tell them from a command's own in help.
	globalNames []string
	// commandName and commandSynopsis describe the command being parsed.
	commandName, commandSynopsis string
}

// newGlobals takes the global flags' defaults from the environment.
func newGlobals(getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) (*globals, error) {
	g := &globals{
		addr: envOr(getenv, "FSCTL_ADDR", "127.0.0.1:50051"), output: "text",
		tlsCA: getenv("FSCTL_TLS_CA"), tlsCert: getenv("FSCTL_TLS_CERT"), tlsKey: getenv("FSCTL_TLS_KEY"),
		tlsServer: getenv("FSCTL_TLS_SERVER_NAME"), token: strings.TrimSpace(getenv("FSCTL_TOKEN")),
		stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv,
	}
	if v := getenv("FSCTL_INSECURE"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, usageErrorf("FSCTL_INSECURE=%q: want true or false", v)
		}
		g.insecure = b
	}
	return g, nil
}

// register adds the global flags to fs, defaulting to their current values, so that a
// flag given before the command survives the command's own parse.
func (g *globals) register(fs *flag.FlagSet) {
	before := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { before[f.Name] = true })
	fs.StringVar(&g.addr, "addr", g.addr, "feature store address, host:port ($FSCTL_ADDR)")
	fs.StringVar(&g.output, "o", g.output, "output: text or json (set also takes yaml)")
	fs.StringVar(&g.tlsCA, "tls-ca", g.tlsCA, "PEM CA certificates that verify the server; turns TLS on ($FSCTL_TLS_CA)")
	fs.StringVar(&g.tlsCert, "tls-cert", g.tlsCert, "PEM client certificate for mutual TLS, with -tls-key ($FSCTL_TLS_CERT)")
	fs.StringVar(&g.tlsKey, "tls-key", g.tlsKey, "PEM key of -tls-cert ($FSCTL_TLS_KEY)")
	fs.StringVar(&g.tlsServer, "tls-server-name", g.tlsServer, "name the server certificate must carry, e.g. through a port-forward ($FSCTL_TLS_SERVER_NAME)")
	fs.Var(secret{&g.token}, "token", "bearer `token` sent with every call ($FSCTL_TOKEN, preferred)")
	fs.BoolVar(&g.insecure, "insecure", g.insecure, "allow plaintext (and a token over it) to a non-loopback address ($FSCTL_INSECURE)")
	g.globalNames = g.globalNames[:0]
	fs.VisitAll(func(f *flag.Flag) {
		if !before[f.Name] {
			g.globalNames = append(g.globalNames, f.Name)
		}
	})
}

// secret is a flag value that help never prints (a token from FSCTL_TOKEN would
// otherwise show as the flag's default).
type secret struct{ p *string }

func (s secret) String() string { return "" }

func (s secret) Set(v string) error {
	*s.p = strings.TrimSpace(v)
	return nil
}

// newFlagSet is a command's flag set, with the global flags. Parse it with g.parse.
func (g *globals) newFlagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("fsctl "+name, flag.ContinueOnError)
	// Errors and help are reported by parse, once, in fsctl's own words.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	g.commandName, g.commandSynopsis = name, synopsis
	return fs
}

// parse parses fs's flags wherever they are among args (flags may follow positional
// arguments; "--" ends the flags) and returns the positional arguments. -h prints the
// command's help and returns flag.ErrHelp; a bad flag or flag value is a usageError.
func (g *globals) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	g.register(fs)
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			g.printCommandHelp(fs)
			return nil, flag.ErrHelp
		}
		if err != nil {
			return nil, usageErrorf("%s: %v", fs.Name(), err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	return pos, g.check()
}

// check rejects global flag values that cannot work together.
func (g *globals) check() error {
	switch g.output {
	case "text", "json":
	case "yaml":
		if g.commandName != "set" {
			return usageErrorf("-o yaml is only for 'fsctl set'; %s takes text or json", g.commandName)
		}
	default:
		return usageErrorf("-o: want text or json, got %q", g.output)
	}
	if g.insecure && (g.tlsCA != "" || g.tlsCert != "" || g.tlsKey != "" || g.tlsServer != "") {
		return usageErrorf("-insecure (plaintext) cannot be combined with -tls-ca, -tls-cert, -tls-key or -tls-server-name")
	}
	if (g.tlsCert == "") != (g.tlsKey == "") {
		return usageErrorf("-tls-cert and -tls-key go together")
	}
	return nil
}

func (g *globals) printCommandHelp(fs *flag.FlagSet) {
	fmt.Fprintf(g.stdout, "Usage: fsctl %s\n", g.commandSynopsis)
	own := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	fs.VisitAll(func(f *flag.Flag) {
		if !slices.Contains(g.globalNames, f.Name) {
			own.Var(f.Value, f.Name, f.Usage)
		}
	})
	n := 0
	own.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(g.stdout, "\nFlags:")
		own.SetOutput(g.stdout)
		own.PrintDefaults()
	}
	fmt.Fprintln(g.stdout, "\nGlobal flags (-addr, -o, -tls-*, -token, -insecure) are listed by 'fsctl help'.")
}

// dial connects through the client library with the global flags.
func (g *globals) dial() (*client.Client, error) {
	return client.Dial(g.addr, client.Options{
		Insecure: g.insecure, CAFile: g.tlsCA, CertFile: g.tlsCert, KeyFile: g.tlsKey,
		ServerName: g.tlsServer, Token: g.token,
	})
}

// command returns the implementation of a command name.
func command(name string) (func(context.Context, *globals, []string) error, bool) {
	switch name {
	case "apply":
		return cmdApply, true
	case "sets", "list":
		return cmdSets, true
	case "set":
		return cmdSet, true
	case "retire":
		return cmdRetire, true
	case "write":
		return cmdWrite, true
	case "get":
		return cmdGet, true
	case "delete":
		return cmdDelete, true
	case "import":
		return cmdImport, true
	case "stream":
		return cmdStream, true
	case "gdpr":
		return cmdGdpr, true
	case "create-tables":
		return cmdCreateTables, true
	}
	return nil, false
}

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	g, err := newGlobals(getenv, stdin, stdout, stderr)
	if err != nil {
		return err
	}
	top := flag.NewFlagSet("fsctl", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	top.Usage = func() {}
	g.register(top)
	printUsage := func(w io.Writer) {
		fmt.Fprint(w, usage)
		top.SetOutput(w)
		top.PrintDefaults()
		top.SetOutput(io.Discard)
	}
	switch err := top.Parse(args); {
	case errors.Is(err, flag.ErrHelp):
		printUsage(stdout)
		return flag.ErrHelp
	case err != nil:
		return usageErrorf("%v", err)
	}
	if top.NArg() == 0 {
		printUsage(stderr)
		return usageErrorf("no command given")
	}
	name, rest := top.Arg(0), top.Args()[1:]
	if name == "help" {
		if len(rest) == 0 {
			printUsage(stdout)
			return nil
		}
		name, rest = rest[0], []string{"-h"}
	}
	cmd, ok := command(name)
	if !ok {
		return usageErrorf("unknown command %q", name)
	}
	return cmd(ctx, g, rest)
}

func envOr(getenv func(string) string, k, def string) string {
	if v := getenv(k); v != "" {
		return v
	}
	return def
}
