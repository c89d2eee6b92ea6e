package registry

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/bufbuild/protocompile"
	"github.com/twmb/franz-go/pkg/sr"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// maxMessageIndexes bounds the message-index path of a Protobuf frame
// (nesting of the message type in its file).
const maxMessageIndexes = 32

// compileProto compiles a registry's .proto text. Imports of the
// well-known types (google/protobuf/*.proto) resolve; any other import is
// a reference, which the caller has already refused.
func compileProto(ctx context.Context, id int, text string) (protoreflect.FileDescriptor, error) {
	name := fmt.Sprintf("registry-schema-%d.proto", id)
	c := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
			Accessor: protocompile.SourceAccessorFromMap(map[string]string{name: text}),
		}),
	}
	files, err := c.Compile(ctx, name)
	if err != nil {
		return nil, err
	}
	return files[0], nil
}

// decodeProto reads the message-index path after the schema id, then the
// message it names, and turns it into JSON values.
func decodeProto(fd protoreflect.FileDescriptor, body []byte) (any, error) {
	index, rest, err := (&sr.ConfluentHeader{}).DecodeIndex(body, maxMessageIndexes)
	if err != nil {
		return nil, fmt.Errorf("message indexes: %v", err)
	}
	var md protoreflect.MessageDescriptor
	msgs := fd.Messages()
	for i, n := range index {
		if n < 0 || n >= msgs.Len() {
			return nil, fmt.Errorf("message index %v: no message %d at level %d", index, n, i)
		}
		md = msgs.Get(n)
		msgs = md.Messages()
	}
	m := dynamicpb.NewMessage(md)
	if err := unmarshalProto(rest, m); err != nil {
		return nil, fmt.Errorf("%s: %v", md.FullName(), err)
	}
	return protoMessage(m)
}

// unmarshalProto is proto.Unmarshal that turns a panic into an error:
// google.golang.org/protobuf v1.36 panics on some malformed map entries of
// a dynamic message ("cannot convert nil to map key", found by
// FuzzDecodeProtobuf), and a record must be dead-lettered, never crash the
// projector.
func unmarshalProto(b []byte, m *dynamicpb.Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed message: %v", r)
		}
	}()
	return proto.UnmarshalOptions{}.Unmarshal(b, m)
}

// protoMessage converts a message field by field, with the field names of
// the .proto file (the configured id and version fields are named there),
// 64-bit integers as JSON numbers (protojson writes them as strings, which
// the version check would refuse), every field present (proto3 does not
// tell a zero from an absent value; an empty id is then dead-lettered as
// missing), and the well-known types in their protojson form.
func protoMessage(m protoreflect.Message) (any, error) {
	if len(m.GetUnknown()) > 0 {
		return nil, fmt.Errorf("%s: %d bytes of fields the schema does not declare", m.Descriptor().FullName(), len(m.GetUnknown()))
	}
	if strings.HasPrefix(string(m.Descriptor().FullName()), "google.protobuf.") {
		b, err := protojson.Marshal(m.Interface())
		if err != nil {
			return nil, err
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		return v, nil
	}
	out := map[string]any{}
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		name := string(f.Name())
		switch {
		case f.IsList():
			l := m.Get(f).List()
			a := make([]any, l.Len())
			for j := range l.Len() {
				v, err := protoValue(f, l.Get(j))
				if err != nil {
					return nil, fmt.Errorf("%s[%d]: %w", name, j, err)
				}
				a[j] = v
			}
			out[name] = a
		case f.IsMap():
			mm := map[string]any{}
			var ferr error
			m.Get(f).Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
				cv, err := protoValue(f.MapValue(), v)
				if err != nil {
					ferr = fmt.Errorf("%s[%v]: %w", name, k, err)
					return false
				}
				mm[k.String()] = cv
				return true
			})
			if ferr != nil {
				return nil, ferr
			}
			out[name] = mm
		case f.ContainingOneof() != nil && !m.Has(f):
			// Only the member of a oneof that is set.
		case f.Kind() == protoreflect.MessageKind && !m.Has(f):
			out[name] = nil
		default:
			v, err := protoValue(f, m.Get(f))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			out[name] = v
		}
	}
	return out, nil
}

func protoValue(f protoreflect.FieldDescriptor, v protoreflect.Value) (any, error) {
	switch f.Kind() {
	case protoreflect.BoolKind:
		return v.Bool(), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return json.Number(strconv.FormatInt(v.Int(), 10)), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return json.Number(strconv.FormatUint(v.Uint(), 10)), nil
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		x := v.Float()
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("%v has no JSON form", x)
		}
		return x, nil
	case protoreflect.StringKind:
		return v.String(), nil
	case protoreflect.BytesKind:
		return base64.StdEncoding.EncodeToString(v.Bytes()), nil
	case protoreflect.EnumKind:
		if ev := f.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name()), nil
		}
		return json.Number(strconv.Itoa(int(v.Enum()))), nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return protoMessage(v.Message())
	}
	return nil, errors.New("unexpected field kind " + f.Kind().String())
}
