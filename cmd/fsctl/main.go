// Command fsctl is the feature store's command-line client: apply and list feature sets,
// write a row, read features, and create the DynamoDB tables.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "fsctl:", err)
		}
		os.Exit(1)
	}
}

const usage = `Usage: fsctl [-addr HOST:PORT] [-o text|json] COMMAND [ARGS]

Commands:
  apply FILE                      apply a feature set from a YAML or JSON file
  sets                            list feature sets
  set NAME                        show one feature set
  write -set S -entity E [-subject ID] [-time RFC3339] NAME=VALUE...
                                  write one row (values parsed by the features' types;
                                  lists are comma-separated, bytes are base64)
  get -features S:F,... -entities E,...
                                  read features for entities
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

Global flags:
`

type globals struct {
	addr   string
	output string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	g := globals{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	fset := flag.NewFlagSet("fsctl", flag.ContinueOnError)
	fset.SetOutput(stderr)
	def := getenv("FSCTL_ADDR")
	if def == "" {
		def = "127.0.0.1:50051"
	}
	fset.StringVar(&g.addr, "addr", def, "feature store address ($FSCTL_ADDR)")
	fset.StringVar(&g.output, "o", "text", "output format: text or json")
	fset.Usage = func() {
		fmt.Fprint(stderr, usage)
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); err != nil {
		return err
	}
	if g.output != "text" && g.output != "json" {
		return fmt.Errorf("-o: want text or json, got %q", g.output)
	}
	if fset.NArg() == 0 {
		fset.Usage()
		return flag.ErrHelp
	}
	cmd, rest := fset.Arg(0), fset.Args()[1:]
	switch cmd {
	case "apply":
		return cmdApply(ctx, g, rest)
	case "sets", "list":
		return cmdSets(ctx, g, rest)
	case "set":
		return cmdSet(ctx, g, rest)
	case "write":
		return cmdWrite(ctx, g, rest)
	case "get":
		return cmdGet(ctx, g, rest)
	case "import":
		return cmdImport(ctx, g, rest)
	case "stream":
		return cmdStream(ctx, g, rest)
	case "gdpr":
		return cmdGdpr(ctx, g, rest)
	case "create-tables":
		return cmdCreateTables(ctx, g, rest)
	case "help":
		fset.Usage()
		return nil
	}
	return fmt.Errorf("unknown command %q; run 'fsctl help'", cmd)
}
