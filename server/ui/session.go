package ui

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Cookie names. Both are scoped to /ui/.
const (
	sessionCookie = "fs_session"
	csrfCookie    = "fs_csrf"
)

// maxIdentityLen bounds the identity a session cookie may carry.
const maxIdentityLen = 256

// sessions signs and checks session cookies and CSRF tokens with one HMAC key. Each use
// has its own label in the MAC's input, so a value made for one use is worthless for
// another.
type sessions struct {
	key []byte
	ttl time.Duration
}

// b64 encodes without padding and decodes strictly: a lenient decoder accepts several
// spellings of one value (nonzero unused bits in the last character), so one cookie or
// token would have many forms that all verify (found by FuzzParseSession).
var b64 = base64.RawURLEncoding.Strict()

func (s sessions) mac(parts ...string) []byte {
	m := hmac.New(sha256.New, s.key)
	for _, p := range parts {
		// Length-prefixed, so no two part lists give the same input.
		m.Write([]byte(strconv.Itoa(len(p))))
		m.Write([]byte{':'})
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}

// issue returns a session cookie value for identity, valid until now + ttl:
// "v1.<identity, base64url>.<expiry, Unix seconds>.<HMAC, base64url>".
func (s sessions) issue(identity string, now time.Time) string {
	exp := strconv.FormatInt(now.Add(s.ttl).Unix(), 10)
	return "v1." + b64.EncodeToString([]byte(identity)) + "." + exp + "." + b64.EncodeToString(s.mac("session", identity, exp))
}

// Errors of parseSession and verify; they go to the log, never to the visitor.
var (
	errMalformedSession = errors.New("malformed session cookie")
	errBadSignature     = errors.New("session cookie signature does not match")
	errExpiredSession   = errors.New("session expired")
)

// session is a parsed session cookie.
type session struct {
	identity string
	expiry   int64
	exp      string // the expiry as written, which the MAC covers
	mac      []byte
}

// parseSession splits a session cookie value without checking its signature. It accepts
// only what issue produces: the version, a non-empty UTF-8 identity of at most
// maxIdentityLen bytes, a positive decimal expiry and a 32-byte MAC.
func parseSession(v string) (session, error) {
	parts := strings.Split(v, ".")
	if len(parts) != 4 || parts[0] != "v1" {
		return session{}, errMalformedSession
	}
	id, err := b64.DecodeString(parts[1])
	if err != nil || len(id) == 0 || len(id) > maxIdentityLen || !utf8.Valid(id) {
		return session{}, errMalformedSession
	}
	if len(parts[2]) == 0 || len(parts[2]) > 19 || parts[2][0] == '0' {
		return session{}, errMalformedSession
	}
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || exp <= 0 {
		return session{}, errMalformedSession
	}
	mac, err := b64.DecodeString(parts[3])
	if err != nil || len(mac) != sha256.Size {
		return session{}, errMalformedSession
	}
	return session{identity: string(id), expiry: exp, exp: parts[2], mac: mac}, nil
}

// verify returns the identity of a session cookie value that s issued and that has not
// expired at now.
func (s sessions) verify(v string, now time.Time) (string, error) {
	p, err := parseSession(v)
	if err != nil {
		return "", err
	}
	if !hmac.Equal(p.mac, s.mac("session", p.identity, p.exp)) {
		return "", errBadSignature
	}
	if now.Unix() >= p.expiry {
		return "", errExpiredSession
	}
	return p.identity, nil
}

// loginCSRF returns a fresh nonce for the login form's cookie and the token the form
// carries: the nonce's MAC. A forged form cannot know the victim's nonce.
func (s sessions) loginCSRF() (nonce, token string) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	nonce = b64.EncodeToString(b[:])
	return nonce, b64.EncodeToString(s.mac("login-csrf", nonce))
}

// checkLoginCSRF reports whether token is the login form's token for nonce.
func (s sessions) checkLoginCSRF(nonce, token string) bool {
	got, err := b64.DecodeString(token)
	return err == nil && nonce != "" && hmac.Equal(got, s.mac("login-csrf", nonce))
}

// logoutCSRF is the logout form's token: bound to the session it ends.
func (s sessions) logoutCSRF(sessionValue string) string {
	return b64.EncodeToString(s.mac("logout-csrf", sessionValue))
}

func (s sessions) checkLogoutCSRF(sessionValue, token string) bool {
	got, err := b64.DecodeString(token)
	return err == nil && sessionValue != "" && hmac.Equal(got, s.mac("logout-csrf", sessionValue))
}

// cookie builds one of the page's cookies: HttpOnly, SameSite=Strict, scoped to /ui/,
// Secure when the request came over TLS, and without Max-Age, so the browser drops it
// when its session ends (the value's own expiry bounds it further).
func cookie(r *http.Request, name, value string) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/ui/", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode}
}

// expired is a cookie that deletes name.
func expired(r *http.Request, name string) *http.Cookie {
	c := cookie(r, name, "")
	c.MaxAge = -1
	return c
}

// peer is the client's address for logs: the host only.
func peer(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}
