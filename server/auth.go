package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/dsfeatures/featurestore/featurestore"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// Policy says who may call and what each identity may do. An identity is a client
// certificate's common name (mTLS) or the name a bearer token maps to.
type Policy struct {
	// TokenHashes maps the hex SHA-256 of a bearer token to its identity.
	TokenHashes map[string]string
	// Rules maps an identity to its permissions; an identity without a rule may only read
	// the registry.
	Rules map[string]Rule
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

// Auth authenticates callers, authorizes each call against the Policy, and applies
// per-identity rate limits. Health checks and reflection need no credentials.
type Auth struct {
	policy   Policy
	mu       sync.Mutex
	limiters map[string]*rate.Limiter
}

// NewAuth returns an Auth for p.
func NewAuth(p Policy) *Auth { return &Auth{policy: p, limiters: map[string]*rate.Limiter{}} }

type identityKey struct{}

// Identity returns the caller's identity set by the Auth interceptors, or "" when
// authentication is off.
func Identity(ctx context.Context) string {
	id, _ := ctx.Value(identityKey{}).(string)
	return id
}

// identify finds the caller: a verified client certificate first, then a bearer token.
func (a *Auth) identify(ctx context.Context) (string, error) {
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 && len(ti.State.VerifiedChains[0]) > 0 {
			if cn := ti.State.VerifiedChains[0][0].Subject.CommonName; cn != "" {
				return cn, nil
			}
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		token, ok := strings.CutPrefix(v, "Bearer ")
		if !ok {
			continue
		}
		if id, ok := a.policy.TokenHashes[HashToken(strings.TrimSpace(token))]; ok {
			return id, nil
		}
		return "", newStatus(codes.Unauthenticated, reasonUnauthenticated, "", "unknown bearer token", 0)
	}
	return "", newStatus(codes.Unauthenticated, reasonUnauthenticated, "", "credentials required: a client certificate or an 'authorization: Bearer <token>' header", 0)
}

func (a *Auth) limit(id string) error {
	r, ok := a.policy.Rules[id]
	if !ok || r.Rate <= 0 {
		return nil
	}
	a.mu.Lock()
	l, ok := a.limiters[id]
	if !ok {
		l = rate.NewLimiter(rate.Limit(r.Rate), max(r.Burst, 1))
		a.limiters[id] = l
	}
	a.mu.Unlock()
	if !l.Allow() {
		return newStatus(codes.ResourceExhausted, featurestore.ReasonRateLimited, "", fmt.Sprintf("rate limit of %g requests/s for %q exceeded; retry with backoff", r.Rate, id), rateLimitRetry)
	}
	return nil
}

func denied(id, what string) error {
	return newStatus(codes.PermissionDenied, reasonPermissionDenied, "", fmt.Sprintf("%q may not %s", id, what), 0)
}

// authorize checks one request (or stream message) of method for id.
func (a *Auth) authorize(id, method string, req any) error {
	rule := a.policy.Rules[id]
	switch r := req.(type) {
	case *pb.GetFeaturesRequest, *pb.GetFeatureColumnsRequest:
		refs := req.(interface{ GetFeatures() []string }).GetFeatures()
		for _, ref := range refs {
			set, _, _ := strings.Cut(ref, ":")
			if !allowed(rule.Read, set) {
				return denied(id, fmt.Sprintf("read feature set %q", set))
			}
		}
	case *pb.WriteFeaturesRequest:
		if !allowed(rule.Write, r.GetFeatureSet()) {
			return denied(id, fmt.Sprintf("write feature set %q", r.GetFeatureSet()))
		}
	case *pb.StreamWriteFeaturesRequest:
		if !allowed(rule.Write, r.GetFeatureSet()) {
			return denied(id, fmt.Sprintf("write feature set %q", r.GetFeatureSet()))
		}
	case *pb.BatchWriteFeaturesRequest:
		if !allowed(rule.Write, r.GetFeatureSet()) {
			return denied(id, fmt.Sprintf("write feature set %q", r.GetFeatureSet()))
		}
	case *pb.DeleteEntitiesRequest:
		if !allowed(rule.Delete, r.GetFeatureSet()) {
			return denied(id, fmt.Sprintf("delete entities of feature set %q", r.GetFeatureSet()))
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
	case *pb.GetFeatureSetRequest, *pb.ListFeatureSetsRequest:
		// Every authenticated identity may read the registry.
	default:
		return newStatus(codes.PermissionDenied, reasonPermissionDenied, "", method+" is not covered by the access policy", 0)
	}
	return nil
}

func open(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.") || strings.HasPrefix(method, "/grpc.reflection.")
}

// Unary is the interceptor for unary RPCs.
func (a *Auth) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if open(info.FullMethod) {
			return handler(ctx, req)
		}
		id, err := a.identify(ctx)
		if err != nil {
			return nil, err
		}
		if err := a.limit(id); err != nil {
			return nil, err
		}
		if err := a.authorize(id, info.FullMethod, req); err != nil {
			return nil, err
		}
		return handler(context.WithValue(ctx, identityKey{}, id), req)
	}
}

// Stream is the interceptor for streaming RPCs: every received message is rate-limited
// and authorized, since each may name another feature set.
func (a *Auth) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if open(info.FullMethod) {
			return handler(srv, ss)
		}
		id, err := a.identify(ss.Context())
		if err != nil {
			return err
		}
		return handler(srv, &authStream{ServerStream: ss, a: a, id: id, method: info.FullMethod,
			ctx: context.WithValue(ss.Context(), identityKey{}, id)})
	}
}

type authStream struct {
	grpc.ServerStream
	a          *Auth
	id, method string
	ctx        context.Context
}

func (s *authStream) Context() context.Context { return s.ctx }

func (s *authStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if err := s.a.limit(s.id); err != nil {
		return err
	}
	return s.a.authorize(s.id, s.method, m)
}

// ServerOptions installs a's interceptors (after the server's own).
func (a *Auth) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(a.Unary()), grpc.ChainStreamInterceptor(a.Stream())}
}
