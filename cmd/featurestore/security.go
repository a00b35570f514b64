package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"gopkg.in/yaml.v3"

	"github.com/dsfeatures/featurestore/server"
)

// policyFile is the YAML form of the access policy:
//
//	tokens:
//	  - identity: ranker
//	    sha256: 5e88...   # hex SHA-256 of the token (preferred), or
//	    token: s3cret     # the token itself, for development
//	rules:
//	  ranker: {read: ["*"], write: [], apply: false, gdpr: false, rate: 1000, burst: 100}
//	  admin:  {read: ["*"], write: ["*"], apply: true, gdpr: true}   # e.g. a client certificate's CN
type policyFile struct {
	Tokens []struct {
		Identity string `yaml:"identity"`
		SHA256   string `yaml:"sha256"`
		Token    string `yaml:"token"`
	} `yaml:"tokens"`
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

func loadPolicy(path string) (server.Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return server.Policy{}, fmt.Errorf("-auth-policy: %w", err)
	}
	var f policyFile
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return server.Policy{}, fmt.Errorf("-auth-policy %s: %w", path, err)
	}
	p := server.Policy{TokenHashes: map[string]string{}, Rules: map[string]server.Rule{}}
	for i, t := range f.Tokens {
		if t.Identity == "" || (t.SHA256 == "") == (t.Token == "") {
			return server.Policy{}, fmt.Errorf("-auth-policy %s: tokens[%d]: want an identity and exactly one of sha256 or token", path, i)
		}
		h := strings.ToLower(t.SHA256)
		if t.Token != "" {
			h = server.HashToken(t.Token)
		}
		p.TokenHashes[h] = t.Identity
	}
	for id, r := range f.Rules {
		if r.Rate < 0 {
			return server.Policy{}, fmt.Errorf("-auth-policy %s: rules[%s].rate must not be negative", path, id)
		}
		p.Rules[id] = server.Rule{Read: r.Read, Write: r.Write, Delete: r.Delete, Apply: r.Apply, Retire: r.Retire, Gdpr: r.Gdpr, Rate: r.Rate, Burst: r.Burst}
	}
	return p, nil
}

// securityOptions builds the TLS and authentication options, and refuses to serve
// without authentication on a non-loopback address unless told it is insecure.
func securityOptions(cfg config) ([]grpc.ServerOption, error) {
	var opts []grpc.ServerOption
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("-tls-cert/-tls-key: %w", err)
		}
		tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if cfg.TLSClientCA != "" {
			pem, err := os.ReadFile(cfg.TLSClientCA)
			if err != nil {
				return nil, fmt.Errorf("-tls-client-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, errors.New("-tls-client-ca: no certificates found")
			}
			// Certificates are verified when given; callers without one may use a token.
			tc.ClientCAs, tc.ClientAuth = pool, tls.VerifyClientCertIfGiven
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	} else if cfg.TLSClientCA != "" {
		return nil, errors.New("-tls-client-ca needs -tls-cert and -tls-key")
	}
	if cfg.AuthPolicy != "" {
		p, err := loadPolicy(cfg.AuthPolicy)
		if err != nil {
			return nil, err
		}
		opts = append(opts, server.NewAuth(p).ServerOptions()...)
	} else if !cfg.Insecure && !loopback(cfg.Listen) {
		return nil, fmt.Errorf("refusing to serve without authentication on %s, which is not a loopback address: pass -auth-policy (with -tls-cert/-tls-key for mTLS), or -insecure if this is really wanted", cfg.Listen)
	}
	return opts, nil
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
