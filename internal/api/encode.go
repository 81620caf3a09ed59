package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strconv"

	yaml "go.yaml.in/yaml/v2"
)

// Output formats Encode writes.
const (
	FormatYAML = "yaml"
	FormatJSON = "json"
)

// Encode writes objs as YAML (documents separated by "---") or JSON (the
// object itself, or a v1 List when there are several or none), the way
// kubectl prints them: apiVersion and kind first, then metadata, spec and
// status. Noise the Go types add is left out: null creationTimestamps and
// an empty status. Whatever Encode writes, Decode reads back.
func Encode(w io.Writer, objs []Object, format string) error {
	if format != FormatYAML && format != FormatJSON {
		return fmt.Errorf("api: unknown output format %q; use yaml or json", format)
	}
	trees := make([]*jsonValue, 0, len(objs))
	for _, o := range objs {
		t, err := encodeTree(o)
		if err != nil {
			return err
		}
		trees = append(trees, t)
	}
	var out []byte
	switch format {
	case FormatJSON:
		v := &jsonValue{kind: jsonObject}
		if len(trees) == 1 {
			v = trees[0]
		} else {
			v.keys = []string{"apiVersion", "kind", "items"}
			v.vals = []*jsonValue{{kind: jsonString, s: "v1"}, {kind: jsonString, s: "List"}, {kind: jsonArray, vals: trees}}
		}
		compact, _ := v.MarshalJSON()
		var buf bytes.Buffer
		if err := json.Indent(&buf, compact, "", "    "); err != nil {
			return fmt.Errorf("api: encoding JSON: %w", err)
		}
		buf.WriteByte('\n')
		out = buf.Bytes()
	case FormatYAML:
		var buf bytes.Buffer
		for i, t := range trees {
			if i > 0 {
				buf.WriteString("---\n")
			}
			y, err := yaml.Marshal(t.yamlValue())
			if err != nil {
				return fmt.Errorf("api: encoding YAML: %w", err)
			}
			buf.Write(y)
		}
		out = buf.Bytes()
	}
	if _, err := w.Write(out); err != nil {
		return fmt.Errorf("api: writing output: %w", err)
	}
	return nil
}

// encodeTree marshals an object into an ordered tree, with apiVersion and
// kind filled in from the registry if the object lacks them.
func encodeTree(o Object) (*jsonValue, error) {
	raw, err := json.Marshal(o)
	if err != nil {
		return nil, fmt.Errorf("api: encoding %s: %w", RefOf(o), err)
	}
	t, err := parseJSON(raw)
	if err != nil || t.kind != jsonObject {
		return nil, fmt.Errorf("api: encoding %s: not an object", RefOf(o))
	}
	apiVersion, _ := t.get("apiVersion").str()
	kind, _ := t.get("kind").str()
	if apiVersion == "" || kind == "" {
		if ki := kindOfType(o); ki != nil {
			apiVersion, kind = ki.APIVersion(), ki.Kind.Kind
		}
	}
	out := &jsonValue{kind: jsonObject}
	if apiVersion != "" {
		out.keys = append(out.keys, "apiVersion")
		out.vals = append(out.vals, &jsonValue{kind: jsonString, s: apiVersion})
	}
	if kind != "" {
		out.keys = append(out.keys, "kind")
		out.vals = append(out.vals, &jsonValue{kind: jsonString, s: kind})
	}
	for i, k := range t.keys {
		v := t.vals[i]
		switch k {
		case "apiVersion", "kind":
			continue
		case "status":
			if v = pruneEmpty(v); v == nil {
				continue
			}
		}
		dropNullTimestamps(v)
		out.keys = append(out.keys, k)
		out.vals = append(out.vals, v)
	}
	return out, nil
}

// kindOfType finds the registered kind whose Go type o has, preferring the
// kind that sorts first when several share a type.
func kindOfType(o Object) *KindInfo {
	t := reflect.TypeOf(o)
	for _, ki := range Kinds() {
		if reflect.TypeOf(ki.New()) == t {
			return ki
		}
	}
	return nil
}

// dropNullTimestamps removes "creationTimestamp": null, which metav1.Time
// writes for every unset ObjectMeta (including pod templates').
func dropNullTimestamps(v *jsonValue) {
	switch v.kind {
	case jsonObject:
		keys, vals := v.keys[:0], v.vals[:0]
		for i, k := range v.keys {
			if k == "creationTimestamp" && v.vals[i].kind == jsonNull {
				continue
			}
			dropNullTimestamps(v.vals[i])
			keys, vals = append(keys, k), append(vals, v.vals[i])
		}
		v.keys, v.vals = keys, vals
	case jsonArray:
		for _, e := range v.vals {
			dropNullTimestamps(e)
		}
	}
}

// pruneEmpty returns v without null members and empty objects and lists,
// or nil if nothing is left.
func pruneEmpty(v *jsonValue) *jsonValue {
	switch v.kind {
	case jsonNull:
		return nil
	case jsonObject:
		out := &jsonValue{kind: jsonObject}
		for i, k := range v.keys {
			if p := pruneEmpty(v.vals[i]); p != nil {
				out.keys = append(out.keys, k)
				out.vals = append(out.vals, p)
			}
		}
		if len(out.keys) == 0 {
			return nil
		}
		return out
	case jsonArray:
		if len(v.vals) == 0 {
			return nil
		}
	}
	return v
}

// yamlValue converts the tree into values yaml.v2 marshals in order.
func (v *jsonValue) yamlValue() any {
	switch v.kind {
	case jsonNull:
		return nil
	case jsonBool:
		return v.b
	case jsonString:
		return v.s
	case jsonNumber:
		if n, err := strconv.ParseInt(v.s, 10, 64); err == nil {
			return n
		}
		if n, err := strconv.ParseUint(v.s, 10, 64); err == nil {
			return n
		}
		f, _ := strconv.ParseFloat(v.s, 64)
		return f
	case jsonObject:
		m := make(yaml.MapSlice, len(v.keys))
		for i, k := range v.keys {
			m[i] = yaml.MapItem{Key: k, Value: v.vals[i].yamlValue()}
		}
		return m
	default:
		l := make([]any, len(v.vals))
		for i, e := range v.vals {
			l[i] = e.yamlValue()
		}
		return l
	}
}
