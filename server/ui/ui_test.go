package ui_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	"github.com/dsfeatures/featurestore/gdpr"
	"github.com/dsfeatures/featurestore/internal/devstack"
	"github.com/dsfeatures/featurestore/internal/memdb"
	"github.com/dsfeatures/featurestore/server"
	"github.com/dsfeatures/featurestore/server/ui"
)

// The handlers run over the real domain (featurestore.Service on the in-memory database
// and a real valkey-server), so what a page shows is what GetFeatures and the registry
// return; only the GDPR job store is a fake, to present every job state on demand.

// logBuffer collects the handler's log for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fakeDeletions returns the jobs it holds.
type fakeDeletions map[string]gdpr.Job

func (f fakeDeletions) GetDeletion(_ context.Context, id string) (gdpr.Job, error) {
	j, ok := f[id]
	if !ok {
		return gdpr.Job{}, featurestore.NotFound("id", "deletion %q not found", id)
	}
	return j, nil
}

// clock is a clock the test moves.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

const (
	viewerToken = "viewer-token-0123456789"
	adminToken  = "admin-token-9876543210"
	xssValue    = `<script>document.title="pwned"</script>`
)

var policy = server.Policy{
	TokenHashes:  map[string]string{server.HashToken(viewerToken): "viewer", server.HashToken(adminToken): "admin"},
	Certificates: map[string]bool{"ops": true},
	Rules: map[string]server.Rule{
		"viewer": {Read: []string{"drivers", "riders"}},
		"admin":  {Read: []string{"*"}, Gdpr: true},
		"ops":    {Read: []string{"secret_set"}},
	},
}

type env struct {
	svc   *featurestore.Service
	h     *ui.Handler
	clock *clock
	logs  *logBuffer
}

// newEnv builds a handler over a fresh domain holding three sets: drivers (with a value
// that looks like a script), riders and secret_set; auth is nil for no access policy.
func newEnv(t *testing.T, auth ui.Authorizer) *env {
	t.Helper()
	st := devstack.NewMemoryStack(t, 600*time.Millisecond, devstack.ValkeyOptions{}, memdb.Options{})
	svc, store, err := devstack.NewService(st.DB, st.Cache, nil, writethrough.Config{WriteTimeout: 400 * time.Millisecond, Lease: 600 * time.Millisecond}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = store.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	for _, fs := range []featurestore.FeatureSet{
		{Name: "drivers", EntityType: "driver", Owner: "mobility", Description: "Driver <b>stats</b>", TTL: 24 * time.Hour,
			Features: []featurestore.FeatureSpec{{Name: "trips", Type: featurestore.TypeInt64}, {Name: "note", Type: featurestore.TypeString}}},
		{Name: "riders", EntityType: "rider", Owner: "growth", PersonalData: true,
			Features: []featurestore.FeatureSpec{{Name: "rating", Type: featurestore.TypeDouble}}},
		{Name: "secret_set", EntityType: "driver", Owner: "mobility",
			Features: []featurestore.FeatureSpec{{Name: "x", Type: featurestore.TypeBool}}},
	} {
		if _, err := svc.ApplyFeatureSet(ctx, fs); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Now().Add(-time.Minute).Truncate(time.Microsecond)
	if _, err := svc.WriteFeatures(ctx, "drivers", []featurestore.WriteRow{{EntityID: "d1", EventTime: at, Values: map[string]featurestore.Value{
		"trips": {Type: featurestore.TypeInt64, Int: 42}, "note": {Type: featurestore.TypeString, Str: xssValue},
	}}}); err != nil {
		t.Fatal(err)
	}
	if err := svc.FlushFreshness(ctx); err != nil {
		t.Fatal(err)
	}
	e := &env{svc: svc, clock: &clock{now: time.Now()}, logs: &logBuffer{}}
	o := ui.Options{
		Features: svc, Auth: auth, SessionKey: []byte("a session key of at least thirty-two bytes"), Clock: e.clock,
		Logger: slog.New(slog.NewTextHandler(e.logs, nil)),
		Deletions: fakeDeletions{
			"del-00000000000000d0": {ID: "del-00000000000000d0", State: gdpr.Done, Subject: "subject-alice", ItemsDeleted: 3, RequestedAt: at, CompletedAt: at.Add(time.Second)},
			"del-00000000000000f0": {ID: "del-00000000000000f0", State: gdpr.Failed, Subject: "subject-alice", Failure: "STORE_UNAVAILABLE: gave up", RequestedAt: at},
			"del-0000000000000010": {ID: "del-0000000000000010", State: gdpr.Running, Subject: "subject-bob", RequestedAt: at},
		},
	}
	e.h, err = ui.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func withPolicy(t *testing.T) *env {
	return newEnv(t, server.NewAuth(policy, slog.New(slog.DiscardHandler)))
}

// do serves one request and returns the response and its body.
func (e *env) do(t *testing.T, r *http.Request) (*http.Response, string) {
	t.Helper()
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	resp := w.Result()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (e *env) get(t *testing.T, target string, cookies ...*http.Cookie) (*http.Response, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, target, nil)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	return e.do(t, r)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// login signs in with token through the form, as a browser does, and returns the
// session cookie.
func (e *env) login(t *testing.T, token string) *http.Cookie {
	t.Helper()
	resp, body := e.get(t, "/ui/login")
	m := csrfField.FindStringSubmatch(body)
	nonce := cookieNamed(resp, "fs_csrf")
	if m == nil || nonce == nil {
		t.Fatalf("login form without CSRF token or cookie: %s", body)
	}
	resp, body = e.postLogin(t, token, m[1], nonce)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
	s := cookieNamed(resp, "fs_session")
	if s == nil {
		t.Fatal("login set no session cookie")
	}
	return s
}

func (e *env) postLogin(t *testing.T, token, csrf string, nonce *http.Cookie) (*http.Response, string) {
	t.Helper()
	form := url.Values{"token": {token}, "csrf": {csrf}}
	r := httptest.NewRequest(http.MethodPost, "/ui/login", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if nonce != nil {
		r.AddCookie(nonce)
	}
	return e.do(t, r)
}

func cookieNamed(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Every response, whatever its status, carries the strict policy and nosniff.
func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	e := withPolicy(t)
	s := e.login(t, viewerToken)
	reqs := map[string]*http.Request{
		"sets":          httptest.NewRequest(http.MethodGet, "/ui/", nil),
		"set":           httptest.NewRequest(http.MethodGet, "/ui/sets/drivers", nil),
		"lookup":        httptest.NewRequest(http.MethodGet, "/ui/lookup?set=drivers&entity=d1", nil),
		"not readable":  httptest.NewRequest(http.MethodGet, "/ui/sets/secret_set", nil),
		"no such page":  httptest.NewRequest(http.MethodGet, "/ui/nope", nil),
		"stylesheet":    httptest.NewRequest(http.MethodGet, "/ui/static/style.css", nil),
		"gdpr refused":  httptest.NewRequest(http.MethodGet, "/ui/deletions", nil),
		"login form":    httptest.NewRequest(http.MethodGet, "/ui/login", nil),
		"bad login":     httptest.NewRequest(http.MethodPost, "/ui/login", strings.NewReader("token=x")),
		"cross origin":  httptest.NewRequest(http.MethodPost, "/ui/logout", nil),
		"not signed in": httptest.NewRequest(http.MethodGet, "/ui/", nil),
	}
	reqs["cross origin"].Header.Set("Sec-Fetch-Site", "cross-site")
	for name, r := range reqs {
		if name != "not signed in" && name != "login form" {
			r.AddCookie(s)
		}
		resp, _ := e.do(t, r)
		if got := resp.Header.Get("Content-Security-Policy"); got != ui.ContentSecurityPolicy {
			t.Errorf("%s (%d): Content-Security-Policy %q", name, resp.StatusCode, got)
		}
		if !strings.Contains(ui.ContentSecurityPolicy, "default-src 'none'") || strings.Contains(ui.ContentSecurityPolicy, "script-src") {
			t.Fatalf("the policy must allow no script: %q", ui.ContentSecurityPolicy)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: headers %v", name, resp.Header)
		}
	}
}

// Without an identity, pages send the visitor to the token form; nothing is shown.
func TestPagesNeedAnIdentity(t *testing.T) {
	e := withPolicy(t)
	for _, p := range []string{"/ui/", "/ui/sets/drivers", "/ui/lookup?set=drivers&entity=d1", "/ui/deletions?id=del-00000000000000d0"} {
		resp, body := e.get(t, p)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login" || strings.Contains(body, "drivers") {
			t.Errorf("%s without identity: %d to %q", p, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	r := httptest.NewRequest(http.MethodPost, "/ui/logout", nil)
	if resp, _ := e.do(t, r); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("logout without a session: %d, want 401", resp.StatusCode)
	}
}

// The token form: CSRF-checked, an unknown token refused and logged without the secret,
// a known one starts a session whose cookie holds no token and is HttpOnly and Strict.
func TestLogin(t *testing.T) {
	e := withPolicy(t)
	resp, body := e.get(t, "/ui/login")
	nonce := cookieNamed(resp, "fs_csrf")
	token := csrfField.FindStringSubmatch(body)[1]
	if nonce == nil || !nonce.HttpOnly || nonce.SameSite != http.SameSiteStrictMode || nonce.Path != "/ui/" {
		t.Fatalf("CSRF cookie %+v", nonce)
	}
	if !strings.Contains(body, `method="post"`) || strings.Contains(body, "<script") {
		t.Fatalf("login form: %s", body)
	}

	if resp, _ := e.postLogin(t, viewerToken, "", nonce); resp.StatusCode != http.StatusForbidden || cookieNamed(resp, "fs_session") != nil {
		t.Errorf("no CSRF token: %d, want 403 and no session", resp.StatusCode)
	}
	if resp, _ := e.postLogin(t, viewerToken, token, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("no CSRF cookie: %d, want 403", resp.StatusCode)
	}
	_, other := e.get(t, "/ui/login")
	if resp, _ := e.postLogin(t, viewerToken, csrfField.FindStringSubmatch(other)[1], nonce); resp.StatusCode != http.StatusForbidden {
		t.Errorf("another form's CSRF token: %d, want 403", resp.StatusCode)
	}
	resp, body = e.postLogin(t, "wrong-secret-token", token, nonce)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "not known") || cookieNamed(resp, "fs_session") != nil {
		t.Errorf("unknown token: %d %s", resp.StatusCode, body)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "unknown bearer token") || strings.Contains(logs, "wrong-secret-token") {
		t.Errorf("log must say why and never the token:\n%s", logs)
	}

	s := e.login(t, viewerToken)
	if !s.HttpOnly || s.SameSite != http.SameSiteStrictMode || s.Secure || s.MaxAge != 0 || s.Path != "/ui/" {
		t.Errorf("session cookie %+v: want HttpOnly, Strict, not Secure over plaintext, a browser-session cookie", s)
	}
	if strings.Contains(s.Value, viewerToken) || strings.Contains(s.Value, server.HashToken(viewerToken)) {
		t.Errorf("session cookie holds the token: %q", s.Value)
	}
	if resp, body := e.get(t, "/ui/", s); resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="identity">viewer<`) {
		t.Errorf("with the session: %d, identity not shown", resp.StatusCode)
	}
	// Over TLS the cookie is Secure. The nonce and the form's token come from one response.
	resp, body = e.get(t, "/ui/login")
	r := httptest.NewRequest(http.MethodPost, "https://example.test/ui/login", strings.NewReader(url.Values{"token": {viewerToken}, "csrf": {csrfField.FindStringSubmatch(body)[1]}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.TLS = &tls.ConnectionState{}
	r.AddCookie(cookieNamed(resp, "fs_csrf"))
	resp, _ = e.do(t, r)
	if c := cookieNamed(resp, "fs_session"); c == nil || !c.Secure {
		t.Errorf("session cookie over TLS: %+v, want Secure", c)
	}
}

// A forged cross-site POST is refused before the form is read.
func TestCrossSiteLoginRefused(t *testing.T) {
	e := withPolicy(t)
	resp, body := e.get(t, "/ui/login")
	form := url.Values{"token": {viewerToken}, "csrf": {csrfField.FindStringSubmatch(body)[1]}}
	r := httptest.NewRequest(http.MethodPost, "/ui/login", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	r.AddCookie(cookieNamed(resp, "fs_csrf"))
	resp, _ = e.do(t, r)
	if resp.StatusCode != http.StatusForbidden || cookieNamed(resp, "fs_session") != nil {
		t.Fatalf("cross-site login: %d, want 403 and no session", resp.StatusCode)
	}
}

// A session cookie that was tampered with, forged under another key or expired is no
// identity.
func TestSessionCookieChecks(t *testing.T) {
	e := withPolicy(t)
	s := e.login(t, viewerToken)
	parts := strings.Split(s.Value, ".")
	forged := *s
	parts[1] = "YWRtaW4" // "admin"
	forged.Value = strings.Join(parts, ".")
	if resp, _ := e.get(t, "/ui/", &forged); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("identity swapped in the cookie: %d, want a redirect to sign in", resp.StatusCode)
	}
	if !strings.Contains(e.logs.String(), "signature does not match") {
		t.Errorf("the log does not say why:\n%s", e.logs.String())
	}
	e.clock.Add(ui.DefaultSessionTTL + time.Second)
	if resp, _ := e.get(t, "/ui/", s); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("expired session: %d, want a redirect to sign in", resp.StatusCode)
	}
}

// Logout needs the session's CSRF token and ends the session.
func TestLogout(t *testing.T) {
	e := withPolicy(t)
	s := e.login(t, viewerToken)
	_, body := e.get(t, "/ui/", s)
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no logout form")
	}
	post := func(csrf string) *http.Response {
		r := httptest.NewRequest(http.MethodPost, "/ui/logout", strings.NewReader(url.Values{"csrf": {csrf}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.AddCookie(s)
		resp, _ := e.do(t, r)
		return resp
	}
	if resp := post("bogus"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("logout with a wrong token: %d, want 403", resp.StatusCode)
	}
	resp := post(m[1])
	if c := cookieNamed(resp, "fs_session"); resp.StatusCode != http.StatusSeeOther || c == nil || c.MaxAge >= 0 {
		t.Errorf("logout: %d, cookie %+v: want the session cookie deleted", resp.StatusCode, c)
	}
}

// A verified client certificate the policy lists is an identity; one it does not list
// is refused and logged.
func TestClientCertificate(t *testing.T) {
	e := withPolicy(t)
	withCert := func(cn string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "https://example.test/ui/", nil)
		r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{Subject: pkix.Name{CommonName: cn}}}}}
		return r
	}
	resp, body := e.do(t, withCert("ops"))
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `data-set="secret_set"`) || strings.Contains(body, `data-set="drivers"`) {
		t.Errorf("certificate ops: %d, want only secret_set:\n%s", resp.StatusCode, body)
	}
	if strings.Contains(body, "Sign out") {
		t.Error("a certificate identity has no session to sign out of")
	}
	resp, _ = e.do(t, withCert("mallory"))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(e.logs.String(), "client certificate not in the access policy") {
		t.Errorf("unlisted certificate: %d, log:\n%s", resp.StatusCode, e.logs.String())
	}
}

func setNames(body string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`data-set="([^"]+)"`).FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	return out
}

// The list shows only readable sets, and the filters narrow it.
func TestSetsList(t *testing.T) {
	e := withPolicy(t)
	viewer, admin := e.login(t, viewerToken), e.login(t, adminToken)
	tests := []struct {
		name   string
		who    *http.Cookie
		target string
		want   string
	}{
		{"viewer sees what it may read", viewer, "/ui/", "drivers riders"},
		{"admin sees all", admin, "/ui/", "drivers riders secret_set"},
		{"text filter on name", admin, "/ui/?q=RIDER", "riders"},
		{"text filter on a feature name", admin, "/ui/?q=trips", "drivers"},
		{"text filter on entity type", admin, "/ui/?q=driver", "drivers secret_set"},
		{"owner filter", admin, "/ui/?owner=mobility", "drivers secret_set"},
		{"both", admin, "/ui/?owner=mobility&q=secret", "secret_set"},
		{"no match", admin, "/ui/?q=zzz", ""},
		{"a filter cannot reveal an unreadable set", viewer, "/ui/?q=secret", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.get(t, tc.target, tc.who)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%d", resp.StatusCode)
			}
			if got := strings.Join(setNames(body), " "); got != tc.want {
				t.Errorf("sets %q, want %q", got, tc.want)
			}
		})
	}
	_, body := e.get(t, "/ui/", viewer)
	for _, want := range []string{"Driver &lt;b&gt;stats&lt;/b&gt;", "personal data", "rows/min", "written", ">mobility<", ">1d<"} {
		if !strings.Contains(body, want) {
			t.Errorf("list lacks %q", want)
		}
	}
	if strings.Contains(body, "secret_set") || strings.Contains(body, "<b>stats") {
		t.Error("list shows an unreadable set or unescaped markup")
	}
}

// One set: definition, features and freshness; an unreadable set looks like an
// unknown one.
func TestSetPage(t *testing.T) {
	e := withPolicy(t)
	viewer := e.login(t, viewerToken)
	resp, body := e.get(t, "/ui/sets/drivers", viewer)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	for _, want := range []string{"drivers:trips", "<code>int64</code>", "<code>string</code>", "Newest event time", `<span id="rate">&lt; 0.1</span>`, "(1 rows)", "<svg",
		"Version history", "created with 2 features"} {
		if !strings.Contains(body, want) {
			t.Errorf("set page lacks %q", want)
		}
	}
	r1, b1 := e.get(t, "/ui/sets/secret_set", viewer)
	r2, b2 := e.get(t, "/ui/sets/no_such_set", viewer)
	if r1.StatusCode != http.StatusNotFound || r2.StatusCode != http.StatusNotFound || !strings.Contains(b1, "not found") || !strings.Contains(b2, "not found") {
		t.Errorf("unreadable %d, unknown %d: want both 404 not found", r1.StatusCode, r2.StatusCode)
	}
}

// The lookup shows current values with status and event time, and a value that looks
// like a script as text.
func TestLookup(t *testing.T) {
	e := withPolicy(t)
	viewer := e.login(t, viewerToken)
	resp, body := e.get(t, "/ui/lookup?set=drivers&entity=d1", viewer)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if !strings.Contains(body, `<td class="value">42</td>`) || !strings.Contains(body, `status present`) {
		t.Errorf("lookup lacks the value 42 present:\n%s", body)
	}
	if strings.Contains(body, "<script") || !strings.Contains(body, "&lt;script&gt;document.title=&#34;pwned&#34;&lt;/script&gt;") {
		t.Errorf("the script-like value is not escaped:\n%s", body)
	}
	_, body = e.get(t, "/ui/lookup?set=drivers&entity=nobody", viewer)
	if strings.Count(body, "status not found") != 2 {
		t.Errorf("an unknown entity: want both features not found:\n%s", body)
	}
	if resp, _ := e.get(t, "/ui/lookup?set=secret_set&entity=d1", viewer); resp.StatusCode != http.StatusNotFound {
		t.Errorf("lookup in an unreadable set: %d, want 404", resp.StatusCode)
	}
	if resp, _ := e.get(t, "/ui/lookup?set=bad%3Aname&entity=d1", viewer); resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a malformed set name: %d", resp.StatusCode)
	}
}

// Deletions are for GDPR identities only, and a finished job never shows its subject.
func TestDeletionPage(t *testing.T) {
	e := withPolicy(t)
	viewer, admin := e.login(t, viewerToken), e.login(t, adminToken)
	if resp, _ := e.get(t, "/ui/deletions?id=del-00000000000000d0", viewer); resp.StatusCode != http.StatusForbidden {
		t.Errorf("without the GDPR permission: %d, want 403", resp.StatusCode)
	}
	if _, body := e.get(t, "/ui/", viewer); strings.Contains(body, "/ui/deletions") {
		t.Error("the navigation offers deletions to an identity without the GDPR permission")
	}
	tests := []struct{ id, state, subject string }{
		{"del-00000000000000d0", "done", ""},
		{"del-00000000000000f0", "failed", ""},
		{"del-0000000000000010", "running", "subject-bob"},
	}
	for _, tc := range tests {
		resp, body := e.get(t, "/ui/deletions?id="+tc.id, admin)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="state">`+tc.state+`<`) {
			t.Errorf("%s: %d, want state %s:\n%s", tc.id, resp.StatusCode, tc.state, body)
		}
		if tc.subject == "" && strings.Contains(body, "subject-alice") {
			t.Errorf("%s (%s) shows the subject id", tc.id, tc.state)
		}
		if tc.subject != "" && !strings.Contains(body, tc.subject) {
			t.Errorf("%s (%s) does not show its subject while running", tc.id, tc.state)
		}
	}
	if resp, _ := e.get(t, "/ui/deletions?id=del-ffffffffffffffff", admin); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown deletion: %d, want 404", resp.StatusCode)
	}
}

// Without an access policy there is no sign-in and every set is shown.
func TestWithoutPolicy(t *testing.T) {
	e := newEnv(t, nil)
	resp, body := e.get(t, "/ui/")
	if resp.StatusCode != http.StatusOK || strings.Join(setNames(body), " ") != "drivers riders secret_set" {
		t.Fatalf("%d, sets %v", resp.StatusCode, setNames(body))
	}
	if resp, _ := e.get(t, "/ui/login"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("login without a policy: %d, want a redirect to the list", resp.StatusCode)
	}
	if resp, _ := e.get(t, "/ui/deletions?id=del-00000000000000d0"); resp.StatusCode != http.StatusOK {
		t.Errorf("deletions without a policy: %d", resp.StatusCode)
	}
}

func TestNewRefusesAShortKey(t *testing.T) {
	if _, err := ui.New(ui.Options{Features: (*featurestore.Service)(nil), SessionKey: []byte("short")}); err == nil {
		t.Fatal("a 5-byte session key was accepted")
	}
}
