package install

import (
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weft-mesh/weft/internal/api"
)

// Schema is the subset of an OpenAPI v3 schema (as apiextensions.k8s.io/v1
// JSONSchemaProps spells it) that reflection produces. The schemas are
// structural: every node has a type, except the int-or-string and
// preserve-unknown-fields nodes, which the API server allows without one.
type Schema struct {
	Type                 string             `json:"type,omitempty"`
	Format               string             `json:"format,omitempty"`
	Minimum              *int64             `json:"minimum,omitempty"`
	Properties           map[string]*Schema `json:"properties,omitempty"`
	AdditionalProperties *Schema            `json:"additionalProperties,omitempty"`
	Items                *Schema            `json:"items,omitempty"`
	Required             []string           `json:"required,omitempty"`
	IntOrString          bool               `json:"x-kubernetes-int-or-string,omitempty"`
	PreserveUnknown      bool               `json:"x-kubernetes-preserve-unknown-fields,omitempty"`
}

// freeForm is a node whose shape the schema does not constrain.
func freeForm() *Schema { return &Schema{PreserveUnknown: true} }

// polymorphic is a node that is one of several JSON types (a string or a
// list, a string or an object). Structural schemas cannot say "one of
// these types", so these nodes are left free-form and the strict decoder in
// internal/api checks them when Weft reads the object.
func polymorphic() *Schema { return &Schema{PreserveUnknown: true} }

// overrides are the schemas of types whose JSON form is not what their Go
// shape says: the ones with their own (Un)MarshalJSON or a well-known
// Kubernetes encoding. Every type with a custom decoder must be listed here;
// SchemaFor refuses one that is not, so a new union type cannot silently get
// a wrong schema.
var overrides = map[reflect.Type]func() *Schema{
	reflect.TypeFor[metav1.Time]():        func() *Schema { return &Schema{Type: "string", Format: "date-time"} },
	reflect.TypeFor[metav1.Duration]():    func() *Schema { return &Schema{Type: "string"} },
	reflect.TypeFor[intstr.IntOrString](): func() *Schema { return &Schema{IntOrString: true} },
	// A quantity is written as a number (1) or a string ("500m").
	reflect.TypeFor[resource.Quantity](): func() *Schema { return &Schema{IntOrString: true} },
	// The API server owns metadata's schema; a CRD may only say "object".
	reflect.TypeFor[metav1.ObjectMeta](): func() *Schema { return &Schema{Type: "object"} },
	reflect.TypeFor[json.RawMessage]():   freeForm,
	// A string or a list of strings.
	reflect.TypeFor[api.AmbassadorID](): polymorphic,
	reflect.TypeFor[api.StringOrList](): polymorphic,
	// A string or {value, append}.
	reflect.TypeFor[api.AddedHeader](): polymorphic,
	// A bare specifier name or a one-key object.
	reflect.TypeFor[api.MappingLabelSpecifier](): polymorphic,
	// Its decoder only adds strictness and a number-or-string weight.
	reflect.TypeFor[api.WeightedDst](): func() *Schema {
		return &Schema{
			Type: "object",
			Properties: map[string]*Schema{
				"authority": {Type: "string"},
				"weight":    {IntOrString: true},
			},
			Required: []string{"authority", "weight"},
		}
	},
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// SchemaFor derives the OpenAPI v3 schema of a Go type from its JSON
// encoding: json tags name the properties, a field without omitempty (and
// not a pointer) is required, embedded structs are inlined. A type that
// refers back to itself (ServiceProfile's response matches nest all/any/not)
// cannot be expressed structurally; the recursive reference is left
// free-form below recursionDepth levels.
func SchemaFor(t reflect.Type) (*Schema, error) {
	g := &generator{onPath: map[reflect.Type]int{}}
	return g.schema(t, t.String())
}

// recursionDepth is how many times a type may nest in itself before the
// schema stops describing it: ServiceProfile conditions are checked to
// this depth by the API server, deeper ones by Weft's decoder.
const recursionDepth = 3

type generator struct {
	onPath map[reflect.Type]int
}

func (g *generator) schema(t reflect.Type, path string) (*Schema, error) {
	if f, ok := overrides[t]; ok {
		return f(), nil
	}
	if t.Kind() == reflect.Pointer {
		return g.schema(t.Elem(), path)
	}
	if t.Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(jsonUnmarshaler) ||
		t.Implements(textUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return nil, fmt.Errorf("%s (%s) has its own JSON decoding; add its schema to the overrides in internal/install/schema.go", path, t)
	}
	switch t.Kind() {
	case reflect.String:
		return &Schema{Type: "string"}, nil
	case reflect.Bool:
		return &Schema{Type: "boolean"}, nil
	case reflect.Int8, reflect.Int16, reflect.Int32:
		return &Schema{Type: "integer", Format: "int32"}, nil
	case reflect.Int, reflect.Int64:
		return &Schema{Type: "integer", Format: "int64"}, nil
	case reflect.Uint8, reflect.Uint16, reflect.Uint32:
		zero := int64(0)
		return &Schema{Type: "integer", Format: "int32", Minimum: &zero}, nil
	case reflect.Uint, reflect.Uint64:
		zero := int64(0)
		return &Schema{Type: "integer", Format: "int64", Minimum: &zero}, nil
	case reflect.Float32, reflect.Float64:
		return &Schema{Type: "number"}, nil
	case reflect.Interface:
		return freeForm(), nil
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return &Schema{Type: "string", Format: "byte"}, nil
		}
		items, err := g.schema(t.Elem(), path+"[]")
		if err != nil {
			return nil, err
		}
		return &Schema{Type: "array", Items: items}, nil
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return nil, fmt.Errorf("%s: map key %s is not a string", path, t.Key())
		}
		v, err := g.schema(t.Elem(), path+"{}")
		if err != nil {
			return nil, err
		}
		return &Schema{Type: "object", AdditionalProperties: v}, nil
	case reflect.Struct:
		if g.onPath[t] >= recursionDepth {
			return &Schema{Type: "object", PreserveUnknown: true}, nil
		}
		g.onPath[t]++
		defer func() { g.onPath[t]-- }()
		s := &Schema{Type: "object", Properties: map[string]*Schema{}}
		if err := g.fields(t, path, s); err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("%s: no schema for Go kind %s", path, t.Kind())
}

// fields adds t's fields to s, inlining embedded structs as encoding/json
// does.
func (g *generator) fields(t reflect.Type, path string, s *Schema) error {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				if err := g.fields(ft, path, s); err != nil {
					return err
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fs, err := g.schema(f.Type, path+"."+name)
		if err != nil {
			return err
		}
		s.Properties[name] = fs
		if !hasOpt(opts, "omitempty") && !hasOpt(opts, "omitzero") && f.Type.Kind() != reflect.Pointer {
			s.Required = append(s.Required, name)
		}
	}
	return nil
}

func hasOpt(opts, want string) bool {
	for o := range strings.SplitSeq(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}
