// Package ui is the registry page: read-only HTML over the same domain calls as the gRPC
// API (ListFeatureSets, GetFeatureSet, GetFeatures, GetDeletion, and the sets'
// freshness), served under /ui/ on the HTTP listener that also serves /metrics.
//
// Pages are rendered on the server with html/template, which escapes every value by
// context; there is no JavaScript at all, and every response carries a
// Content-Security-Policy that allows none, so the page works with JavaScript off and a
// value that looks like markup is shown as text.
//
// With an access policy (Options.Auth) every page needs an identity: a verified client
// certificate the policy lists, or a session started by entering a bearer token once in
// a form. The session is a cookie (HttpOnly, SameSite=Strict, Secure over TLS) holding
// the identity and an expiry signed with HMAC-SHA256 under Options.SessionKey; the token
// itself is never stored and never appears in a URL. Each identity sees only the sets it
// may read, and the deletion page needs the GDPR permission. Without a policy everyone
// sees everything: the caller must then serve the handler only where that is intended
// (cmd/featurestore does so on loopback unless told otherwise).
package ui

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/gdpr"
)

// Features is what the pages read from the domain; *featurestore.Service implements it.
type Features interface {
	ListFeatureSets(ctx context.Context, pageToken string, pageSize int) ([]featurestore.FeatureSet, string, error)
	GetFeatureSet(ctx context.Context, name string) (featurestore.FeatureSet, error)
	GetFeatures(ctx context.Context, refs []string, entityIDs []string) (featurestore.Values, error)
	Freshness(ctx context.Context, names []string) (map[string]featurestore.Freshness, error)
}

// Deletions is what the deletion page reads; *gdpr.Service implements it.
type Deletions interface {
	GetDeletion(ctx context.Context, id string) (gdpr.Job, error)
}

// Authorizer is the access policy as the pages use it; *server.Auth implements it.
type Authorizer interface {
	IdentifyToken(token string) (string, bool)
	IdentifyCertificate(commonName string) (string, bool)
	MayRead(identity, set string) bool
	MayGdpr(identity string) bool
}

// MinSessionKeyBytes is the shortest session key New accepts.
const MinSessionKeyBytes = 32

// DefaultSessionTTL is how long a session started with a token lasts at most.
const DefaultSessionTTL = 8 * time.Hour

// Options are a Handler's dependencies.
type Options struct {
	Features Features
	// Deletions serves the deletion page; nil shows it as not enabled.
	Deletions Deletions
	// Auth is the access policy; nil means none (everyone sees everything).
	Auth Authorizer
	// SessionKey signs session cookies and CSRF tokens; at least MinSessionKeyBytes.
	// Replicas that share it accept each other's sessions.
	SessionKey []byte
	// SessionTTL bounds a session's life (default DefaultSessionTTL).
	SessionTTL time.Duration
	// Clock tells the time (default: the system clock).
	Clock  featurestore.Clock
	Logger *slog.Logger
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Handler serves the registry page under /ui/. It is safe for concurrent use.
type Handler struct {
	features  Features
	deletions Deletions
	auth      Authorizer
	sessions  sessions
	clock     featurestore.Clock
	logger    *slog.Logger
	pages     map[string]*template.Template
	mux       *http.ServeMux
}

// ContentSecurityPolicy is sent with every response: nothing but the page's own
// stylesheet may load, no script of any kind runs, forms post only to the page, and no
// other site may frame it.
const ContentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// New returns the registry page's handler. It fails if the templates do not parse or
// the session key is too short.
func New(o Options) (*Handler, error) {
	if o.Features == nil {
		return nil, errors.New("ui: Features is required")
	}
	if len(o.SessionKey) < MinSessionKeyBytes {
		return nil, fmt.Errorf("ui: the session key must be at least %d bytes", MinSessionKeyBytes)
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = DefaultSessionTTL
	}
	if o.Clock == nil {
		o.Clock = featurestore.SystemClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{features: o.Features, deletions: o.Deletions, auth: o.Auth, clock: o.Clock, logger: o.Logger,
		sessions: sessions{key: append([]byte(nil), o.SessionKey...), ttl: o.SessionTTL}}
	if err := h.parseTemplates(); err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("ui: static files: %w", err)
	}
	m := http.NewServeMux()
	m.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /ui/login", h.loginForm)
	m.HandleFunc("POST /ui/login", h.login)
	m.Handle("POST /ui/logout", h.authenticated(h.logout))
	m.Handle("GET /ui/{$}", h.authenticated(h.setsPage))
	m.Handle("GET /ui/sets/{name}", h.authenticated(h.setPage))
	m.Handle("GET /ui/lookup", h.authenticated(h.lookupPage))
	m.Handle("GET /ui/deletions", h.authenticated(h.deletionPage))
	m.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		h.renderError(w, r, nil, http.StatusNotFound, "There is no such page.")
	})
	// Cross-origin POSTs (a login or logout forged by another site) are refused from the
	// browser's Sec-Fetch-Site and Origin headers; the forms' CSRF tokens cover browsers
	// that send neither.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.logger.WarnContext(r.Context(), "ui: cross-origin request refused", "peer", r.RemoteAddr, "path", featurestore.Truncate(r.URL.Path))
		h.renderError(w, r, nil, http.StatusForbidden, "Cross-origin requests are refused.")
	}))
	mux := http.NewServeMux()
	mux.Handle("/ui/", cop.Handler(m))
	h.mux = mux
	return h, nil
}

// ServeHTTP serves requests under /ui/, each with the security headers.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", ContentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, "/ui/static/") {
		// Pages hold what an identity may read: no shared cache may keep them.
		hd.Set("Cache-Control", "no-store")
	}
	h.mux.ServeHTTP(w, r)
}
