package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
)

// jsonValue is a parsed JSON value that, unlike map[string]any, keeps object
// members in document order and keeps duplicate keys. The decoder checks it
// against a kind's Go type to report every problem with its full path, and
// the encoder reorders it to print apiVersion and kind first.
type jsonValue struct {
	kind jsonKind
	b    bool
	s    string       // string value, or a number's literal text
	keys []string     // object member names, in order (duplicates kept)
	vals []*jsonValue // object member values, or array elements
}

type jsonKind uint8

const (
	jsonNull jsonKind = iota
	jsonBool
	jsonNumber
	jsonString
	jsonObject
	jsonArray
)

// describe names a JSON kind as a user would: "string", "list", ...
func (k jsonKind) describe() string {
	switch k {
	case jsonNull:
		return "null"
	case jsonBool:
		return "boolean"
	case jsonNumber:
		return "number"
	case jsonString:
		return "string"
	case jsonObject:
		return "object"
	default:
		return "list"
	}
}

// maxJSONDepth bounds nesting so hostile input cannot exhaust the stack.
const maxJSONDepth = 1000

// parseJSON parses exactly one JSON value.
func parseJSON(b []byte) (*jsonValue, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := parseJSONValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("unexpected data after the top-level value")
	}
	return v, nil
}

func parseJSONValue(dec *json.Decoder, depth int) (*jsonValue, error) {
	if depth > maxJSONDepth {
		return nil, fmt.Errorf("nested more than %d levels deep", maxJSONDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	switch t := tok.(type) {
	case nil:
		return &jsonValue{kind: jsonNull}, nil
	case bool:
		return &jsonValue{kind: jsonBool, b: t}, nil
	case json.Number:
		return &jsonValue{kind: jsonNumber, s: string(t)}, nil
	case string:
		return &jsonValue{kind: jsonString, s: t}, nil
	case json.Delim:
		switch t {
		case '{':
			v := &jsonValue{kind: jsonObject}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("object key is not a string")
				}
				val, err := parseJSONValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				v.keys = append(v.keys, key)
				v.vals = append(v.vals, val)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return v, nil
		case '[':
			v := &jsonValue{kind: jsonArray}
			for dec.More() {
				val, err := parseJSONValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				v.vals = append(v.vals, val)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return v, nil
		}
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

// get returns the last value of member key of an object, or nil. The last
// one wins, as in encoding/json.
func (v *jsonValue) get(key string) *jsonValue {
	if v == nil || v.kind != jsonObject {
		return nil
	}
	for i := len(v.keys) - 1; i >= 0; i-- {
		if v.keys[i] == key {
			return v.vals[i]
		}
	}
	return nil
}

// str returns the value if it is a JSON string.
func (v *jsonValue) str() (string, bool) {
	if v == nil || v.kind != jsonString {
		return "", false
	}
	return v.s, true
}

// MarshalJSON writes the value back as compact JSON, members in order.
func (v *jsonValue) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	v.write(&buf)
	return buf.Bytes(), nil
}

func (v *jsonValue) write(buf *bytes.Buffer) {
	switch v.kind {
	case jsonNull:
		buf.WriteString("null")
	case jsonBool:
		buf.WriteString(strconv.FormatBool(v.b))
	case jsonNumber:
		buf.WriteString(v.s)
	case jsonString:
		writeJSONString(buf, v.s)
	case jsonObject:
		buf.WriteByte('{')
		for i, k := range v.keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeJSONString(buf, k)
			buf.WriteByte(':')
			v.vals[i].write(buf)
		}
		buf.WriteByte('}')
	case jsonArray:
		buf.WriteByte('[')
		for i, e := range v.vals {
			if i > 0 {
				buf.WriteByte(',')
			}
			e.write(buf)
		}
		buf.WriteByte(']')
	}
}

func writeJSONString(buf *bytes.Buffer, s string) {
	b, _ := json.Marshal(s) // marshaling a string cannot fail
	buf.Write(b)
}

// brief is a short rendering of a scalar for error messages.
func (v *jsonValue) brief() string {
	switch v.kind {
	case jsonString:
		s := v.s
		if len(s) > 40 {
			s = s[:37] + "..."
		}
		return fmt.Sprintf("string %q", s)
	case jsonNumber:
		return "number " + v.s
	case jsonBool:
		return "boolean " + strconv.FormatBool(v.b)
	}
	return v.kind.describe()
}
