package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/dsfeatures/featurestore/featurestore/valkey"
	"github.com/dsfeatures/featurestore/server"
)

// policyFile is the YAML form of the access policy:
//
//	tokens:
//	  - identity: ranker
//	    sha256: 5e88...   # hex SHA-256 of the token (preferred), or
//	    token: s3cret     # the token itself, for development
//	certificates: [admin] # identities that present a client certificate (its CN)
//	stream_opens: {rate: 20, burst: 40}   # per identity (the default)
//	rules:
//	  ranker: {read: ["*"], write: [], apply: false, gdpr: false, rate: 1000, burst: 100}
//	  admin:  {read: ["*"], write: ["*"], delete: ["*"], apply: true, retire: true, gdpr: true}
type policyFile struct {
	Tokens []struct {
		Identity string `yaml:"identity"`
		SHA256   string `yaml:"sha256"`
		Token    string `yaml:"token"`
	} `yaml:"tokens"`
	Certificates []string `yaml:"certificates"`
	StreamOpens  *struct {
		Rate  float64 `yaml:"rate"`
		Burst int     `yaml:"burst"`
	} `yaml:"stream_opens"`
	Rules map[string]struct {
		Read   []string `yaml:"read"`
		Write  []string `yaml:"write"`
		Delete []string `yaml:"delete"`
		Apply  bool     `yaml:"apply"`
		Retire bool     `yaml:"retire"`
		Gdpr   bool     `yaml:"gdpr"`
		Rate   float64  `yaml:"rate"`
		Burst  int      `yaml:"burst"`
	} `yaml:"rules"`
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// lines finds, in the policy's YAML tree, the line of each token entry and rule, so
// errors can point at them.
type lines struct {
	tokens []int
	rules  map[string]int
}

func policyLines(b []byte) lines {
	var l lines
	var doc yaml.Node
	if yaml.Unmarshal(b, &doc) != nil || len(doc.Content) == 0 {
		return l
	}
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "tokens":
			for _, e := range v.Content {
				l.tokens = append(l.tokens, e.Line)
			}
		case "rules":
			l.rules = map[string]int{}
			for j := 0; j+1 < len(v.Content); j += 2 {
				l.rules[v.Content[j].Value] = v.Content[j].Line
			}
		}
	}
	return l
}

// loadPolicy reads and checks an access policy strictly: unknown fields, a sha256 that is
// not 64 hex digits, a token listed twice, an identity given twice, and a rule for an
// identity no token or certificate names are errors naming the line.
func loadPolicy(path string) (server.Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return server.Policy{}, fmt.Errorf("-auth-policy: %w", err)
	}
	var f policyFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return server.Policy{}, fmt.Errorf("-auth-policy %s: %w", path, err)
	}
	ln := policyLines(b)
	at := func(line int) string { return fmt.Sprintf("%s:%d", path, line) }
	p := server.Policy{TokenHashes: map[string]string{}, Certificates: map[string]bool{}, Rules: map[string]server.Rule{}, StreamOpens: 20, StreamBurst: 40}
	if f.StreamOpens != nil {
		if f.StreamOpens.Rate < 0 || f.StreamOpens.Burst < 0 {
			return server.Policy{}, fmt.Errorf("-auth-policy %s: stream_opens must not be negative", path)
		}
		p.StreamOpens, p.StreamBurst = f.StreamOpens.Rate, f.StreamOpens.Burst
	}
	identities := map[string]bool{}
	tokenLine := map[string]int{}
	for i, t := range f.Tokens {
		line := 0
		if i < len(ln.tokens) {
			line = ln.tokens[i]
		}
		if t.Identity == "" || (t.SHA256 == "") == (t.Token == "") {
			return server.Policy{}, fmt.Errorf("%s: tokens[%d]: want an identity and exactly one of sha256 or token", at(line), i)
		}
		h := strings.ToLower(t.SHA256)
		if t.Token != "" {
			h = server.HashToken(t.Token)
		} else if !sha256Hex.MatchString(h) {
			return server.Policy{}, fmt.Errorf("%s: tokens[%d].sha256: want the 64 hex digits of a SHA-256", at(line), i)
		}
		if prev, dup := tokenLine[h]; dup {
			return server.Policy{}, fmt.Errorf("%s: tokens[%d]: the same token as on line %d; each token names one identity", at(line), i, prev)
		}
		tokenLine[h] = line
		p.TokenHashes[h] = t.Identity
		identities[t.Identity] = true
	}
	for _, cn := range f.Certificates {
		if cn == "" {
			return server.Policy{}, fmt.Errorf("-auth-policy %s: certificates: an empty name", path)
		}
		p.Certificates[cn] = true
		identities[cn] = true
	}
	for id, r := range f.Rules {
		if !identities[id] {
			return server.Policy{}, fmt.Errorf("%s: rules.%s: no token or certificate names this identity", at(ln.rules[id]), id)
		}
		if r.Rate < 0 || r.Burst < 0 {
			return server.Policy{}, fmt.Errorf("%s: rules.%s: rate and burst must not be negative", at(ln.rules[id]), id)
		}
		p.Rules[id] = server.Rule{Read: r.Read, Write: r.Write, Delete: r.Delete, Apply: r.Apply, Retire: r.Retire, Gdpr: r.Gdpr, Rate: r.Rate, Burst: r.Burst}
	}
	return p, nil
}

// security is the server's transport and authentication setup.
type security struct {
	opts []grpc.ServerOption
	auth *server.Auth // nil without an access policy
	// tls is the gRPC port's TLS configuration (nil: plaintext); the HTTP listener
	// serves with the same certificate and client CA settings.
	tls *tls.Config
}

// securityOptions builds the TLS and authentication options. It refuses to serve without
// authentication on a non-loopback address unless told it is insecure, and refuses
// bearer tokens over plaintext on a non-loopback address unless explicitly allowed: a
// token sent in the clear is a token given away.
func securityOptions(cfg config, logger *slog.Logger) (security, error) {
	var sec security
	tlsOn := cfg.TLSCert != "" || cfg.TLSKey != ""
	if tlsOn {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return sec, fmt.Errorf("-tls-cert/-tls-key: %w", err)
		}
		tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if cfg.TLSClientCA != "" {
			pem, err := os.ReadFile(cfg.TLSClientCA)
			if err != nil {
				return sec, fmt.Errorf("-tls-client-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return sec, errors.New("-tls-client-ca: no certificates found")
			}
			// By default certificates are verified when given, and callers without one may
			// use a token; -tls-require-client-cert refuses connections without one.
			tc.ClientCAs, tc.ClientAuth = pool, tls.VerifyClientCertIfGiven
			if cfg.RequireClientCert {
				tc.ClientAuth = tls.RequireAndVerifyClientCert
			}
		} else if cfg.RequireClientCert {
			return sec, errors.New("-tls-require-client-cert needs -tls-client-ca")
		}
		sec.opts = append(sec.opts, grpc.Creds(credentials.NewTLS(tc)))
		sec.tls = tc
	} else if cfg.TLSClientCA != "" || cfg.RequireClientCert {
		return sec, errors.New("-tls-client-ca and -tls-require-client-cert need -tls-cert and -tls-key")
	}
	if cfg.AuthPolicy == "" {
		if !cfg.Insecure && !loopback(cfg.Listen) {
			return sec, fmt.Errorf("refusing to serve without authentication on %s, which is not a loopback address: pass -auth-policy (with -tls-cert/-tls-key for mTLS), or -insecure if this is really wanted", cfg.Listen)
		}
		return sec, nil
	}
	p, err := loadPolicy(cfg.AuthPolicy)
	if err != nil {
		return sec, err
	}
	if len(p.TokenHashes) > 0 && !tlsOn && !loopback(cfg.Listen) && !cfg.AllowPlaintextTokens {
		return sec, fmt.Errorf("refusing bearer tokens over plaintext on %s, which is not a loopback address: serve TLS (-tls-cert/-tls-key), or pass -allow-plaintext-tokens if a trusted proxy terminates TLS", cfg.Listen)
	}
	sec.auth = server.NewAuth(p, logger)
	sec.opts = append(sec.opts, sec.auth.ServerOptions()...)
	return sec, nil
}

func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// valkeyOptions builds ValKey's credentials and TLS from the settings.
func valkeyOptions(cfg config) (valkey.Options, error) {
	o := valkey.Options{Username: cfg.ValkeyUsername, Password: cfg.ValkeyPassword, Replicas: cfg.ValkeyReplicas}
	if cfg.ValkeyPasswordFile != "" {
		if cfg.ValkeyPassword != "" {
			return o, errors.New("-valkey-password and -valkey-password-file: give one")
		}
		b, err := os.ReadFile(cfg.ValkeyPasswordFile)
		if err != nil {
			return o, fmt.Errorf("-valkey-password-file: %w", err)
		}
		o.Password = string(bytes.TrimSpace(b))
	}
	if !cfg.ValkeyTLS {
		if cfg.ValkeyTLSCA != "" || cfg.ValkeyTLSCert != "" || cfg.ValkeyTLSKey != "" {
			return o, errors.New("-valkey-tls-ca, -valkey-tls-cert and -valkey-tls-key need -valkey-tls")
		}
		return o, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.ValkeyTLSServerName}
	if cfg.ValkeyTLSCA != "" {
		pem, err := os.ReadFile(cfg.ValkeyTLSCA)
		if err != nil {
			return o, fmt.Errorf("-valkey-tls-ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return o, errors.New("-valkey-tls-ca: no certificates found")
		}
	}
	if cfg.ValkeyTLSCert != "" || cfg.ValkeyTLSKey != "" {
		cert, err := tls.LoadX509KeyPair(cfg.ValkeyTLSCert, cfg.ValkeyTLSKey)
		if err != nil {
			return o, fmt.Errorf("-valkey-tls-cert/-valkey-tls-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	o.TLS = tc
	return o, nil
}
