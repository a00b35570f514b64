// Command devstack starts DynamoDB Local and valkey-server on loopback and, if given a
// command after "--", runs it with FS_DYNAMODB_ENDPOINT and FS_VALKEY_ADDRS pointing at
// them. Everything stops when the command exits or on Ctrl-C. `make run` uses it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/dsfeatures/featurestore/internal/devstack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "devstack:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("devstack", flag.ContinueOnError)
	fset.SetOutput(stderr)
	ddbPort := fset.Int("dynamodb-port", 8000, "DynamoDB Local port (0: a free one)")
	vkPort := fset.Int("valkey-port", 6380, "valkey-server port (0: a free one)")
	maxmem := fset.String("valkey-maxmemory", "256mb", "valkey maxmemory (allkeys-lru)")
	if err := fset.Parse(args); err != nil {
		return err
	}
	dir, err := devstack.FindDynamoDBLocal(getenv)
	if err != nil {
		return err
	}
	bin, err := devstack.FindValkeyServer(getenv)
	if err != nil {
		return err
	}
	ddb, err := devstack.StartDynamoDB(ctx, dir, *ddbPort, nil)
	if err != nil {
		return fmt.Errorf("%w (is port %d taken? try -dynamodb-port 0)", err, *ddbPort)
	}
	defer ddb.Stop()
	vk, err := devstack.StartValkey(ctx, bin, devstack.ValkeyOptions{Port: *vkPort, MaxMemory: *maxmem})
	if err != nil {
		return fmt.Errorf("%w (is port %d taken? try -valkey-port 0)", err, *vkPort)
	}
	defer vk.Stop()
	fmt.Fprintf(stdout, "DynamoDB Local: %s\nvalkey-server:  %s\n", ddb.Endpoint, vk.Addr)

	if fset.NArg() == 0 {
		fmt.Fprintf(stdout, "export FS_DYNAMODB_ENDPOINT=%s FS_VALKEY_ADDRS=%s\nPress Ctrl-C to stop.\n", ddb.Endpoint, vk.Addr)
		<-ctx.Done()
		return nil
	}
	cmd := exec.Command(fset.Arg(0), fset.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	cmd.Env = append(os.Environ(), "FS_DYNAMODB_ENDPOINT="+ddb.Endpoint, "FS_VALKEY_ADDRS="+vk.Addr)
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGTERM)
		return <-done
	}
}
