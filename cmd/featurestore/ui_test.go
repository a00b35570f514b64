package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/dsfeatures/featurestore/internal/browsertest"
	"github.com/dsfeatures/featurestore/internal/testpki"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// The registry page, end to end: the real server wiring (run), sets applied and values
// written through gRPC, and a real headless Chromium signing in with the token form and
// reading the pages. With FS_UI_SCREENSHOTS=DIR the test also saves a screenshot of each
// page there (server/ui/screenshots holds the ones README shows).

const (
	uiAdminToken  = "admin-token-for-the-registry-page"
	uiViewerToken = "viewer-token-for-the-registry-page"
	// A value that runs script wherever it is not escaped: it would set the title and a
	// global, and an image error handler would too.
	scriptValue = `<script>window.__pwned=1;document.title="pwned"</script><img src=x onerror="window.__pwned=2">`
)

const uiPolicy = `
tokens:
  - {identity: admin, token: ` + uiAdminToken + `}
  - {identity: viewer, token: ` + uiViewerToken + `}
rules:
  admin:  {read: ["*"], write: ["*"], apply: true, gdpr: true}
  viewer: {read: [driver_stats, web_sessions]}
`

// uiStack is a server with an access policy, its page's URL and an admin's gRPC client.
type uiStack struct {
	page    string // http://host:port/ui/
	fs      pb.FeatureStoreServiceClient
	gdpr    pb.GdprServiceClient
	admin   context.Context // carries the admin's token
	shotDir string
}

func startUIStack(t *testing.T) *uiStack {
	t.Helper()
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(uiPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := startServerAt(t, map[string]string{"FS_AUTH_POLICY": policy, "FS_GDPR_HASH_KEY": testGdprKey,
		"FS_FRESHNESS_INTERVAL": "200ms", "FS_GDPR_RATE": "1000", "FS_GDPR_INDEX_SETTLE": "300ms"})
	conn, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s := &uiStack{page: strings.TrimSuffix(ts.metricsURL, "/metrics") + "/ui/", fs: pb.NewFeatureStoreServiceClient(conn), gdpr: pb.NewGdprServiceClient(conn),
		admin: metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+uiAdminToken), shotDir: os.Getenv("FS_UI_SCREENSHOTS")}
	for _, fs := range []*pb.FeatureSet{
		{Name: "driver_stats", EntityType: "driver", Owner: "mobility", Ttl: durationpb.New(24 * time.Hour),
			Description: "Per-driver trip counts and ratings, refreshed by the trips pipeline.",
			Features: []*pb.FeatureSpec{{Name: "trips_today", Type: pb.ValueType_VALUE_TYPE_INT64}, {Name: "rating", Type: pb.ValueType_VALUE_TYPE_DOUBLE},
				{Name: "embedding", Type: pb.ValueType_VALUE_TYPE_FLOAT_LIST}}},
		{Name: "web_sessions", EntityType: "user", Owner: "growth", PersonalData: true, Ttl: durationpb.New(time.Hour),
			Description: "Last page and session counts per signed-in user.",
			Features:    []*pb.FeatureSpec{{Name: "last_page", Type: pb.ValueType_VALUE_TYPE_STRING}, {Name: "sessions_7d", Type: pb.ValueType_VALUE_TYPE_INT64}}},
		{Name: "payments_risk", EntityType: "user", Owner: "finance", Description: "Fraud scores; finance only.",
			Features: []*pb.FeatureSpec{{Name: "score", Type: pb.ValueType_VALUE_TYPE_DOUBLE}}},
	} {
		if _, err := s.fs.ApplyFeatureSet(s.admin, &pb.ApplyFeatureSetRequest{FeatureSet: fs}); err != nil {
			t.Fatalf("apply %s: %v", fs.GetName(), err)
		}
	}
	return s
}

func (s *uiStack) write(t *testing.T, set string, row *pb.FeatureRow) {
	t.Helper()
	resp, err := s.fs.WriteFeatures(s.admin, &pb.WriteFeaturesRequest{FeatureSet: set, Rows: []*pb.FeatureRow{row}})
	if err != nil || resp.GetResults()[0].GetStatus() != pb.WriteStatus_WRITE_STATUS_WRITTEN {
		t.Fatalf("write %s/%s: %v %v", set, row.GetEntityId(), resp, err)
	}
}

func i64(v int64) *pb.Value   { return &pb.Value{Kind: &pb.Value_Int64Value{Int64Value: v}} }
func f64(v float64) *pb.Value { return &pb.Value{Kind: &pb.Value_DoubleValue{DoubleValue: v}} }
func str(v string) *pb.Value  { return &pb.Value{Kind: &pb.Value_StringValue{StringValue: v}} }

// browse runs steps in tab, failing t with what it was doing.
func browse(t *testing.T, tab context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(tab, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// open navigates tab to url and waits for the page to load.
func open(t *testing.T, tab context.Context, url string) {
	t.Helper()
	browse(t, tab, "open "+url, chromedp.Navigate(url))
}

// submit clicks a form's button and waits for the page it leads to.
func submit(t *testing.T, tab context.Context, button string) {
	t.Helper()
	if _, err := chromedp.RunResponse(tab, chromedp.Click(chromedp.CSS(button))); err != nil {
		t.Fatalf("submit %s: %v", button, err)
	}
}

func eval[T any](t *testing.T, tab context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(tab, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// listed is the sets the list page shows, in order.
func listed(t *testing.T, tab context.Context) []string {
	t.Helper()
	return eval[[]string](t, tab, `Array.from(document.querySelectorAll("tr[data-set]"), r => r.dataset.set)`)
}

func text(t *testing.T, tab context.Context, css string) string {
	t.Helper()
	v, err := chromedp.Run(tab, chromedp.TextContent(chromedp.CSS(css)))
	if err != nil {
		t.Fatalf("text of %s: %v", css, err)
	}
	return strings.TrimSpace(v)
}

// signIn enters token in the page's form, as a person would.
func signIn(t *testing.T, tab context.Context, page, token string) {
	t.Helper()
	open(t, tab, page)
	if loc := eval[string](t, tab, "location.pathname"); loc != "/ui/login" {
		t.Fatalf("without a session the page went to %s, want the token form", loc)
	}
	browse(t, tab, "type the token", chromedp.SendKeys(chromedp.ID("token"), token))
	submit(t, tab, "#signin")
	if loc := eval[string](t, tab, "location.pathname"); loc != "/ui/" {
		t.Fatalf("after signing in at %s: %s", loc, text(t, tab, "main"))
	}
	// The token is nowhere the page can reach: not in the URL, not in a readable cookie.
	if strings.Contains(eval[string](t, tab, "location.href + document.cookie"), token) {
		t.Fatal("the token is in the URL or a script-readable cookie")
	}
}

func (s *uiStack) screenshot(t *testing.T, tab context.Context, name string) {
	t.Helper()
	if s.shotDir == "" {
		return
	}
	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(s.shotDir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRegistryPageInBrowser(t *testing.T) {
	s := startUIStack(t)
	browser := browsertest.Start(t, 3*time.Minute)
	now := time.Now()
	s.write(t, "driver_stats", &pb.FeatureRow{EntityId: "d42", EventTime: timestamppb.New(now.Add(-time.Minute)),
		Values: map[string]*pb.Value{"trips_today": i64(7), "rating": f64(4.9)}})
	s.write(t, "web_sessions", &pb.FeatureRow{EntityId: "u1", SubjectId: "user-1", EventTime: timestamppb.New(now.Add(-time.Minute)),
		Values: map[string]*pb.Value{"last_page": str(scriptValue), "sessions_7d": i64(3)}})
	s.write(t, "payments_risk", &pb.FeatureRow{EntityId: "u1", EventTime: timestamppb.New(now.Add(-time.Minute)), Values: map[string]*pb.Value{"score": f64(0.2)}})

	viewer := browsertest.NewSession(t, browser)
	signIn(t, viewer, s.page, uiViewerToken)

	t.Run("the list shows the sets applied through gRPC, without the unreadable one", func(t *testing.T) {
		if got := listed(t, viewer); !slices.Equal(got, []string{"driver_stats", "web_sessions"}) {
			t.Fatalf("listed %v, want driver_stats and web_sessions", got)
		}
		if body := text(t, viewer, "body"); strings.Contains(body, "payments_risk") || !strings.Contains(body, "personal data") {
			t.Fatalf("page text: %s", body)
		}
		s.screenshot(t, viewer, "sets")
	})

	t.Run("the filter narrows the list", func(t *testing.T) {
		browse(t, viewer, "filter by text", chromedp.SendKeys(chromedp.ID("q"), "trip"))
		submit(t, viewer, "#apply-filter")
		if got := listed(t, viewer); !slices.Equal(got, []string{"driver_stats"}) {
			t.Fatalf("filtered by %q: %v, want driver_stats", "trip", got)
		}
		open(t, viewer, s.page)
		browse(t, viewer, "filter by owner", chromedp.SetValue(chromedp.ID("owner"), "growth"))
		submit(t, viewer, "#apply-filter")
		if got := listed(t, viewer); !slices.Equal(got, []string{"web_sessions"}) {
			t.Fatalf("filtered by owner growth: %v, want web_sessions", got)
		}
		s.screenshot(t, viewer, "sets-filtered")
	})

	t.Run("the lookup shows a value written a moment before", func(t *testing.T) {
		s.write(t, "driver_stats", &pb.FeatureRow{EntityId: "d42", EventTime: timestamppb.New(time.Now()),
			Values: map[string]*pb.Value{"trips_today": i64(8)}})
		open(t, viewer, s.page+"lookup")
		browse(t, viewer, "fill the lookup form", chromedp.SetValue(chromedp.ID("set"), "driver_stats"), chromedp.SendKeys(chromedp.ID("entity"), "d42"))
		submit(t, viewer, "#lookup")
		if got := text(t, viewer, `tr[data-feature="trips_today"] td.value`); got != "8" {
			t.Fatalf("trips_today %q, want 8 (the write just acknowledged)", got)
		}
		if got := text(t, viewer, `tr[data-feature="rating"] td.value`); got != "4.9" {
			t.Fatalf("rating %q, want 4.9", got)
		}
		if got := text(t, viewer, `tr[data-feature="embedding"] .status`); got != "not found" {
			t.Fatalf("embedding status %q, want not found", got)
		}
		s.screenshot(t, viewer, "lookup")
	})

	t.Run("a value holding a script renders as text and runs nothing", func(t *testing.T) {
		open(t, viewer, s.page+"lookup?set=web_sessions&entity=u1")
		if got := text(t, viewer, `tr[data-feature="last_page"] td.value`); got != scriptValue {
			t.Fatalf("the value shows as %q, want the text %q", got, scriptValue)
		}
		if n := eval[int](t, viewer, `document.querySelectorAll("script, img").length`); n != 0 {
			t.Fatalf("%d script or img elements in the page: the value became markup", n)
		}
		title, err := chromedp.Run(viewer, chromedp.Title())
		if err != nil || title == "pwned" || eval[bool](t, viewer, `"__pwned" in window`) {
			t.Fatalf("a script ran: title %q, err %v", title, err)
		}
		s.screenshot(t, viewer, "lookup-script-value")
	})

	t.Run("a set without permission is absent everywhere", func(t *testing.T) {
		open(t, viewer, s.page+"lookup")
		if opts := eval[[]string](t, viewer, `Array.from(document.querySelectorAll("#set option"), o => o.value)`); slices.Contains(opts, "payments_risk") {
			t.Fatalf("the lookup offers %v", opts)
		}
		for _, p := range []string{"sets/payments_risk", "lookup?set=payments_risk&entity=u1"} {
			open(t, viewer, s.page+p)
			if body := text(t, viewer, "main"); !strings.Contains(body, "not found") || strings.Contains(body, "0.2") || strings.Contains(body, "Fraud") {
				t.Fatalf("%s: %s", p, body)
			}
		}
	})

	t.Run("one set shows its features, version history and freshness from the store", func(t *testing.T) {
		set, err := s.fs.GetFeatureSet(s.admin, &pb.GetFeatureSetRequest{Name: "driver_stats"})
		if err != nil {
			t.Fatal(err)
		}
		evolved := set.GetFeatureSet()
		evolved.Features = append(evolved.Features, &pb.FeatureSpec{Name: "acceptance_rate", Type: pb.ValueType_VALUE_TYPE_DOUBLE})
		if _, err := s.fs.ApplyFeatureSet(s.admin, &pb.ApplyFeatureSetRequest{FeatureSet: evolved}); err != nil {
			t.Fatal(err)
		}
		open(t, viewer, s.page+"sets/driver_stats")
		if got := text(t, viewer, "#history"); !strings.Contains(got, "added acceptance_rate (double)") || !strings.Contains(got, "created with 3 features") {
			t.Fatalf("version history: %s", got)
		}
		if got := text(t, viewer, "#features"); !strings.Contains(got, "driver_stats:trips_today") || !strings.Contains(got, "float_list") {
			t.Fatalf("features: %s", got)
		}
		// Flushed every 200 ms here: the two writes show once a flush has run.
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(text(t, viewer, "#freshness"), "(2 rows)") {
			if time.Now().After(deadline) {
				t.Fatalf("freshness never showed the 2 rows written: %s", text(t, viewer, "#freshness"))
			}
			time.Sleep(300 * time.Millisecond)
			open(t, viewer, s.page+"sets/driver_stats")
		}
		s.screenshot(t, viewer, "set")
	})

	t.Run("deletions only for the GDPR permission, without the subject once done", func(t *testing.T) {
		if eval[int](t, viewer, `document.querySelectorAll('a[href="/ui/deletions"]').length`) != 0 {
			t.Fatal("the navigation offers deletions to an identity without the GDPR permission")
		}
		open(t, viewer, s.page+"deletions")
		if body := text(t, viewer, "main"); !strings.Contains(body, "GDPR permission") {
			t.Fatalf("viewer on the deletion page: %s", body)
		}
		del, err := s.gdpr.DeleteSubject(s.admin, &pb.DeleteSubjectRequest{SubjectId: "user-1", Reason: "browser test"})
		if err != nil {
			t.Fatal(err)
		}
		admin := browsertest.NewSession(t, browser)
		signIn(t, admin, s.page, uiAdminToken)
		url := s.page + "deletions?id=" + del.GetDeletion().GetId()
		deadline := time.Now().Add(60 * time.Second)
		for open(t, admin, url); text(t, admin, "#state") != "done"; open(t, admin, url) {
			if time.Now().After(deadline) {
				t.Fatalf("deletion state %q after a minute", text(t, admin, "#state"))
			}
			time.Sleep(300 * time.Millisecond)
		}
		if body := text(t, admin, "main"); strings.Contains(body, "user-1") || !strings.Contains(body, "Items deleted") {
			t.Fatalf("a done deletion: %s", body)
		}
		s.screenshot(t, admin, "deletion")
	})

	t.Run("the pages work with JavaScript off", func(t *testing.T) {
		off := browsertest.NewSession(t, browser)
		if _, err := chromedp.Call(off, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
			t.Fatal(err)
		}
		open(t, off, s.page)
		s.screenshot(t, off, "login")
		browse(t, off, "type the token", chromedp.SendKeys(chromedp.ID("token"), uiViewerToken))
		submit(t, off, "#signin")
		open(t, off, s.page+"lookup?set=driver_stats&entity=d42")
		nodes, err := chromedp.Run(off, chromedp.Nodes(chromedp.CSS(`tr[data-feature="trips_today"] td.value`)))
		if err != nil || len(nodes) != 1 || len(nodes[0].Children) != 1 || nodes[0].Children[0].NodeValue != "8" {
			t.Fatalf("with JavaScript off the lookup shows %v (%v), want 8", nodes, err)
		}
	})
}

// Over TLS the HTTP listener takes the gRPC port's certificate and client CA: a listed
// client certificate is an identity for the page, and /metrics is served over HTTPS.
func TestRegistryPageClientCertificate(t *testing.T) {
	p := testpki.New(t)
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("certificates: [ops]\nrules:\n  ops: {read: [driver_stats]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := startServerAt(t, map[string]string{"FS_AUTH_POLICY": policy, "FS_GDPR_HASH_KEY": testGdprKey,
		"FS_TLS_CERT": p.ServerCert, "FS_TLS_KEY": p.ServerKey, "FS_TLS_CLIENT_CA": p.CAFile})
	if !strings.HasPrefix(ts.metricsURL, "https://") {
		t.Fatalf("metrics URL %s, want https", ts.metricsURL)
	}
	page := strings.TrimSuffix(ts.metricsURL, "/metrics") + "/ui/"
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{
			Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Pool, Certificates: certs}},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	certFile, keyFile := p.Issue(t, "ops", x509.ExtKeyUsageClientAuth)
	ops, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	strangerCert, strangerKey := p.Issue(t, "stranger", x509.ExtKeyUsageClientAuth)
	stranger, err := tls.LoadX509KeyPair(strangerCert, strangerKey)
	if err != nil {
		t.Fatal(err)
	}
	get := func(c *http.Client, url string) (*http.Response, string) {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, body := get(client(ops), page); resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="identity">ops<`) {
		t.Fatalf("with the ops certificate: %d %s", resp.StatusCode, body)
	}
	if resp, _ := get(client(), page); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login" {
		t.Fatalf("without a certificate: %d to %q, want the token form", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := get(client(stranger), page); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("with a certificate the policy does not list: %d, want 403", resp.StatusCode)
	}
	if resp, body := get(client(), ts.metricsURL); resp.StatusCode != http.StatusOK || !strings.Contains(body, "# TYPE") {
		t.Fatalf("metrics over https: %d", resp.StatusCode)
	}
}

// Without an access policy the page is served on a loopback listener, and on any other
// only with -ui-allow-remote; /metrics is served either way.
func TestRegistryPageOnlyWhereAllowed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		env    map[string]string
		status int
	}{
		{"loopback", map[string]string{}, http.StatusOK},
		{"all interfaces", map[string]string{"FS_METRICS_LISTEN": "0.0.0.0:0"}, http.StatusNotFound},
		{"all interfaces, allowed", map[string]string{"FS_METRICS_LISTEN": "0.0.0.0:0", "FS_UI_ALLOW_REMOTE": "true"}, http.StatusOK},
		{"switched off", map[string]string{"FS_UI": "false"}, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServerAt(t, tc.env)
			// Only ever connect to loopback, also when the listener is on every interface.
			base := strings.Replace(strings.TrimSuffix(ts.metricsURL, "/metrics"), "0.0.0.0", "127.0.0.1", 1)
			base = strings.Replace(base, "[::]", "127.0.0.1", 1)
			for path, want := range map[string]int{"/ui/": tc.status, "/metrics": http.StatusOK} {
				resp, err := http.Get(base + path)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != want {
					t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
				}
				if path == "/ui/" && want == http.StatusOK && resp.Header.Get("Content-Security-Policy") == "" {
					t.Error("the page has no Content-Security-Policy")
				}
			}
		})
	}
}
