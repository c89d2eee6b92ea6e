package registry

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hamba/avro/v2"

	"github.com/fanout-dev/fanout/internal/envelope"
)

// Bounds of the Avro decoder. Every item of an array or map takes at
// least one byte except items of a zero-size type (null, an empty
// record), which a ten-byte value could otherwise ask for by the billion.
const (
	maxAvroDepth     = 1000
	maxZeroSizeItems = 1 << 16
)

// avroDecoder reads one Avro binary value into what encoding/json writes
// without loss. It is hand-written rather than hamba/avro's generic
// reader because that one keeps looping over a block's announced item
// count after the data ran out: a ten-byte value announcing 2^30 items
// took minutes and gigabytes. Here every length and count is checked
// against the bytes left before anything is allocated. hamba/avro still
// parses the schemas.
type avroDecoder struct {
	b         []byte
	zeroItems int
}

var errTruncated = errors.New("the body ends inside a value")

// decodeAvro decodes exactly one value of s from body: a truncated body
// and trailing bytes are both errors.
func decodeAvro(s avro.Schema, body []byte) (any, error) {
	d := &avroDecoder{b: body}
	v, err := d.value(s, 0)
	if err != nil {
		return nil, err
	}
	if len(d.b) > 0 {
		return nil, fmt.Errorf("%d trailing bytes after the value", len(d.b))
	}
	return v, nil
}

func (d *avroDecoder) long() (int64, error) {
	v, n := binary.Varint(d.b)
	switch {
	case n == 0:
		return 0, errTruncated
	case n < 0:
		return 0, errors.New("a long is longer than 10 bytes")
	}
	d.b = d.b[n:]
	return v, nil
}

func (d *avroDecoder) int() (int32, error) {
	v, err := d.long()
	if err != nil {
		return 0, err
	}
	if v < math.MinInt32 || v > math.MaxInt32 {
		return 0, fmt.Errorf("int %d is out of range", v)
	}
	return int32(v), nil
}

func (d *avroDecoder) take(n int64) ([]byte, error) {
	if n < 0 {
		return nil, fmt.Errorf("negative length %d", n)
	}
	if n > int64(len(d.b)) {
		return nil, errTruncated
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out, nil
}

func (d *avroDecoder) bytes() ([]byte, error) {
	n, err := d.long()
	if err != nil {
		return nil, err
	}
	return d.take(n)
}

func (d *avroDecoder) value(s avro.Schema, depth int) (any, error) {
	if depth > maxAvroDepth {
		return nil, fmt.Errorf("values nest deeper than %d", maxAvroDepth)
	}
	switch s := s.(type) {
	case *avro.RefSchema:
		return d.value(s.Schema(), depth)
	case *avro.NullSchema:
		return nil, nil
	case *avro.RecordSchema:
		out := make(map[string]any, len(s.Fields()))
		for _, f := range s.Fields() {
			v, err := d.value(f.Type(), depth+1)
			if err != nil {
				return nil, fmt.Errorf("field %s: %w", f.Name(), err)
			}
			out[f.Name()] = v
		}
		return out, nil
	case *avro.EnumSchema:
		i, err := d.int()
		if err != nil {
			return nil, err
		}
		if i < 0 || int(i) >= len(s.Symbols()) {
			return nil, fmt.Errorf("enum %s has no symbol %d", s.FullName(), i)
		}
		return s.Symbols()[i], nil
	case *avro.ArraySchema:
		out := []any{}
		err := d.blocks(s.Items(), func() error {
			v, err := d.value(s.Items(), depth+1)
			if err != nil {
				return fmt.Errorf("item %d: %w", len(out), err)
			}
			out = append(out, v)
			return nil
		})
		return out, err
	case *avro.MapSchema:
		out := map[string]any{}
		err := d.blocks(nil, func() error {
			k, err := d.bytes()
			if err != nil {
				return err
			}
			if !utf8.Valid(k) {
				return &Error{Reason: envelope.ReasonInvalidUTF8, Detail: "a map key is not UTF-8"}
			}
			v, err := d.value(s.Values(), depth+1)
			if err != nil {
				return fmt.Errorf("key %q: %w", k, err)
			}
			// Two equal keys: which one counts would be up to the reader.
			if _, dup := out[string(k)]; dup {
				return &Error{Reason: envelope.ReasonDuplicateKey, Detail: fmt.Sprintf("map key %q twice", k)}
			}
			out[string(k)] = v
			return nil
		})
		return out, err
	case *avro.UnionSchema:
		i, err := d.long()
		if err != nil {
			return nil, err
		}
		types := s.Types()
		if i < 0 || i >= int64(len(types)) {
			return nil, fmt.Errorf("union index %d is not one of its %d types", i, len(types))
		}
		branch := types[i]
		v, err := d.value(branch, depth+1)
		if err != nil || s.Nullable() || branch.Type() == avro.Null {
			return v, err
		}
		return map[string]any{branchName(branch): v}, nil
	case *avro.FixedSchema:
		b, err := d.take(int64(s.Size()))
		if err != nil {
			return nil, err
		}
		if l, ok := s.Logical().(*avro.DecimalLogicalSchema); ok {
			return decimal(b, l.Scale()), nil
		}
		return base64.StdEncoding.EncodeToString(b), nil
	case *avro.PrimitiveSchema:
		return d.primitive(s)
	default:
		return nil, fmt.Errorf("unexpected schema %T", s)
	}
}

func (d *avroDecoder) primitive(s *avro.PrimitiveSchema) (any, error) {
	var logical avro.LogicalType
	if l := s.Logical(); l != nil {
		logical = l.Type()
	}
	switch s.Type() {
	case avro.Boolean:
		b, err := d.take(1)
		if err != nil {
			return nil, err
		}
		if b[0] > 1 {
			return nil, fmt.Errorf("boolean byte %d", b[0])
		}
		return b[0] == 1, nil
	case avro.Int:
		v, err := d.int()
		if err != nil {
			return nil, err
		}
		if logical == avro.Date {
			return time.Unix(int64(v)*86400, 0).UTC().Format(time.DateOnly), nil
		}
		return int64(v), nil
	case avro.Long:
		v, err := d.long()
		if err != nil {
			return nil, err
		}
		switch logical {
		case avro.TimestampMillis, avro.LocalTimestampMillis:
			return timestamp(time.UnixMilli(v), logical == avro.TimestampMillis), nil
		case avro.TimestampMicros, avro.LocalTimestampMicros:
			return timestamp(time.UnixMicro(v), logical == avro.TimestampMicros), nil
		}
		return v, nil
	case avro.Float:
		b, err := d.take(4)
		if err != nil {
			return nil, err
		}
		return finite(float64(math.Float32frombits(binary.LittleEndian.Uint32(b))))
	case avro.Double:
		b, err := d.take(8)
		if err != nil {
			return nil, err
		}
		return finite(math.Float64frombits(binary.LittleEndian.Uint64(b)))
	case avro.Bytes:
		b, err := d.bytes()
		if err != nil {
			return nil, err
		}
		if l, ok := s.Logical().(*avro.DecimalLogicalSchema); ok {
			return decimal(b, l.Scale()), nil
		}
		return base64.StdEncoding.EncodeToString(b), nil
	case avro.String:
		b, err := d.bytes()
		if err != nil {
			return nil, err
		}
		if !utf8.Valid(b) {
			return nil, &Error{Reason: envelope.ReasonInvalidUTF8, Detail: "a string is not UTF-8"}
		}
		return string(b), nil
	case avro.Null:
		return nil, nil
	}
	return nil, fmt.Errorf("unexpected primitive %s", s.Type())
}

// blocks reads the blocks of an array or a map, calling item once per
// item. items is the array's item schema (nil for a map: every entry has
// a key of at least one byte).
func (d *avroDecoder) blocks(items avro.Schema, item func() error) error {
	zero := items != nil && zeroSize(items, map[avro.Schema]bool{})
	for {
		n, err := d.long()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if n < 0 {
			// A negative count is followed by the block's size in bytes.
			if n == math.MinInt64 {
				return errors.New("block count out of range")
			}
			n = -n
			if _, err := d.long(); err != nil {
				return err
			}
		}
		if zero {
			if d.zeroItems += int(min(n, maxZeroSizeItems+1)); d.zeroItems > maxZeroSizeItems {
				return fmt.Errorf("more than %d items of a zero-size type", maxZeroSizeItems)
			}
		} else if n > int64(len(d.b)) {
			return fmt.Errorf("a block announces %d items but only %d bytes are left", n, len(d.b))
		}
		for range n {
			if err := item(); err != nil {
				return err
			}
		}
	}
}

// zeroSize reports whether a value of s can take no bytes at all.
func zeroSize(s avro.Schema, seen map[avro.Schema]bool) bool {
	switch s := s.(type) {
	case *avro.RefSchema:
		if seen[s.Schema()] {
			return false
		}
		seen[s.Schema()] = true
		return zeroSize(s.Schema(), seen)
	case *avro.NullSchema:
		return true
	case *avro.FixedSchema:
		return s.Size() == 0
	case *avro.RecordSchema:
		if seen[s] {
			return false
		}
		seen[s] = true
		for _, f := range s.Fields() {
			if !zeroSize(f.Type(), seen) {
				return false
			}
		}
		return true
	}
	return false
}

// branchName is the name of a union branch as in Avro's JSON encoding,
// but a named type's name without its namespace: a dotted field name
// would be read as a path by MongoDB (and dead-lettered as
// operator_field_name).
func branchName(s avro.Schema) string {
	if r, ok := s.(*avro.RefSchema); ok {
		s = r.Schema()
	}
	if n, ok := s.(avro.NamedSchema); ok {
		return n.Name()
	}
	return string(s.Type())
}

func timestamp(t time.Time, utc bool) string {
	if utc {
		return t.UTC().Format(time.RFC3339Nano)
	}
	// A local timestamp has no zone: RFC 3339 would claim one.
	return strings.TrimSuffix(t.UTC().Format("2006-01-02T15:04:05.999999999Z"), "Z")
}

// decimal renders an Avro decimal (big-endian two's-complement unscaled
// value) exactly.
func decimal(b []byte, scale int) json.Number {
	n := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(len(b))*8))
	}
	r := new(big.Rat).SetFrac(n, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil))
	return json.Number(r.FloatString(scale))
}

func finite(f float64) (any, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("%v has no JSON form", f)
	}
	return f, nil
}
