package server

import (
	"context"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/dsfeatures/featurestore/gdpr"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// Deletions is what the GDPR handlers need; *gdpr.Service implements it.
type Deletions interface {
	DeleteSubject(ctx context.Context, subject, reason, by string) (gdpr.Job, error)
	GetDeletion(ctx context.Context, id string) (gdpr.Job, error)
}

// Gdpr implements GdprService.
type Gdpr struct {
	pb.UnimplementedGdprServiceServer
	deletions Deletions
	logger    *slog.Logger
}

var _ pb.GdprServiceServer = (*Gdpr)(nil)

// errNoGdpr answers GDPR calls on a server wired without deletions.
var errNoGdpr = newStatus(codes.Unimplemented, reasonUnimplemented, "", "GDPR deletion is not enabled on this server", 0)

// NewGdpr returns the GDPR handlers; with nil deletions they answer Unimplemented.
func NewGdpr(d Deletions, logger *slog.Logger) *Gdpr { return &Gdpr{deletions: d, logger: logger} }

// callerIdentity names who asked, for the audit trail: the authenticated identity, or
// "unauthenticated" when the server runs without authentication. The peer address is
// deliberately not recorded.
func callerIdentity(ctx context.Context) string {
	if id := Identity(ctx); id != "" {
		return id
	}
	return "unauthenticated"
}

// DeleteSubject files a deletion; it is durable when this returns.
func (g *Gdpr) DeleteSubject(ctx context.Context, req *pb.DeleteSubjectRequest) (*pb.DeleteSubjectResponse, error) {
	if g.deletions == nil {
		return nil, errNoGdpr
	}
	j, err := g.deletions.DeleteSubject(ctx, req.GetSubjectId(), req.GetReason(), callerIdentity(ctx))
	if err != nil {
		return nil, toStatus(ctx, g.logger, "DeleteSubject", err)
	}
	return &pb.DeleteSubjectResponse{Deletion: deletionToProto(j)}, nil
}

// GetDeletion reports a deletion's progress.
func (g *Gdpr) GetDeletion(ctx context.Context, req *pb.GetDeletionRequest) (*pb.GetDeletionResponse, error) {
	if g.deletions == nil {
		return nil, errNoGdpr
	}
	j, err := g.deletions.GetDeletion(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(ctx, g.logger, "GetDeletion", err)
	}
	return &pb.GetDeletionResponse{Deletion: deletionToProto(j)}, nil
}

func deletionToProto(j gdpr.Job) *pb.Deletion {
	d := &pb.Deletion{Id: j.ID, SubjectId: j.Subject, RequestedAt: timestamppb.New(j.RequestedAt), ItemsDeleted: j.ItemsDeleted}
	if j.State == gdpr.Failed {
		d.FailureReason = j.Failure
	}
	switch j.State {
	case gdpr.Pending:
		d.State = pb.DeletionState_DELETION_STATE_PENDING
	case gdpr.Running:
		d.State = pb.DeletionState_DELETION_STATE_RUNNING
	case gdpr.Done:
		d.State = pb.DeletionState_DELETION_STATE_DONE
		d.SubjectId = "" // once the job has ended, no record of it names the subject
	case gdpr.Failed:
		d.State = pb.DeletionState_DELETION_STATE_FAILED
		d.SubjectId = ""
	}
	if !j.CompletedAt.IsZero() {
		d.CompletedAt = timestamppb.New(j.CompletedAt)
	}
	return d
}
