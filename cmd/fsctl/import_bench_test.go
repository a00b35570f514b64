package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/dsfeatures/featurestore/internal/devstack"
)

var importRows = flag.Int("import.rows", 100_000, "rows in BenchmarkImportParquet's file (make bench-import uses 1000000)")

type benchRow struct {
	EntityID  string    `parquet:"entity_id"`
	EventTime int64     `parquet:"event_time,timestamp(microsecond)"`
	Trips     int64     `parquet:"trips"`
	Rating    float64   `parquet:"rating"`
	City      string    `parquet:"city"`
	Embedding []float32 `parquet:"embedding,list"`
}

// writeParquet writes n rows in row groups of 64k, streaming, so the generator itself
// stays small too.
func writeParquet(b *testing.B, path string, n int) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := parquet.NewGenericWriter[benchRow](f, parquet.MaxRowsPerRowGroup(64<<10))
	at := time.Now().Add(-time.Minute).UnixMicro()
	buf := make([]benchRow, 0, 4096)
	for i := 0; i < n; i++ {
		buf = append(buf, benchRow{EntityID: "driver-" + strconv.Itoa(i), EventTime: at, Trips: int64(i % 50), Rating: 4 + float64(i%10)/10, City: "city-" + strconv.Itoa(i%100), Embedding: []float32{float32(i % 7), 0.5, 0.25}})
		if len(buf) == cap(buf) || i == n-1 {
			if _, err := w.Write(buf); err != nil {
				b.Fatal(err)
			}
			buf = buf[:0]
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	f.Close()
}

// peakRSS reads a process's peak resident set size (VmHWM) in MiB.
func peakRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return -1
}

// BenchmarkImportParquet imports a generated Parquet file with `fsctl import` into a real
// server process (built from this tree) on the real stack, and reports rows/s and the
// server's peak RSS: memory must stay bounded whatever the file's size.
func BenchmarkImportParquet(b *testing.B) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "featurestore")
	if out, err := exec.Command("go", "build", "-o", bin, "../featurestore").CombinedOutput(); err != nil {
		b.Fatalf("build server: %v\n%s", err, out)
	}
	file := filepath.Join(dir, "rows.parquet")
	writeParquet(b, file, *importRows)
	st, _ := os.Stat(file)
	b.Logf("%d rows, %.1f MiB of Parquet", *importRows, float64(st.Size())/(1<<20))

	ctx := context.Background()
	vk, err := devstack.StartValkey(ctx, shared.ValkeyBin, devstack.ValkeyOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer vk.Stop()
	srv := exec.Command(bin, "-listen", "127.0.0.1:0", "-dynamodb-endpoint", shared.DynamoDB.Endpoint,
		"-valkey", vk.Addr, "-table-prefix", devstack.UniquePrefix("import"), "-log-level", "warn", "-metrics-listen=")
	stdout, _ := srv.StdoutPipe()
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { srv.Process.Signal(os.Interrupt); srv.Wait() }()
	sc := bufio.NewScanner(stdout)
	addr := ""
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
			addr = a
			break
		}
	}
	go io.Copy(io.Discard, stdout)
	if addr == "" {
		b.Fatal("server did not start")
	}
	setFile := filepath.Join(dir, "set.yaml")
	os.WriteFile(setFile, []byte("name: drivers\nentity_type: driver\nfeatures:\n  - {name: trips, type: int64}\n  - {name: rating, type: double}\n  - {name: city, type: string}\n  - {name: embedding, type: float_list}\n"), 0o644)
	if _, err := fsctl(&testing.T{}, addr, "apply", setFile); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		var out bytes.Buffer
		err := run(ctx, []string{"-addr", addr, "import", "-set", "drivers", file}, func(string) string { return "" }, nil, &out, os.Stderr)
		if err != nil {
			b.Fatal(err)
		}
		if !strings.Contains(out.String(), fmt.Sprintf("%d rows: %d written, 0 stale, 0 rejected", *importRows, *importRows)) &&
			!strings.Contains(out.String(), fmt.Sprintf("%d rows: 0 written", *importRows)) && i == 0 {
			b.Fatalf("import summary: %s", out.String())
		}
		b.ReportMetric(float64(*importRows)/time.Since(start).Seconds(), "rows/s")
	}
	b.ReportMetric(peakRSS(srv.Process.Pid), "server-peak-RSS-MiB")
}
