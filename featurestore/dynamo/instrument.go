package dynamo

import (
	"context"
	"errors"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Metrics receives one call per attempt of a DynamoDB operation (the SDK retries
// throttles and transient errors), so retries are attempts beyond the calls.
type Metrics interface {
	DynamoAttempt(ctx context.Context, operation string, throttled bool, err error)
}

// throttleCodes are DynamoDB's throttling error codes.
var throttleCodes = map[string]bool{
	"ProvisionedThroughputExceededException": true, "ThrottlingException": true,
	"RequestLimitExceeded": true, "TransactionInProgressException": false,
}

// Instrument counts every attempt in m and traces every operation with tracer (either may
// be nil). Pass it to NewClient.
func Instrument(m Metrics, tracer trace.Tracer) func(*dynamodb.Options) {
	return func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			if tracer != nil {
				if err := stack.Initialize.Add(middleware.InitializeMiddlewareFunc("featurestoreSpan",
					func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
						ctx, span := tracer.Start(ctx, "dynamodb."+awsmiddleware.GetOperationName(ctx), trace.WithSpanKind(trace.SpanKindClient))
						defer span.End()
						out, md, err := next.HandleInitialize(ctx, in)
						if err != nil {
							span.SetStatus(codes.Error, err.Error())
						}
						return out, md, err
					}), middleware.Before); err != nil {
					return err
				}
			}
			if m == nil {
				return nil
			}
			return stack.Finalize.Insert(middleware.FinalizeMiddlewareFunc("featurestoreAttempts",
				func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
					out, md, err := next.HandleFinalize(ctx, in)
					var ae smithy.APIError
					throttled := errors.As(err, &ae) && throttleCodes[ae.ErrorCode()]
					m.DynamoAttempt(ctx, awsmiddleware.GetOperationName(ctx), throttled, err)
					return out, md, err
				}), "Retry", middleware.After)
		})
	}
}

// countAttempts is a per-call option that counts the attempts the SDK makes, so that a
// conditional write can tell a first answer from one to a retry.
func countAttempts(n *int) func(*dynamodb.Options) {
	return func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			return stack.Finalize.Insert(middleware.FinalizeMiddlewareFunc("featurestoreCountAttempts",
				func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
					*n++
					return next.HandleFinalize(ctx, in)
				}), "Retry", middleware.After)
		})
	}
}
