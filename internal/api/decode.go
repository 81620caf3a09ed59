package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// DecodeError reports one problem in one document: where it came from,
// which document of the stream (0-based, empty documents not counted),
// which object, which field, and why.
type DecodeError struct {
	Source string // file name, or "-" for standard input
	Doc    int
	Object string // "Kind/name" when known
	Path   string // e.g. "spec.template.spec.containers[0].ports[1].containerPort"; "" for the whole document
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

// DecodeErrors is every problem found in one decode call, in document order.
type DecodeErrors []*DecodeError

func (l DecodeErrors) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// maxInputSize bounds one stream, so a stray binary file fails fast.
const maxInputSize = 64 << 20

// Decode reads every document of a multi-document YAML stream, or a stream
// of JSON values, and returns the objects in order. Decoding is strict: an
// unknown apiVersion, kind or field, a duplicate field, a wrongly typed value
// or a value the kind's validation refuses makes Decode return a DecodeErrors
// listing every problem of every document, and no objects. Empty documents
// are skipped; a v1 List is flattened. source names the stream in errors.
func Decode(r io.Reader, source string) ([]Object, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxInputSize+1))
	if err != nil {
		return nil, DecodeErrors{{Source: source, Reason: "cannot read: " + err.Error()}}
	}
	if len(data) > maxInputSize {
		return nil, DecodeErrors{{Source: source, Reason: fmt.Sprintf("input larger than %d MiB", maxInputSize>>20)}}
	}
	docs, ok, err := splitJSONStream(data)
	if !ok {
		docs, err = splitYAMLStream(data)
	}
	var objs []Object
	var errs DecodeErrors
	doc := 0
	for _, raw := range docs {
		if isBlankDoc(raw) {
			continue
		}
		got, derrs := decodeDoc(raw, source, doc)
		objs = append(objs, got...)
		errs = append(errs, derrs...)
		doc++
	}
	if err != nil {
		errs = append(errs, &DecodeError{Source: source, Doc: doc, Reason: err.Error()})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return objs, nil
}

// splitJSONStream splits concatenated JSON values, which have no "---"
// separators. It reports false when data does not start with '{' or '[',
// or when its first value is not JSON: a YAML flow mapping starts with '{'
// too, and the YAML splitter takes over. A later value that is not JSON is
// an error of that document.
func splitJSONStream(data []byte) (docs [][]byte, ok bool, err error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || (trimmed[0] != '{' && trimmed[0] != '[') {
		return nil, false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return docs, true, nil
			}
			if len(docs) == 0 {
				return nil, false, nil
			}
			return docs, true, fmt.Errorf("invalid JSON: %w", err)
		}
		docs = append(docs, raw)
	}
}

func splitYAMLStream(data []byte) ([][]byte, error) {
	yr := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		raw, err := yr.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return docs, err
		}
		docs = append(docs, raw)
	}
}

// isBlankDoc reports whether a document holds only white space, comments
// and separators.
func isBlankDoc(b []byte) bool {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		t := bytes.TrimSpace(line)
		if len(t) == 0 || t[0] == '#' || bytes.Equal(t, []byte("---")) || bytes.Equal(t, []byte("...")) {
			continue
		}
		return false
	}
	return true
}

// docErrors collects the problems of one document.
type docErrors struct {
	source string
	doc    int
	object string
	prefix string // "items[3]" inside a List
	errs   DecodeErrors

	// yamlDup is the YAML library's message about duplicate keys, still to
	// be reported; decodeObject replaces it with field paths when it can.
	yamlDup string
	raw     []byte
}

// flushYAMLDup reports a pending duplicate-key message as it is.
func (d *docErrors) flushYAMLDup() {
	if d.yamlDup != "" {
		d.add("", "%s", d.yamlDup)
		d.yamlDup = ""
	}
}

func (d *docErrors) add(path, format string, args ...any) {
	if d.prefix != "" {
		if path == "" {
			path = d.prefix
		} else {
			path = d.prefix + "." + path
		}
	}
	d.errs = append(d.errs, &DecodeError{Source: d.source, Doc: d.doc, Object: d.object, Path: path, Reason: fmt.Sprintf(format, args...)})
}

// decodeDoc decodes one YAML or JSON document.
func decodeDoc(raw []byte, source string, doc int) ([]Object, DecodeErrors) {
	d := &docErrors{source: source, doc: doc}
	js, err := yaml.YAMLToJSONStrict(raw)
	if err != nil {
		// Strict conversion refuses duplicate keys; a lenient conversion
		// still lets every other problem of the document be reported.
		lenient, lerr := yaml.YAMLToJSON(raw)
		if lerr != nil {
			d.add("", "not valid YAML or JSON: %s", cleanYAMLError(lerr))
			return nil, d.errs
		}
		d.yamlDup, d.raw = cleanYAMLError(err), raw
		js = lenient
	}
	tree, err := parseJSON(js)
	if err != nil {
		d.flushYAMLDup()
		d.add("", "not valid JSON: %v", err)
		return nil, d.errs
	}
	if tree.kind != jsonObject {
		d.flushYAMLDup()
		d.add("", "a document must be an object with apiVersion and kind, not a %s", tree.kind.describe())
		return nil, d.errs
	}
	if av, kind := tree.get("apiVersion"), tree.get("kind"); isList(av, kind) {
		d.flushYAMLDup()
		return decodeList(tree, d)
	}
	obj := decodeObject(tree, d)
	d.flushYAMLDup()
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	return []Object{obj}, nil
}

func isList(av, kind *jsonValue) bool {
	a, _ := av.str()
	k, _ := kind.str()
	return a == "v1" && k == "List"
}

// decodeList flattens a v1 List, as kubectl get -o yaml prints one.
func decodeList(tree *jsonValue, d *docErrors) ([]Object, DecodeErrors) {
	for _, k := range tree.keys {
		switch k {
		case "apiVersion", "kind", "items", "metadata":
		default:
			d.add(k, "unknown field")
		}
	}
	items := tree.get("items")
	if items != nil && items.kind != jsonArray && items.kind != jsonNull {
		d.add("items", "want list, got %s", items.brief())
		return nil, d.errs
	}
	var objs []Object
	var itemErrs DecodeErrors
	for i, item := range itemsOf(items) {
		id := &docErrors{source: d.source, doc: d.doc, prefix: fmt.Sprintf("items[%d]", i)}
		if item.kind != jsonObject {
			id.add("", "want an object with apiVersion and kind, got %s", item.brief())
		} else if isList(item.get("apiVersion"), item.get("kind")) {
			id.add("kind", "a List cannot contain a List")
		} else if o := decodeObject(item, id); len(id.errs) == 0 {
			objs = append(objs, o)
		}
		itemErrs = append(itemErrs, id.errs...)
	}
	errs := append(d.errs, itemErrs...)
	if len(errs) > 0 {
		return nil, errs
	}
	return objs, nil
}

func itemsOf(v *jsonValue) []*jsonValue {
	if v == nil || v.kind != jsonArray {
		return nil
	}
	return v.vals
}

// decodeObject decodes one object, adding every problem to d. The returned
// object is meaningful only when d has no errors.
func decodeObject(tree *jsonValue, d *docErrors) Object {
	apiVersion, okA := tree.get("apiVersion").str()
	kind, okK := tree.get("kind").str()
	name, _ := tree.get("metadata").get("name").str()
	if okK && kind != "" {
		d.object = kind
		if name != "" {
			d.object += "/" + name
		}
	}
	if !okA || apiVersion == "" {
		d.add("apiVersion", "required: a string such as v1, apps/v1 or policy.linkerd.io/v1beta3")
	}
	if !okK || kind == "" {
		d.add("kind", "required: a string such as Service or HTTPRoute")
	}
	if !okA || !okK || apiVersion == "" || kind == "" {
		return nil
	}
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		d.add("apiVersion", "invalid %q: want group/version, or v1 for the core group", apiVersion)
		return nil
	}
	ki := Lookup(Kind{Group: gv.Group, Kind: kind})
	if ki == nil {
		d.add("kind", "%s", unknownKindReason(gv, kind))
		return nil
	}
	if !contains(ki.Versions, gv.Version) {
		d.add("apiVersion", "%s is not served for %s; use %s", apiVersion, ki.Kind.Kind, servedVersions(ki))
		return nil
	}

	obj := ki.New()
	if d.yamlDup != "" {
		if dups := yamlDuplicatePaths(d.raw, typeOf(obj)); len(dups) > 0 {
			for _, p := range dups {
				d.add(p.path, "%s", p.reason)
			}
			d.yamlDup = ""
		}
	}
	var sc schemaChecker
	sc.check("", tree, typeOf(obj))
	var typeErrPaths []string
	for _, p := range sc.problems {
		d.add(p.path, "%s", p.reason)
		if p.typeErr {
			typeErrPaths = append(typeErrPaths, p.path)
		}
	}
	js, _ := tree.MarshalJSON()
	if len(sc.problems) == 0 {
		// The walk above mirrors encoding/json; the real decoder has the
		// last word, in case the two ever disagree.
		strict, err := sigsjson.UnmarshalStrict(js, obj, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
		if err != nil {
			d.add("", "%s", cleanJSONError(err))
			return nil
		}
		for _, s := range strict {
			path, reason := splitStrictError(s.Error())
			d.add(path, "%s", reason)
		}
	} else {
		// Decode what can be decoded, so validation still reports the
		// problems of the other fields.
		_ = sigsjson.UnmarshalCaseSensitivePreserveInts(js, obj)
	}

	if obj.GetName() == "" && obj.GetGenerateName() == "" && !under("metadata.name", typeErrPaths) {
		d.add("metadata.name", "required")
	}
	if !ki.Namespaced && obj.GetNamespace() != "" {
		d.add("metadata.namespace", "%s is cluster-scoped and takes no namespace", ki.Kind.Kind)
	}
	var fes FieldErrors
	validateMetadata(obj, &fes)
	if ki.Validate != nil {
		fes = append(fes, ki.Validate(obj)...)
	}
	for _, fe := range fes {
		if !under(fe.Path, typeErrPaths) {
			d.add(fe.Path, "%s", fe.Reason)
		}
	}
	return obj
}

// under reports whether path is at, inside or above one of the paths whose
// value could not be decoded.
func under(path string, bad []string) bool {
	for _, b := range bad {
		if related(path, b) || related(b, path) {
			return true
		}
	}
	return false
}

// related reports whether child is parent or lies inside it.
func related(child, parent string) bool {
	if !strings.HasPrefix(child, parent) {
		return false
	}
	if len(child) == len(parent) || parent == "" {
		return true
	}
	c := child[len(parent)]
	return c == '.' || c == '['
}

// unknownKindReason explains an unknown kind: where that kind is served if
// it exists in another group, else what the group serves, else which groups
// exist.
func unknownKindReason(gv schema.GroupVersion, kind string) string {
	var elsewhere, inGroup []string
	groups := map[string]bool{}
	for _, ki := range Kinds() {
		groups[groupName(ki.Group)] = true
		if strings.EqualFold(ki.Kind.Kind, kind) {
			elsewhere = append(elsewhere, ki.APIVersion()+" "+ki.Kind.Kind)
		}
		if ki.Group == gv.Group {
			inGroup = append(inGroup, ki.Kind.Kind)
		}
	}
	switch {
	case len(elsewhere) > 0:
		return fmt.Sprintf("unknown kind %q for apiVersion %s; Weft reads it as %s", kind, gv, strings.Join(elsewhere, ", "))
	case len(inGroup) > 0:
		return fmt.Sprintf("unknown kind %q in group %s%s; it has %s (see 'weft api-resources')", kind, groupName(gv.Group), suggestField(kind, inGroup), strings.Join(inGroup, ", "))
	}
	names := make([]string, 0, len(groups))
	for g := range groups {
		names = append(names, g)
	}
	sort.Strings(names)
	return fmt.Sprintf("unknown kind %q: Weft does not read group %s; known groups are %s (see 'weft api-resources')", kind, groupName(gv.Group), strings.Join(names, ", "))
}

func groupName(g string) string {
	if g == "" {
		return "core"
	}
	return g
}

func servedVersions(ki *KindInfo) string {
	out := make([]string, len(ki.Versions))
	for i, v := range ki.Versions {
		if ki.Group == "" {
			out[i] = v
		} else {
			out[i] = ki.Group + "/" + v
		}
	}
	if len(out) == 1 {
		return out[0]
	}
	return "one of " + strings.Join(out, ", ")
}

// cleanYAMLError turns the YAML library's messages into a short reason:
// "error converting YAML to JSON: yaml: line 3: mapping values are not
// allowed in this context" becomes "line 3: mapping values ...".
func cleanYAMLError(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n")
	var parts []string
	for _, l := range strings.Split(msg, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if i := strings.Index(l, ": key "); i >= 0 && strings.HasSuffix(l, " already set in map") {
			l = l[:i] + ": duplicate field " + strings.TrimSuffix(l[i+len(": key "):], " already set in map")
		}
		parts = append(parts, l)
	}
	return strings.Join(parts, "; ")
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
