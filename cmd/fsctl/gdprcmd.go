package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

func cmdGdpr(ctx context.Context, g globals, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: fsctl gdpr delete SUBJECT [-reason R] [-wait] | fsctl gdpr status ID [-wait]")
	}
	conn, err := grpc.NewClient(g.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	c := pb.NewGdprServiceClient(conn)
	fset := flag.NewFlagSet("gdpr "+args[0], flag.ContinueOnError)
	fset.SetOutput(g.stderr)
	reason := fset.String("reason", "", "why (kept in the audit trail)")
	wait := fset.Bool("wait", false, "wait until the deletion is done, with a spinner on a terminal")
	timeout := fset.Duration("timeout", 10*time.Minute, "give up waiting after this long")
	// Flags may come before or after the positional argument.
	var pos []string
	rest := args[1:]
	for len(rest) > 0 {
		if err := fset.Parse(rest); err != nil {
			return err
		}
		rest = fset.Args()
		if len(rest) > 0 {
			pos = append(pos, rest[0])
			rest = rest[1:]
		}
	}
	if len(pos) != 1 {
		return fmt.Errorf("usage: fsctl gdpr %s %s [-wait]", args[0], map[string]string{"delete": "SUBJECT [-reason R]", "status": "ID"}[args[0]])
	}
	var d *pb.Deletion
	switch args[0] {
	case "delete":
		resp, err := c.DeleteSubject(ctx, &pb.DeleteSubjectRequest{SubjectId: pos[0], Reason: *reason})
		if err != nil {
			return rpcError(err)
		}
		d = resp.GetDeletion()
		if g.output == "text" {
			fmt.Fprintf(g.stdout, "deletion %s filed (%s); check with: fsctl gdpr status %s\n", d.GetId(), stateName(d), d.GetId())
		}
	case "status":
		resp, err := c.GetDeletion(ctx, &pb.GetDeletionRequest{Id: pos[0]})
		if err != nil {
			return rpcError(err)
		}
		d = resp.GetDeletion()
	default:
		return fmt.Errorf("unknown gdpr command %q (want delete or status)", args[0])
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
	return nil
}

func stateName(d *pb.Deletion) string {
	return strings.ToLower(strings.TrimPrefix(d.GetState().String(), "DELETION_STATE_"))
}

// waitDeletion polls until the job is done or failed: a spinner on a terminal, a line per
// change of state or count otherwise.
func waitDeletion(ctx context.Context, c pb.GdprServiceClient, d *pb.Deletion, w io.Writer) (*pb.Deletion, error) {
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
		resp, err := c.GetDeletion(ctx, &pb.GetDeletionRequest{Id: d.GetId()})
		if err != nil {
			return d, rpcError(err)
		}
		d = resp.GetDeletion()
	}
}
