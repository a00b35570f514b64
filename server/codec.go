package server

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

// grpc-go answers a request it cannot unmarshal with INTERNAL, and nothing between the
// codec and the handler can change that. But a malformed message (bad wire format,
// invalid UTF-8 in a string) is the caller's mistake: INVALID_ARGUMENT. So the server's
// codec does not fail: it leaves the message empty but for one unknown field, far out of
// the API's range, that carries the parse error, and the first interceptor answers
// INVALID_ARGUMENT for any message that holds it.

// malformedField is the field number of the marker (the largest protobuf allows).
const malformedField protowire.Number = protowire.MaxValidNumber

// lenientCodec is grpc's proto codec, except that Unmarshal marks instead of failing.
type lenientCodec struct{ encoding.CodecV2 }

// Marshal is the proto codec's, and writes the columnar read's reply (a *columnsReply,
// see getColumnsHandler) as a GetFeatureColumnsResponse.
func (c lenientCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*columnsReply); ok {
		return r.marshal()
	}
	return c.CodecV2.Marshal(v)
}

func (c lenientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		if m1, ok1 := v.(protoadapt.MessageV1); ok1 {
			m, ok = protoadapt.MessageV2Of(m1), true
		}
	}
	if !ok {
		return err
	}
	proto.Reset(m)
	marker := protowire.AppendTag(nil, malformedField, protowire.BytesType)
	marker = protowire.AppendString(marker, featureTruncateError(err.Error()))
	m.ProtoReflect().SetUnknown(marker)
	return nil
}

// featureTruncateError keeps a parse error short and free of the request's bytes.
func featureTruncateError(msg string) string {
	msg = strings.TrimPrefix(msg, "proto: ")
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return msg
}

// malformed returns the parse error a message was marked with, if any.
func malformed(v any) (string, bool) {
	m, ok := v.(proto.Message)
	if !ok {
		return "", false
	}
	b := m.ProtoReflect().GetUnknown()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", false
		}
		b = b[n:]
		if num == malformedField && typ == protowire.BytesType {
			s, n := protowire.ConsumeString(b)
			if n < 0 {
				return "", false
			}
			return s, true
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return "", false
		}
		b = b[n:]
	}
	return "", false
}

func malformedStatus(why string) error {
	return newStatus(codes.InvalidArgument, reasonMalformed, "", "the request is not a valid message of this API: "+why, 0)
}

// codecOptions install the lenient codec and the interceptors that answer marked
// messages; they run before authorization, which has nothing to authorize in an empty
// message.
func codecOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(lenientCodec{encoding.GetCodecV2("proto")}),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if why, bad := malformed(req); bad {
				return nil, malformedStatus(why)
			}
			return handler(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			return handler(srv, malformedStream{ss})
		}),
	}
}

type malformedStream struct{ grpc.ServerStream }

func (s malformedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if why, bad := malformed(m); bad {
		return malformedStatus(why)
	}
	return nil
}
