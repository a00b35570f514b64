package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/dsfeatures/featurestore/server/ui"
)

// serveHTTP starts the HTTP listener of -metrics-listen under eg, until ctx ends: it
// serves Prometheus /metrics and the registry page under /ui/. When the gRPC port serves
// TLS, so does this listener, with the same certificate and client CA settings, so a
// client certificate identifies a browser as it does a gRPC client. It prints the
// listener's URLs ("metrics on URL", "registry page on URL") to stdout.
//
// The page is served only where the access policy allows it to be: without a policy
// only on a loopback address (unless -ui-allow-remote), and with bearer tokens over
// plaintext only on loopback (unless -allow-plaintext-tokens), as on the gRPC port.
func serveHTTP(ctx context.Context, eg *errgroup.Group, cfg config, stdout io.Writer, logger *slog.Logger, sec security,
	metrics http.Handler, features ui.Features, deletions ui.Deletions) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics)
	page, err := registryPage(cfg, logger, sec, features, deletions)
	if err != nil {
		return err
	}
	if page != nil {
		// No page call may outlive the server's deadline for an RPC without one.
		mux.Handle("/ui/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rctx, cancel := context.WithTimeout(r.Context(), cfg.RPCTimeout)
			defer cancel()
			page.ServeHTTP(w, r.WithContext(rctx))
		}))
	}
	lis, err := net.Listen("tcp", cfg.MetricsListen)
	if err != nil {
		return fmt.Errorf("listen on %s for metrics: %w", cfg.MetricsListen, err)
	}
	scheme := "http"
	if sec.tls != nil {
		tc := sec.tls.Clone()
		tc.NextProtos = []string{"h2", "http/1.1"}
		lis = tls.NewListener(lis, tc)
		scheme = "https"
	}
	if cfg.Pprof {
		// parseConfig allows -pprof only on a loopback listener, or with -insecure.
		registerPprof(mux)
		logger.Info("serving pprof", "url", scheme+"://"+lis.Addr().String()+"/debug/pprof/")
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: cfg.RPCTimeout + 30*time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug)}
	fmt.Fprintf(stdout, "metrics on %s://%s/metrics\n", scheme, lis.Addr())
	if page != nil {
		fmt.Fprintf(stdout, "registry page on %s://%s/ui/\n", scheme, lis.Addr())
	}
	eg.Go(func() error {
		if err := hs.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	eg.Go(func() error {
		<-ctx.Done()
		return hs.Close()
	})
	return nil
}

// registryPage builds the registry page's handler, or returns nil (and says why in the
// log) when this configuration must not serve it.
func registryPage(cfg config, logger *slog.Logger, sec security, features ui.Features, deletions ui.Deletions) (http.Handler, error) {
	if !cfg.UI {
		return nil, nil
	}
	onLoopback := loopback(cfg.MetricsListen)
	if sec.auth == nil && !onLoopback && !cfg.UIAllowRemote {
		logger.Warn("registry page not served: without an access policy it is served only on a loopback -metrics-listen; pass -auth-policy, or -ui-allow-remote if every visitor may see every set",
			"metrics_listen", cfg.MetricsListen)
		return nil, nil
	}
	if sec.auth != nil && sec.tls == nil && !onLoopback && !cfg.AllowPlaintextTokens {
		logger.Warn("registry page not served: its token form would send tokens over plaintext on a non-loopback -metrics-listen; serve TLS (-tls-cert/-tls-key), or pass -allow-plaintext-tokens if a trusted proxy terminates TLS",
			"metrics_listen", cfg.MetricsListen)
		return nil, nil
	}
	key, err := sessionKey(cfg, logger)
	if err != nil {
		return nil, err
	}
	o := ui.Options{Features: features, Deletions: deletions, SessionKey: key, Logger: logger}
	if sec.auth != nil {
		o.Auth = sec.auth // only a non-nil policy: a nil *server.Auth in the interface would not mean "none"
	}
	h, err := ui.New(o)
	if err != nil {
		return nil, fmt.Errorf("registry page: %w", err)
	}
	return h, nil
}

// sessionKey reads -ui-session-key-file, or makes a random key: sessions then last as
// long as this process, and each replica knows only its own.
func sessionKey(cfg config, logger *slog.Logger) ([]byte, error) {
	if cfg.UISessionKeyFile != "" {
		b, err := os.ReadFile(cfg.UISessionKeyFile)
		if err != nil {
			return nil, fmt.Errorf("-ui-session-key-file: %w", err)
		}
		key := bytes.TrimSpace(b)
		if len(key) < ui.MinSessionKeyBytes {
			return nil, fmt.Errorf("-ui-session-key-file: want at least %d bytes, got %d", ui.MinSessionKeyBytes, len(key))
		}
		return key, nil
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("session key: %w", err)
	}
	logger.Info("registry page sessions are signed with a random key: they end when this process does, and other replicas do not accept them (set -ui-session-key-file to share one)")
	return key, nil
}

// registerPprof serves net/http/pprof's handlers on mux, but not /debug/pprof/cmdline:
// the command line can hold secrets given as flags (-valkey-password, -gdpr-hash-key).
// The named profiles (heap, goroutine, allocs, ...) are served by Index.
func registerPprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}
