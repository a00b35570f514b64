package dynamo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/dsfeatures/featurestore/featurestore/writethrough"
)

// NewClient returns a DynamoDB client for cfg (from config.LoadDefaultConfig in cmd).
// endpoint, if set, points it at another server such as DynamoDB Local. The HTTP
// transport keeps enough idle connections for the parallelism the lanes use; the SDK's
// default of a few per host makes batch writes open and close connections constantly.
func NewClient(cfg aws.Config, endpoint string, opts ...func(*dynamodb.Options)) *dynamodb.Client {
	cfg.HTTPClient = awshttp.NewBuildableClient().
		WithTimeout(30 * time.Second).
		WithTransportOptions(func(t *http.Transport) {
			t.MaxIdleConns = 512
			t.MaxIdleConnsPerHost = 256
			t.IdleConnTimeout = 90 * time.Second
		})
	return dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
			// DynamoDB Local's CRC32 header does not match compressed bodies; the SDK then
			// logs a warning per call and drops the connection from its pool.
			o.DisableValidateResponseChecksum = true
		}
	}, classifyRefusals, func(o *dynamodb.Options) {
		for _, f := range opts {
			f(o)
		}
	})
}

// LocalConfig is an aws.Config for DynamoDB Local, which accepts any credentials.
func LocalConfig() aws.Config {
	return aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", ""),
	}
}

// LoadConfig loads the AWS configuration the usual way (environment, shared files, IAM
// role) for region. For an endpoint on a loopback address, which can only be DynamoDB
// Local, it uses fixed credentials so developers need not configure any.
func LoadConfig(ctx context.Context, region, endpoint string) (aws.Config, error) {
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(region)}
	if isLoopback(endpoint) {
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("local", "local", "")))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("aws config: %w", err)
	}
	return cfg, nil
}

func isLoopback(endpoint string) bool {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// classifyRefusals marks, on every operation, DynamoDB's refusals that no retry can
// change (a ValidationException: an item or request over its limits, a key too long)
// with writethrough.ErrItemTooLarge or writethrough.ErrRefused, so that no caller
// mistakes them for an outage and answers UNAVAILABLE, which clients retry forever.
func classifyRefusals(o *dynamodb.Options) {
	o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("featurestoreRefusals",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				out, md, err := next.HandleInitialize(ctx, in)
				return out, md, classify(err)
			}), middleware.After)
	})
}

// classify wraps a ValidationException in the writethrough error it means.
func classify(err error) error {
	var api smithy.APIError
	if err == nil || !errors.As(err, &api) || api.ErrorCode() != "ValidationException" {
		return err
	}
	if tooLarge(err) {
		return fmt.Errorf("%w: %w", writethrough.ErrItemTooLarge, err)
	}
	return fmt.Errorf("%w: %w", writethrough.ErrRefused, err)
}
