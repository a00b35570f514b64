package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/tap"

	"github.com/dsfeatures/featurestore/featurestore"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// Policy says who may call and what each identity may do. An identity is a client
// certificate's common name (mTLS) or the name a bearer token maps to.
type Policy struct {
	// TokenHashes maps the hex SHA-256 of a bearer token to its identity.
	TokenHashes map[string]string
	// Certificates lists the identities that authenticate with a client certificate (its
	// common name); a verified certificate of another name is refused.
	Certificates map[string]bool
	// Rules maps an identity to its permissions; an identity without a rule may only read
	// the registry entries of sets it may read (none).
	Rules map[string]Rule
	// StreamOpens limits the streams each identity opens per second (burst StreamBurst);
	// 0 is unlimited. Streams are long-lived, so opening many is either a bug or an attack.
	StreamOpens float64
	StreamBurst int
}

// Rule is one identity's permissions.
type Rule struct {
	// Read, Write and Delete list feature set names, or "*" for all. Delete allows
	// DeleteEntities.
	Read, Write, Delete []string
	// Apply allows ApplyFeatureSet; Retire allows DeleteFeatureSet; Gdpr allows the
	// GdprService.
	Apply, Retire, Gdpr bool
	// Rate limits requests (stream messages count one each) per second; 0 is unlimited.
	Rate  float64
	Burst int
}

// HashToken is how tokens are stored in a Policy.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func allowed(list []string, set string) bool {
	for _, s := range list {
		if s == "*" || s == set {
			return true
		}
	}
	return false
}

// Auth authenticates callers at the transport, before a request's body is read, so an
// unauthenticated caller costs the server a header's worth of work; then it authorizes
// each call (and each stream message) against the Policy and applies per-identity rate
// limits. Only the health service needs no credentials.
type Auth struct {
	policy Policy
	logger *slog.Logger

	mu       sync.Mutex
	limiters map[string]*rate.Limiter
	opens    map[string]*rate.Limiter
}

// NewAuth returns an Auth for p that logs refused authentications to logger.
func NewAuth(p Policy, logger *slog.Logger) *Auth {
	return &Auth{policy: p, logger: logger, limiters: map[string]*rate.Limiter{}, opens: map[string]*rate.Limiter{}}
}

type identityKey struct{}

// Identity returns the caller's identity set by Auth, or "" when authentication is off.
func Identity(ctx context.Context) string {
	id, _ := ctx.Value(identityKey{}).(string)
	return id
}

// IdentifyToken returns the identity a bearer token maps to.
func (a *Auth) IdentifyToken(token string) (string, bool) {
	id, ok := a.policy.TokenHashes[HashToken(strings.TrimSpace(token))]
	return id, ok
}

// IdentifyCertificate returns the identity of a verified client certificate's common
// name, if the policy lists it.
func (a *Auth) IdentifyCertificate(cn string) (string, bool) {
	return cn, cn != "" && a.policy.Certificates[cn]
}

// MayRead reports whether identity may read the named feature set.
func (a *Auth) MayRead(identity, set string) bool {
	return allowed(a.policy.Rules[identity].Read, set)
}

// MayGdpr reports whether identity may use the GDPR service.
func (a *Auth) MayGdpr(identity string) bool { return a.policy.Rules[identity].Gdpr }

// errUnauthenticated is the one answer to a caller that could not be authenticated; the
// reason goes to the log, not to the caller.
var errUnauthenticated = newStatus(codes.Unauthenticated, reasonUnauthenticated, "",
	"credentials required: a client certificate listed in the access policy, or an 'authorization: Bearer <token>' header with a known token", 0)

// identify finds the caller: a verified client certificate first, then a bearer token.
func (a *Auth) identify(ctx context.Context, md metadata.MD) (string, string) {
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 && len(ti.State.VerifiedChains[0]) > 0 {
			cn := ti.State.VerifiedChains[0][0].Subject.CommonName
			if id, ok := a.IdentifyCertificate(cn); ok {
				return id, ""
			}
			return "", "client certificate not in the access policy"
		}
	}
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return "", "no credentials"
	}
	token, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok {
		return "", "authorization header is not a bearer token"
	}
	if id, ok := a.IdentifyToken(token); ok {
		return id, ""
	}
	return "", "unknown bearer token"
}

// open reports methods that need no credentials: health, which tells nothing but
// SERVING or NOT_SERVING. Reflection describes the API, so it needs an identity.
func open(method string) bool { return strings.HasPrefix(method, "/grpc.health.v1.") }

// TapHandle authenticates a new stream from its headers and connection, before the
// server reads its messages, and carries the identity in the stream's context. It is a
// tap.ServerInHandle.
func (a *Auth) TapHandle(ctx context.Context, info *tap.Info) (context.Context, error) {
	if open(info.FullMethodName) {
		return ctx, nil
	}
	id, why := a.identify(ctx, info.Header)
	if id == "" {
		addr := "unknown"
		if p, ok := peer.FromContext(ctx); ok {
			addr = p.Addr.String()
		}
		// The secret never goes to the log: only who tried, what, and why it failed.
		a.logger.WarnContext(ctx, "authentication failed", "peer", addr, "method", featurestore.Truncate(info.FullMethodName), "reason", why)
		return ctx, errUnauthenticated
	}
	return context.WithValue(ctx, identityKey{}, id), nil
}

// limiter returns id's limiter from m, making it from rps and burst; nil means unlimited.
func (a *Auth) limiter(m map[string]*rate.Limiter, id string, rps float64, burst int) *rate.Limiter {
	if rps <= 0 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := m[id]
	if !ok {
		l = rate.NewLimiter(rate.Limit(rps), max(burst, 1))
		m[id] = l
	}
	return l
}

func (a *Auth) limit(id string) error {
	r := a.policy.Rules[id]
	if l := a.limiter(a.limiters, id, r.Rate, r.Burst); l != nil && !l.Allow() {
		return newStatus(codes.ResourceExhausted, featurestore.ReasonRateLimited, "", fmt.Sprintf("rate limit of %g requests/s for %q exceeded; retry with backoff", r.Rate, id), rateLimitRetry)
	}
	return nil
}

func denied(id, what string) error {
	return newStatus(codes.PermissionDenied, reasonPermissionDenied, "", fmt.Sprintf("%q may not %s", id, what), 0)
}

// authorize checks one request (or stream message) of method for id. Names from the
// request are truncated in the answer: a hostile name must not come back as megabytes.
func (a *Auth) authorize(id, method string, req any) error {
	rule := a.policy.Rules[id]
	q := featurestore.Truncate
	switch r := req.(type) {
	case *pb.GetFeaturesRequest, *pb.GetFeatureColumnsRequest:
		for _, ref := range req.(interface{ GetFeatures() []string }).GetFeatures() {
			set, _, _ := strings.Cut(ref, ":")
			if !allowed(rule.Read, set) {
				return denied(id, fmt.Sprintf("read feature set %q", q(set)))
			}
		}
	case *pb.WriteFeaturesRequest:
		if !allowed(rule.Write, r.GetFeatureSet()) {
			return denied(id, fmt.Sprintf("write feature set %q", q(r.GetFeatureSet())))
		}
	case *pb.StreamWriteFeaturesRequest:
		if !allowed(rule.Write, r.GetFeatureSet()) {
			return denied(id, fmt.Sprintf("write feature set %q", q(r.GetFeatureSet())))
		}
	case *pb.BatchWriteFeaturesRequest:
		if !allowed(rule.Write, r.GetFeatureSet()) {
			return denied(id, fmt.Sprintf("write feature set %q", q(r.GetFeatureSet())))
		}
	case *pb.DeleteEntitiesRequest:
		if !allowed(rule.Delete, r.GetFeatureSet()) {
			return denied(id, fmt.Sprintf("delete entities of feature set %q", q(r.GetFeatureSet())))
		}
	case *pb.ApplyFeatureSetRequest:
		if !rule.Apply {
			return denied(id, "apply feature sets")
		}
	case *pb.DeleteFeatureSetRequest:
		if !rule.Retire {
			return denied(id, "retire feature sets")
		}
	case *pb.DeleteSubjectRequest, *pb.GetDeletionRequest:
		if !rule.Gdpr {
			return denied(id, "use the GDPR service")
		}
	case *pb.GetFeatureSetRequest:
		if !allowed(rule.Read, r.GetName()) {
			return denied(id, fmt.Sprintf("read feature set %q", q(r.GetName())))
		}
	case *pb.ListFeatureSetsRequest:
		// Allowed; the handler lists only the sets id may read.
	default:
		if strings.HasPrefix(method, "/grpc.reflection.") {
			return nil // any authenticated identity may describe the API
		}
		return newStatus(codes.PermissionDenied, reasonPermissionDenied, "", q(method)+" is not covered by the access policy", 0)
	}
	return nil
}

// authenticated returns the identity TapHandle put in ctx; a call without one (possible
// only if the tap is not installed) is refused.
func authenticated(ctx context.Context) (string, error) {
	if id := Identity(ctx); id != "" {
		return id, nil
	}
	return "", errUnauthenticated
}

// Unary is the interceptor for unary RPCs.
func (a *Auth) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if open(info.FullMethod) {
			return handler(ctx, req)
		}
		id, err := authenticated(ctx)
		if err != nil {
			return nil, err
		}
		if err := a.limit(id); err != nil {
			return nil, err
		}
		if err := a.authorize(id, info.FullMethod, req); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// Stream is the interceptor for streaming RPCs: opening a stream counts against the
// identity's stream-open limit, and every received message is rate-limited and
// authorized, since each may name another feature set.
func (a *Auth) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if open(info.FullMethod) {
			return handler(srv, ss)
		}
		id, err := authenticated(ss.Context())
		if err != nil {
			return err
		}
		if l := a.limiter(a.opens, id, a.policy.StreamOpens, a.policy.StreamBurst); l != nil && !l.Allow() {
			return newStatus(codes.ResourceExhausted, featurestore.ReasonRateLimited, "",
				fmt.Sprintf("%q opens streams faster than %g/s; keep streams open and reuse them", id, a.policy.StreamOpens), rateLimitRetry)
		}
		return handler(srv, &authStream{ServerStream: ss, a: a, id: id, method: info.FullMethod})
	}
}

type authStream struct {
	grpc.ServerStream
	a          *Auth
	id, method string
}

func (s *authStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if err := s.a.limit(s.id); err != nil {
		return err
	}
	return s.a.authorize(s.id, s.method, m)
}

// ServerOptions installs a's tap handle and interceptors (after the server's own).
func (a *Auth) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.InTapHandle(a.TapHandle), grpc.ChainUnaryInterceptor(a.Unary()), grpc.ChainStreamInterceptor(a.Stream())}
}

// readable filters sets to those the caller may read when authentication is on.
func readable(ctx context.Context, a *Auth, sets []featurestore.FeatureSet) []featurestore.FeatureSet {
	if a == nil {
		return sets
	}
	id := Identity(ctx)
	out := sets[:0]
	for _, fs := range sets {
		if a.MayRead(id, fs.Name) {
			out = append(out, fs)
		}
	}
	return out
}
