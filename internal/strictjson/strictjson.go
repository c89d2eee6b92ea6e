// Package strictjson checks that a byte slice is exactly one JSON value
// that every parser reads the same way: valid UTF-8 (no lone surrogate
// escapes either), no object with a key twice at any depth, and nesting
// within a bound. encoding/json accepts all three silently (it replaces
// bad bytes with U+FFFD and keeps the last of duplicate keys), so a value
// must pass Check before it is decoded.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Kind is what is wrong with a value.
type Kind int

// The kinds of Error.
const (
	// InvalidUTF8: bytes that are not UTF-8, or a \u escape of a lone
	// UTF-16 surrogate.
	InvalidUTF8 Kind = iota + 1
	// Syntax: not one JSON value (including data after it).
	Syntax
	// DuplicateKey: an object has a key twice.
	DuplicateKey
	// TooDeep: objects and arrays nest deeper than the bound.
	TooDeep
)

// Error says what is wrong and where.
type Error struct {
	Kind Kind
	// Path is a JSON Pointer to the place, when known.
	Path string
	// Offset is the byte offset, when known (else -1).
	Offset int64
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Msg)
	if e.Path != "" {
		fmt.Fprintf(&b, " at %q", e.Path)
	}
	if e.Offset >= 0 {
		fmt.Fprintf(&b, " (byte %d)", e.Offset)
	}
	return b.String()
}

type frame struct {
	obj     map[string]any // the object being built, or nil for an array
	arr     []any          // the array being built
	wantKey bool
	key     string // current key, in an object
}

// Check returns nil when data is one JSON value with valid UTF-8, no
// duplicate keys and at most maxDepth levels of objects and arrays.
func Check(data []byte, maxDepth int) *Error {
	_, err := Decode(data, maxDepth)
	return err
}

// Decode checks data as Check does and returns its value, decoded as
// encoding/json decodes into an any with UseNumber: objects as
// map[string]any, arrays as []any, numbers as json.Number. It reads data
// once.
func Decode(data []byte, maxDepth int) (any, *Error) {
	if !utf8.Valid(data) {
		off := invalidUTF8Offset(data)
		return nil, &Error{Kind: InvalidUTF8, Offset: off, Msg: "invalid UTF-8 byte sequence"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var (
		stack []*frame
		root  any
		done  bool // the top-level value is complete
	)
	// put places a complete value in the enclosing container.
	put := func(v any) {
		if len(stack) == 0 {
			root, done = v, true
			return
		}
		f := stack[len(stack)-1]
		if f.obj != nil {
			f.obj[f.key] = v
			f.wantKey = true
		} else {
			f.arr = append(f.arr, v)
		}
	}
	for {
		off := dec.InputOffset()
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, &Error{Kind: Syntax, Path: pointer(stack), Offset: off, Msg: "not valid JSON: " + err.Error()}
		}
		if done {
			return nil, &Error{Kind: Syntax, Offset: off, Msg: "data after the JSON value"}
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if len(stack) >= maxDepth {
					return nil, &Error{Kind: TooDeep, Path: pointer(stack), Offset: off,
						Msg: fmt.Sprintf("objects and arrays nest deeper than %d levels", maxDepth)}
				}
				f := &frame{}
				if t == '{' {
					f.obj, f.wantKey = make(map[string]any, 8), true
				} else {
					f.arr = []any{}
				}
				stack = append(stack, f)
			default:
				f := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				if f.obj != nil {
					put(f.obj)
				} else {
					put(f.arr)
				}
			}
		case string:
			if len(stack) > 0 && stack[len(stack)-1].wantKey {
				f := stack[len(stack)-1]
				f.key = t
				if _, dup := f.obj[t]; dup {
					return nil, &Error{Kind: DuplicateKey, Path: pointer(stack), Offset: off, Msg: fmt.Sprintf("key %q appears twice in one object", t)}
				}
				f.wantKey = false
				continue
			}
			put(t)
		default:
			put(t)
		}
	}
	if !done {
		return nil, &Error{Kind: Syntax, Offset: 0, Msg: "no JSON value"}
	}
	if off := loneSurrogate(data); off >= 0 {
		return nil, &Error{Kind: InvalidUTF8, Offset: off, Msg: "\\u escape of a lone UTF-16 surrogate"}
	}
	return root, nil
}

// pointer renders the path to the current position as a JSON Pointer.
func pointer(stack []*frame) string {
	var b strings.Builder
	for _, f := range stack {
		b.WriteByte('/')
		if f.obj != nil {
			b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(f.key))
		} else {
			b.WriteString(strconv.Itoa(len(f.arr)))
		}
	}
	return b.String()
}

func invalidUTF8Offset(data []byte) int64 {
	for i := 0; i < len(data); {
		r, n := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && n <= 1 {
			return int64(i)
		}
		i += n
	}
	return -1
}

// loneSurrogate returns the offset of the first \u escape of a UTF-16
// surrogate that is not half of a pair, or -1. data must be valid JSON:
// there a backslash only ever appears inside a string, starting an escape.
func loneSurrogate(data []byte) int64 {
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		if i+1 >= len(data) {
			return -1
		}
		if data[i+1] != 'u' {
			i++ // skip the escaped character (it may be a backslash)
			continue
		}
		r, ok := hex4(data, i+2)
		if !ok {
			return -1
		}
		switch {
		case r >= 0xD800 && r <= 0xDBFF:
			if i+11 < len(data) && data[i+6] == '\\' && data[i+7] == 'u' {
				if lo, ok := hex4(data, i+8); ok && lo >= 0xDC00 && lo <= 0xDFFF {
					i += 11
					continue
				}
			}
			return int64(i)
		case r >= 0xDC00 && r <= 0xDFFF:
			return int64(i)
		}
		i += 5
	}
	return -1
}

func hex4(data []byte, at int) (rune, bool) {
	if at+4 > len(data) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(data[at:at+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	return rune(n), true
}
