package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/dsfeatures/featurestore/featurestore/client"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

func cmdGdpr(ctx context.Context, g *globals, args []string) error {
	const synopsis = "gdpr delete SUBJECT [-reason R] [-wait] | gdpr status ID [-wait]"
	if len(args) == 0 {
		return usageErrorf("usage: fsctl %s", synopsis)
	}
	sub := args[0]
	if sub == "-h" || sub == "-help" || sub == "--help" {
		fmt.Fprintf(g.stdout, "Usage: fsctl %s\n\nRun 'fsctl gdpr delete -h' or 'fsctl gdpr status -h' for their flags.\n", synopsis)
		return flag.ErrHelp
	}
	var fset *flag.FlagSet
	var reason *string
	switch sub {
	case "delete":
		fset = g.newFlagSet("gdpr delete", "gdpr delete SUBJECT [-reason R] [-wait] [-timeout D]")
		reason = fset.String("reason", "", "why (kept in the audit trail)")
	case "status":
		fset = g.newFlagSet("gdpr status", "gdpr status ID [-wait] [-timeout D]")
	default:
		return usageErrorf("unknown gdpr command %q (want delete or status)", sub)
	}
	wait := fset.Bool("wait", false, "wait until the deletion is done, with a spinner on a terminal")
	timeout := fset.Duration("timeout", 10*time.Minute, "give up waiting after this long")
	pos, err := g.parse(fset, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("usage: fsctl %s", g.commandSynopsis)
	}
	c, err := g.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	var d *pb.Deletion
	if sub == "delete" {
		if d, err = c.DeleteSubject(ctx, pos[0], *reason); err != nil {
			return rpcError(err)
		}
		if g.output == "text" {
			fmt.Fprintf(g.stdout, "deletion %s filed (%s); check with: fsctl gdpr status %s\n", d.GetId(), stateName(d), d.GetId())
		}
	} else if d, err = c.GetDeletion(ctx, pos[0]); err != nil {
		return rpcError(err)
	}
	if *wait {
		wctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		if d, err = waitDeletion(wctx, c, d, g.stderr); err != nil {
			return err
		}
	}
	if g.output == "json" {
		return printJSON(g, d)
	}
	fmt.Fprintf(g.stdout, "id: %s\nstate: %s\nitems_deleted: %d\nrequested_at: %s\n", d.GetId(), stateName(d), d.GetItemsDeleted(), d.GetRequestedAt().AsTime().UTC().Format(time.RFC3339))
	if d.GetCompletedAt() != nil {
		fmt.Fprintf(g.stdout, "completed_at: %s\n", d.GetCompletedAt().AsTime().UTC().Format(time.RFC3339))
	}
	if d.GetFailureReason() != "" {
		fmt.Fprintf(g.stdout, "failure_reason: %s\n", d.GetFailureReason())
	}
	return nil
}

func stateName(d *pb.Deletion) string {
	return strings.ToLower(strings.TrimPrefix(d.GetState().String(), "DELETION_STATE_"))
}

// waitDeletion polls until the job is done or failed: a spinner on a terminal, a line per
// change of state or count otherwise.
func waitDeletion(ctx context.Context, c *client.Client, d *pb.Deletion, w io.Writer) (*pb.Deletion, error) {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	frames := []string{"|", "/", "-", "\\"}
	last := ""
	for i := 0; ; i++ {
		st := d.GetState()
		if st == pb.DeletionState_DELETION_STATE_DONE || st == pb.DeletionState_DELETION_STATE_FAILED {
			if tty {
				fmt.Fprintf(w, "\r%-60s\r", "")
			}
			if st == pb.DeletionState_DELETION_STATE_FAILED {
				if r := d.GetFailureReason(); r != "" {
					return d, fmt.Errorf("deletion %s failed: %s (file it again with gdpr delete)", d.GetId(), r)
				}
				return d, fmt.Errorf("deletion %s failed", d.GetId())
			}
			return d, nil
		}
		line := fmt.Sprintf("deletion %s: %s, %d items deleted", d.GetId(), stateName(d), d.GetItemsDeleted())
		if tty {
			fmt.Fprintf(w, "\r%s %s", frames[i%len(frames)], line)
		} else if line != last {
			fmt.Fprintln(w, line)
		}
		last = line
		select {
		case <-ctx.Done():
			return d, fmt.Errorf("still %s after waiting: %w", stateName(d), ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
		next, err := c.GetDeletion(ctx, d.GetId())
		if err != nil {
			return d, rpcError(err)
		}
		d = next
	}
}
