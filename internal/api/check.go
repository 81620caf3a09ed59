package api

import (
	"encoding"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"

	yaml "go.yaml.in/yaml/v2"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// structProblem is one mismatch between a document and a kind's Go type.
// typeErr is set when the value at path could not be decoded at all, so
// the decoded object holds a zero value there and later validation of that
// path would only repeat the problem.
type structProblem struct {
	path    string
	reason  string
	typeErr bool
}

// schemaChecker walks a parsed document alongside the Go type it will be
// decoded into and records every unknown or duplicate field and every
// wrongly typed value, with a readable path (spec.ports[0].port,
// metadata.labels[app]). encoding/json stops at the first type error and
// drops array indices from its paths; this walk does neither.
type schemaChecker struct {
	problems []structProblem
}

func (c *schemaChecker) add(path string, typeErr bool, format string, args ...any) {
	c.problems = append(c.problems, structProblem{path: path, reason: fmt.Sprintf(format, args...), typeErr: typeErr})
}

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	intOrStringType     = reflect.TypeFor[intstr.IntOrString]()
)

func joinField(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func (c *schemaChecker) check(path string, v *jsonValue, t reflect.Type) {
	if t == intOrStringType {
		switch v.kind {
		case jsonString, jsonNull:
		case jsonNumber:
			if _, err := strconv.ParseInt(v.s, 10, 32); err != nil {
				c.add(path, true, "want integer (int32) or string, got %s", v.brief())
			}
		default:
			c.mismatch(path, v, "integer or string")
		}
		return
	}
	if t.Kind() != reflect.Pointer && t.Kind() != reflect.Interface && reflect.PointerTo(t).Implements(jsonUnmarshalerType) {
		p := reflect.New(t)
		raw, _ := v.MarshalJSON()
		if err := p.Interface().(json.Unmarshaler).UnmarshalJSON(raw); err != nil {
			c.add(path, true, "invalid value %s: %s", v.brief(), cleanUnmarshalerError(err))
		}
		return
	}
	if t.Kind() != reflect.Pointer && t.Kind() != reflect.Interface && reflect.PointerTo(t).Implements(textUnmarshalerType) {
		switch v.kind {
		case jsonNull:
		case jsonString:
			p := reflect.New(t)
			if err := p.Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(v.s)); err != nil {
				c.add(path, true, "invalid value %s: %s", v.brief(), cleanUnmarshalerError(err))
			}
		default:
			c.mismatch(path, v, "string")
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if v.kind != jsonNull {
			c.check(path, v, t.Elem())
		}
	case reflect.Interface:
		// Any JSON value fits an interface.
	case reflect.Struct:
		switch v.kind {
		case jsonNull:
		case jsonObject:
			c.checkStruct(path, v, t)
		default:
			c.mismatch(path, v, "object")
		}
	case reflect.Map:
		switch v.kind {
		case jsonNull:
		case jsonObject:
			seen := make(map[string]bool, len(v.keys))
			for i, k := range v.keys {
				kp := path + "[" + k + "]"
				if seen[k] {
					c.add(kp, false, "duplicate key")
				}
				seen[k] = true
				c.checkMapKey(kp, k, t.Key())
				c.check(kp, v.vals[i], t.Elem())
			}
		default:
			c.mismatch(path, v, "object")
		}
	case reflect.Slice:
		switch {
		case v.kind == jsonNull:
		case t.Elem().Kind() == reflect.Uint8 && !reflect.PointerTo(t.Elem()).Implements(jsonUnmarshalerType):
			if v.kind != jsonString {
				c.mismatch(path, v, "base64 string")
			} else if _, err := base64.StdEncoding.DecodeString(v.s); err != nil {
				c.add(path, true, "invalid base64 data: %v", err)
			}
		case v.kind == jsonArray:
			for i, e := range v.vals {
				c.check(path+"["+strconv.Itoa(i)+"]", e, t.Elem())
			}
		default:
			c.mismatch(path, v, "list")
		}
	case reflect.Array:
		if v.kind != jsonArray && v.kind != jsonNull {
			c.mismatch(path, v, "list")
			return
		}
		for i, e := range v.vals {
			c.check(path+"["+strconv.Itoa(i)+"]", e, t.Elem())
		}
	case reflect.String:
		if v.kind != jsonString && v.kind != jsonNull {
			c.mismatch(path, v, "string")
		}
	case reflect.Bool:
		if v.kind != jsonBool && v.kind != jsonNull {
			c.mismatch(path, v, "boolean")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		c.checkNumber(path, v, func(s string) error {
			_, err := strconv.ParseInt(s, 10, t.Bits())
			return err
		}, "integer", t)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		c.checkNumber(path, v, func(s string) error {
			_, err := strconv.ParseUint(s, 10, t.Bits())
			return err
		}, "non-negative integer", t)
	case reflect.Float32, reflect.Float64:
		c.checkNumber(path, v, func(s string) error {
			_, err := strconv.ParseFloat(s, t.Bits())
			return err
		}, "number", t)
	}
}

func (c *schemaChecker) checkNumber(path string, v *jsonValue, parse func(string) error, want string, t reflect.Type) {
	switch v.kind {
	case jsonNull:
	case jsonNumber:
		if err := parse(v.s); err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
				c.add(path, true, "%s is out of range for %s", v.s, t.Kind())
			} else {
				c.add(path, true, "want %s, got %s", want, v.brief())
			}
		}
	default:
		c.mismatch(path, v, want)
	}
}

func (c *schemaChecker) mismatch(path string, v *jsonValue, want string) {
	if want == "string" && (v.kind == jsonNumber || v.kind == jsonBool) {
		// YAML reads 80, 1.5 and yes unquoted as a number or a boolean.
		lit := v.s
		if v.kind == jsonBool {
			lit = strconv.FormatBool(v.b)
		}
		c.add(path, true, "want string, got %s (quote it in YAML: %q)", v.brief(), lit)
		return
	}
	c.add(path, true, "want %s, got %s", want, v.brief())
}

func (c *schemaChecker) checkMapKey(path, key string, t reflect.Type) {
	if reflect.PointerTo(t).Implements(textUnmarshalerType) {
		if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(key)); err != nil {
			c.add(path, true, "invalid key: %s", cleanUnmarshalerError(err))
		}
		return
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if _, err := strconv.ParseInt(key, 10, t.Bits()); err != nil {
			c.add(path, true, "invalid key: want an integer")
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if _, err := strconv.ParseUint(key, 10, t.Bits()); err != nil {
			c.add(path, true, "invalid key: want a non-negative integer")
		}
	}
}

func (c *schemaChecker) checkStruct(path string, v *jsonValue, t reflect.Type) {
	fields := jsonFieldsOf(t)
	seen := make(map[string]bool, len(v.keys))
	for i, k := range v.keys {
		fp := joinField(path, k)
		if seen[k] {
			c.add(fp, false, "duplicate field")
		}
		seen[k] = true
		f, ok := fields.byName[k]
		if !ok {
			c.add(fp, false, "unknown field%s", suggestField(k, fields.names))
			continue
		}
		if f.quoted {
			// `json:",string"`: the scalar is written inside a string.
			if v.vals[i].kind != jsonString && v.vals[i].kind != jsonNull {
				c.mismatch(fp, v.vals[i], "quoted "+f.typ.Kind().String())
			}
			continue
		}
		c.check(fp, v.vals[i], f.typ)
	}
}

// suggestField returns `; did you mean "x"?` for a near miss, or "".
func suggestField(name string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if strings.EqualFold(k, name) {
			return fmt.Sprintf(" (did you mean %q?)", k)
		}
		if d := editDistance(strings.ToLower(name), strings.ToLower(k)); d < bestDist && d < len(k)/2+1 {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

type jsonField struct {
	typ    reflect.Type
	quoted bool
	depth  int
}

type jsonFields struct {
	byName map[string]jsonField
	names  []string // sorted, for suggestions
}

var fieldCache sync.Map // reflect.Type -> *jsonFields

// jsonFieldsOf lists the JSON member names a struct type accepts, following
// encoding/json: embedded structs without a name are inlined, "-" is
// skipped, and a shallower field hides a deeper one of the same name.
func jsonFieldsOf(t reflect.Type) *jsonFields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(*jsonFields)
	}
	fs := &jsonFields{byName: map[string]jsonField{}}
	collectFields(t, 0, fs.byName, map[reflect.Type]bool{})
	for n := range fs.byName {
		fs.names = append(fs.names, n)
	}
	sort.Strings(fs.names)
	fieldCache.Store(t, fs)
	return fs
}

func collectFields(t reflect.Type, depth int, out map[string]jsonField, visiting map[reflect.Type]bool) {
	if visiting[t] {
		return
	}
	visiting[t] = true
	defer delete(visiting, t)
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		ft := sf.Type
		if sf.Anonymous {
			et := ft
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if !sf.IsExported() && et.Kind() != reflect.Struct {
				continue
			}
			if name == "" && et.Kind() == reflect.Struct {
				collectFields(et, depth+1, out, visiting)
				continue
			}
		} else if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		quoted := false
		for _, o := range strings.Split(opts, ",") {
			if o == "string" {
				switch ft.Kind() {
				case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
					reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64, reflect.String:
					quoted = true
				}
			}
		}
		if old, ok := out[name]; ok && old.depth <= depth {
			continue
		}
		out[name] = jsonField{typ: ft, quoted: quoted, depth: depth}
	}
}

// cleanUnmarshalerError trims package prefixes from a custom unmarshaler's
// error ("json: ...", "quantities must match ...").
func cleanUnmarshalerError(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "json: ")
	return msg
}

// typeOf returns the struct type behind an object pointer.
func typeOf(o Object) reflect.Type {
	t := reflect.TypeOf(o)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// yamlDuplicatePaths finds the duplicate keys of a YAML document, which
// YAML-to-JSON conversion would otherwise merge, and names them with the
// same paths the schema walk uses (decided by the Go type t).
func yamlDuplicatePaths(raw []byte, t reflect.Type) []structProblem {
	var doc yaml.MapSlice
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil
	}
	var out []structProblem
	walkYAMLDuplicates("", doc, t, &out)
	return out
}

func walkYAMLDuplicates(path string, v any, t reflect.Type, out *[]structProblem) {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch v := v.(type) {
	case yaml.MapSlice:
		seen := make(map[string]bool, len(v))
		for _, item := range v {
			key := fmt.Sprint(item.Key)
			var childPath string
			var childType reflect.Type
			reason := "duplicate field"
			switch {
			case t != nil && t.Kind() == reflect.Struct:
				childPath = joinField(path, key)
				if f, ok := jsonFieldsOf(t).byName[key]; ok {
					childType = f.typ
				}
			case t != nil && t.Kind() == reflect.Map:
				childPath, childType, reason = path+"["+key+"]", t.Elem(), "duplicate key"
			default:
				childPath = joinField(path, key)
			}
			if seen[key] {
				*out = append(*out, structProblem{path: childPath, reason: reason})
			}
			seen[key] = true
			walkYAMLDuplicates(childPath, item.Value, childType, out)
		}
	case []any:
		var et reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			et = t.Elem()
		}
		for i, e := range v {
			walkYAMLDuplicates(path+"["+strconv.Itoa(i)+"]", e, et, out)
		}
	}
}
