package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestPprof: profiles are served on the metrics listener only when -pprof is given, and
// never the command line, which may hold secrets passed as flags.
func TestPprof(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want map[string]int // path -> status
	}{
		{"off by default", nil, map[string]int{
			"/metrics": 200, "/debug/pprof/": 404, "/debug/pprof/heap": 404, "/debug/pprof/profile?seconds=1": 404,
		}},
		{"on with FS_PPROF", map[string]string{"FS_PPROF": "true"}, map[string]int{
			"/metrics": 200, "/debug/pprof/": 200, "/debug/pprof/heap?debug=1": 200, "/debug/pprof/goroutine?debug=1": 200,
			"/debug/pprof/profile?seconds=1": 200, "/debug/pprof/cmdline": 404,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServerAt(t, tc.env)
			base := strings.TrimSuffix(ts.metricsURL, "/metrics")
			for path, want := range tc.want {
				code, body := httpGet(t, base+path)
				if code != want {
					t.Errorf("GET %s: %d, want %d", path, code, want)
				}
				if path == "/debug/pprof/" && code == 200 && !strings.Contains(body, "goroutine") {
					t.Errorf("GET %s: not pprof's index: %.200s", path, body)
				}
				if strings.HasPrefix(path, "/debug/pprof/heap") && code == 200 && !strings.Contains(body, "heap profile") {
					t.Errorf("GET %s: not a heap profile: %.200s", path, body)
				}
			}
		})
	}
}

// TestPprofGuards: -pprof needs the metrics listener, and a loopback one unless -insecure.
func TestPprofGuards(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // "" means accepted
	}{
		{"no metrics listener", []string{"-pprof", "-metrics-listen="}, "set -metrics-listen"},
		{"not loopback", []string{"-pprof", "-metrics-listen=0.0.0.0:9464"}, "not a loopback address"},
		{"not loopback, insecure", []string{"-pprof", "-metrics-listen=0.0.0.0:9464", "-insecure"}, ""},
		{"loopback", []string{"-pprof", "-metrics-listen=127.0.0.1:9464"}, ""},
		{"off", []string{"-metrics-listen=0.0.0.0:9464"}, ""},
		{"spelled out", []string{"-pprof=true", "-metrics-listen=0.0.0.0:9464", "-insecure=false"}, "not a loopback address"},
		{"turned off", []string{"-pprof=false", "-metrics-listen="}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig(tc.args, func(string) string { return "" }, io.Discard)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("parseConfig(%q): %v, want an error containing %q", tc.args, err, tc.want)
			}
		})
	}
}
