package api

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// DecodeError reports one bad document: where it came from, which document
// of the file (0-based), which field, and why.
type DecodeError struct {
	Source string // file name, or "-" for standard input
	Doc    int
	Object string // "Kind/name" when known
	Path   string
	Reason string
}

func (e *DecodeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: document %d", e.Source, e.Doc)
	if e.Object != "" {
		fmt.Fprintf(&b, " (%s)", e.Object)
	}
	if e.Path != "" {
		fmt.Fprintf(&b, ": %s", e.Path)
	}
	fmt.Fprintf(&b, ": %s", e.Reason)
	return b.String()
}

// DecodeErrors is every problem found in one decode call.
type DecodeErrors []*DecodeError

func (l DecodeErrors) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Decode reads every document of a multi-document YAML or JSON stream and
// returns the objects, in order. Decoding is strict: an unknown apiVersion,
// kind or field, a duplicate field, a wrongly typed value or a value the
// kind's validation refuses makes Decode return a DecodeErrors listing every
// problem, and no objects. Empty documents are skipped; a v1 List is
// flattened. source names the stream in errors.
func Decode(r io.Reader, source string) ([]Object, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var objs []Object
	var errs DecodeErrors
	for doc := 0; ; doc++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, &DecodeError{Source: source, Doc: doc, Reason: err.Error()})
			break
		}
		if len(bytes.TrimSpace(stripComments(raw))) == 0 {
			doc--
			continue
		}
		got, derrs := decodeDoc(raw, source, doc)
		objs = append(objs, got...)
		errs = append(errs, derrs...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return objs, nil
}

func stripComments(b []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) == 0 || t[0] == '#' || bytes.Equal(t, []byte("---")) {
			continue
		}
		out = append(out, line...)
		out = append(out, '\n')
	}
	return out
}

// decodeDoc decodes one YAML or JSON document.
func decodeDoc(raw []byte, source string, doc int) ([]Object, DecodeErrors) {
	fail := func(object, path, format string, args ...any) DecodeErrors {
		return DecodeErrors{{Source: source, Doc: doc, Object: object, Path: path, Reason: fmt.Sprintf(format, args...)}}
	}
	js, err := yaml.YAMLToJSONStrict(raw)
	if err != nil {
		return nil, fail("", "", "not valid YAML or JSON: %v", err)
	}
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Items []rawJSON `json:"items"`
	}
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &head); err != nil {
		return nil, fail("", "", "not a Kubernetes-style object: %v", err)
	}
	if head.APIVersion == "" {
		return nil, fail("", "apiVersion", "required")
	}
	if head.Kind == "" {
		return nil, fail("", "kind", "required")
	}
	gv, err := schema.ParseGroupVersion(head.APIVersion)
	if err != nil {
		return nil, fail("", "apiVersion", "%v", err)
	}
	if gv.Group == "" && gv.Version == "v1" && head.Kind == "List" {
		var objs []Object
		var errs DecodeErrors
		for i, item := range head.Items {
			got, e := decodeDoc(item, source, doc)
			for _, de := range e {
				de.Path = strings.TrimPrefix(fmt.Sprintf("items[%d].%s", i, de.Path), ".")
			}
			objs = append(objs, got...)
			errs = append(errs, e...)
		}
		return objs, errs
	}
	object := head.Kind
	if head.Metadata.Name != "" {
		object += "/" + head.Metadata.Name
	}
	ki := Lookup(Kind{Group: gv.Group, Kind: head.Kind})
	if ki == nil {
		return nil, fail(object, "kind", "unknown kind %q in group %q (see 'weft api-resources')", head.Kind, gv.Group)
	}
	if !contains(ki.Versions, gv.Version) {
		return nil, fail(object, "apiVersion", "%s is not served for %s; use one of %s", head.APIVersion, ki.Kind.Kind, strings.Join(ki.Versions, ", "))
	}
	obj := ki.New()
	strict, err := sigsjson.UnmarshalStrict(js, obj, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return nil, fail(object, "", "%s", cleanJSONError(err))
	}
	var errs DecodeErrors
	for _, s := range strict {
		path, reason := splitStrictError(s.Error())
		errs = append(errs, &DecodeError{Source: source, Doc: doc, Object: object, Path: path, Reason: reason})
	}
	if obj.GetName() == "" && obj.GetGenerateName() == "" {
		errs = append(errs, &DecodeError{Source: source, Doc: doc, Object: object, Path: "metadata.name", Reason: "required"})
	}
	if !ki.Namespaced && obj.GetNamespace() != "" {
		errs = append(errs, &DecodeError{Source: source, Doc: doc, Object: object, Path: "metadata.namespace", Reason: ki.Kind.Kind + " is cluster-scoped and takes no namespace"})
	}
	if ki.Validate != nil {
		for _, fe := range ki.Validate(obj) {
			errs = append(errs, &DecodeError{Source: source, Doc: doc, Object: object, Path: fe.Path, Reason: fe.Reason})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return []Object{obj}, nil
}

// rawJSON keeps a list item undecoded.
type rawJSON []byte

func (r *rawJSON) UnmarshalJSON(b []byte) error {
	*r = append((*r)[:0], b...)
	return nil
}

// splitStrictError turns `unknown field "spec.foo"` into ("spec.foo", "unknown field").
func splitStrictError(msg string) (path, reason string) {
	for _, prefix := range []string{"unknown field ", "duplicate field "} {
		if rest, ok := strings.CutPrefix(msg, prefix); ok {
			return strings.Trim(rest, `"`), strings.TrimSpace(prefix)
		}
	}
	return "", msg
}

// cleanJSONError rewrites encoding/json's type errors into "path: reason".
func cleanJSONError(err error) string {
	msg := strings.TrimPrefix(err.Error(), "json: ")
	// "cannot unmarshal string into Go struct field Service.spec.ports.port of type int32"
	if i := strings.Index(msg, " into Go struct field "); i >= 0 {
		rest := msg[i+len(" into Go struct field "):]
		field, typ, _ := strings.Cut(rest, " of type ")
		if dot := strings.Index(field, "."); dot >= 0 {
			field = field[dot+1:]
		}
		return fmt.Sprintf("%s: %s, want %s", field, strings.TrimPrefix(msg[:i], "cannot unmarshal "), typ)
	}
	return msg
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
