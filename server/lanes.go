package server

import (
	"github.com/dsfeatures/featurestore/ingest"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// StreamWriteFeatures is the streaming lane: each request is acknowledged by sequence once
// durable; see ingest.Stream for ordering and failure semantics.
func (s *Server) StreamWriteFeatures(stream pb.FeatureStoreService_StreamWriteFeaturesServer) error {
	ctx := stream.Context()
	err := ingest.Stream(ctx, s.lanes,
		func() (ingest.StreamRequest, error) {
			req, err := stream.Recv()
			if err != nil {
				return ingest.StreamRequest{}, err
			}
			return ingest.StreamRequest{Sequence: req.GetSequence(), Set: req.GetFeatureSet(), Rows: rowsFromProtoLenient(req.GetRows())}, nil
		},
		func(ack ingest.StreamAck) error {
			countRows(ctx, s.opts.Metrics, "stream", ack.Results)
			return stream.Send(&pb.StreamWriteFeaturesResponse{Sequence: ack.Sequence, Results: rowResultsToProto(ack.Results)})
		},
		ingest.StreamOptions{MaxInFlight: s.opts.StreamInFlight})
	return toStatus(ctx, s.logger, "StreamWriteFeatures", err)
}

// BatchWriteFeatures is the batch lane: chunks in, one summary out.
func (s *Server) BatchWriteFeatures(stream pb.FeatureStoreService_BatchWriteFeaturesServer) error {
	ctx := stream.Context()
	sum, err := ingest.Batch(ctx, s.lanes,
		func() (ingest.BatchChunk, error) {
			req, err := stream.Recv()
			if err != nil {
				return ingest.BatchChunk{}, err
			}
			return ingest.BatchChunk{Set: req.GetFeatureSet(), Rows: rowsFromProtoLenient(req.GetRows())}, nil
		},
		ingest.BatchOptions{MaxInFlight: s.opts.BatchInFlight})
	if err != nil {
		return toStatus(ctx, s.logger, "BatchWriteFeatures", err)
	}
	s.opts.Metrics.Rows(ctx, "batch", int(sum.Written), int(sum.Stale), int(sum.Rejected))
	out := &pb.BatchWriteFeaturesResponse{RowsWritten: sum.Written, RowsStale: sum.Stale, RowsRejected: sum.Rejected, RowsRetried: sum.Retried}
	for _, e := range sum.Errors {
		out.Errors = append(out.Errors, &pb.BatchError{Row: e.Row, EntityId: e.EntityID, Error: e.Error, Reason: e.Reason})
	}
	return stream.SendAndClose(out)
}
