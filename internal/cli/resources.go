package cli

// The kubectl-like resource commands: apply, delete, get, api-resources.
// They work on the local store in the state directory, so a running mesh
// (weft up) sees every change at once.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/duration"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/store"
	localstore "github.com/weft-mesh/weft/internal/store/local"
)

// openLocalStore opens the store for one command: it reads and writes the
// file but does not follow other processes' writes.
func openLocalStore(g *Globals) (*localstore.Store, error) {
	return localstore.OpenWithOptions(g.StateDirOrDefault(), localstore.Options{NoFollow: true})
}

// ---- apply ----

func newCmdApply(g *Globals) *cobra.Command {
	var (
		files     []string
		recursive bool
		namespace string
	)
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|- [-f ...]",
		Short: "Create or update resources from manifests",
		Long: `Create or update resources from YAML or JSON manifests, as kubectl apply does.

Every manifest is decoded and checked before anything is stored: if any
document is bad, every problem is printed (file, document, field, reason) and
nothing is applied. Otherwise all objects are stored in one step. A directory
means its *.yaml, *.yml and *.json files (-R: and its subdirectories'); '-'
means standard input.`,
		Example: `  weft apply -f faces.yaml
  weft apply -f k8s/ -R
  cat smiley.yaml | weft apply -n faces -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runApply(cmd.Context(), g, files, recursive, namespace)
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "manifest file, directory, or - for standard input (repeatable)")
	cmd.Flags().BoolVarP(&recursive, "recursive", "R", false, "read directories given with -f recursively")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", `namespace for objects that name none (default "default")`)
	return cmd
}

func runApply(ctx context.Context, g *Globals, files []string, recursive bool, namespace string) error {
	objs, err := loadManifests(g, "apply", files, recursive, namespace)
	if err != nil {
		return err
	}
	st, err := openLocalStore(g)
	if err != nil {
		return err
	}
	defer st.Close()

	// Work out what each object does to the store before writing, so the
	// output can say created/configured/unchanged. A later object with the
	// same name as an earlier one compares with that earlier one.
	seen := map[api.Ref]api.Object{}
	merged := make([]api.Object, len(objs))
	results := make([]string, len(objs))
	for i, o := range objs {
		ref := api.RefOf(o)
		prev, ok := seen[ref]
		if !ok {
			p, err := st.Get(ctx, ref)
			switch {
			case err == nil:
				prev = p
			case !errors.Is(err, store.ErrNotFound):
				return err
			}
		}
		if prev == nil {
			merged[i], results[i] = o, "created"
		} else {
			m, err := keepServerFields(o, prev)
			if err != nil {
				return fmt.Errorf("apply: %s: %w", ref, err)
			}
			merged[i], results[i] = m, "configured"
			if sameJSON(m, prev) {
				results[i] = "unchanged"
			}
		}
		seen[ref] = merged[i]
	}
	if err := st.Apply(ctx, merged...); err != nil {
		return fmt.Errorf("apply: nothing was applied: %w", err)
	}
	for i, o := range objs {
		fmt.Fprintf(g.Out, "%s %s\n", displayName(o), results[i])
	}
	return nil
}

// keepServerFields returns applied with the fields a manifest does not own
// taken from stored, as an API server does: the creation time, and the
// status when the manifest has none (status belongs to whatever controller
// wrote it; re-applying a manifest must not wipe it). Everything else is
// the manifest's: apply replaces the object rather than merging fields.
func keepServerFields(applied, stored api.Object) (api.Object, error) {
	nm, err := toMap(applied)
	if err != nil {
		return nil, err
	}
	om, err := toMap(stored)
	if err != nil {
		return nil, err
	}
	kind := api.KindOf(applied)
	if meta, ok := nm["metadata"].(map[string]any); ok {
		if meta["creationTimestamp"] == nil {
			if ometa, ok := om["metadata"].(map[string]any); ok && ometa["creationTimestamp"] != nil {
				meta["creationTimestamp"] = ometa["creationTimestamp"]
			}
		}
	}
	if stored, ok := om["status"]; ok {
		zero, err := toMap(api.New(kind))
		if err != nil {
			return nil, err
		}
		if reflect.DeepEqual(nm["status"], zero["status"]) {
			nm["status"] = stored
		}
	}
	raw, err := json.Marshal(nm)
	if err != nil {
		return nil, err
	}
	out := api.New(kind)
	if err := json.Unmarshal(raw, out); err != nil {
		return nil, err
	}
	// Keep the manifest's apiVersion (api.New sets the preferred one).
	out.GetObjectKind().SetGroupVersionKind(applied.GetObjectKind().GroupVersionKind())
	return out, nil
}

func toMap(o api.Object) (map[string]any, error) {
	raw, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	return m, nil
}

func sameJSON(a, b api.Object) bool {
	ra, err1 := json.Marshal(a)
	rb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ra, rb)
}

// loadManifests reads and decodes every -f source, then defaults namespaces.
// Problems in any document are all printed to g.Err and make it return an
// ExitError: the caller must change nothing.
func loadManifests(g *Globals, verb string, files []string, recursive bool, namespace string) ([]api.Object, error) {
	if len(files) == 0 {
		return nil, &ExitError{Code: 2, Err: fmt.Errorf("%s: give manifests with -f FILE, -f DIR or -f - (standard input)", verb)}
	}
	paths, err := expandManifestPaths(files, recursive)
	if err != nil {
		return nil, &ExitError{Code: 1, Err: fmt.Errorf("%s: %w", verb, err)}
	}
	var objs []api.Object
	var problems api.DecodeErrors
	var other []error
	for _, p := range paths {
		var r io.Reader
		if p == "-" {
			r = g.In
			if r == nil {
				r = os.Stdin
			}
		} else {
			f, err := os.Open(p)
			if err != nil {
				other = append(other, err)
				continue
			}
			defer f.Close()
			r = f
		}
		got, err := api.Decode(r, p)
		var derrs api.DecodeErrors
		switch {
		case errors.As(err, &derrs):
			problems = append(problems, derrs...)
		case err != nil:
			other = append(other, fmt.Errorf("%s: %w", p, err))
		}
		objs = append(objs, got...)
	}
	for _, o := range objs {
		if err := defaultNamespace(o, namespace); err != nil {
			other = append(other, err)
		}
	}
	n := len(problems) + len(other)
	if n > 0 {
		for _, e := range problems {
			fmt.Fprintln(g.Err, e.Error())
		}
		for _, e := range other {
			fmt.Fprintln(g.Err, e.Error())
		}
		what := "problem"
		if n > 1 {
			what = "problems"
		}
		return nil, &ExitError{Code: 1, Err: fmt.Errorf("%s: %d %s found; nothing was %s", verb, n, what, pastTense(verb))}
	}
	if len(objs) == 0 {
		return nil, &ExitError{Code: 1, Err: fmt.Errorf("%s: no objects found in %s", verb, strings.Join(files, ", "))}
	}
	return objs, nil
}

func pastTense(verb string) string {
	if verb == "apply" {
		return "applied"
	}
	return verb + "d"
}

// expandManifestPaths turns -f arguments into the files to read: a
// directory becomes its manifest files in lexical order, recursively with -R.
func expandManifestPaths(files []string, recursive bool) ([]string, error) {
	var out []string
	stdin := false
	for _, f := range files {
		if f == "-" {
			if stdin {
				return nil, errors.New("-f - (standard input) given more than once")
			}
			stdin = true
			out = append(out, f)
			continue
		}
		fi, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("-f %s: %w", f, err)
		}
		if !fi.IsDir() {
			out = append(out, f)
			continue
		}
		var found []string
		err = filepath.WalkDir(f, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if p != f && !recursive {
					return filepath.SkipDir
				}
				return nil
			}
			switch strings.ToLower(filepath.Ext(p)) {
			case ".yaml", ".yml", ".json":
				found = append(found, p)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("-f %s: %w", f, err)
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("-f %s: no *.yaml, *.yml or *.json files in the directory", f)
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	return out, nil
}

// defaultNamespace gives a namespaced object with no namespace the -n
// namespace, else "default", and refuses an object whose namespace differs
// from -n, as kubectl does.
func defaultNamespace(o api.Object, namespace string) error {
	ki := api.Lookup(api.KindOf(o))
	if ki == nil || !ki.Namespaced {
		return nil
	}
	switch ns := o.GetNamespace(); {
	case ns == "":
		if namespace == "" {
			namespace = "default"
		}
		o.SetNamespace(namespace)
	case namespace != "" && ns != namespace:
		return fmt.Errorf("%s: the namespace from the object %q does not match --namespace %q; pass --namespace=%s or drop -n",
			displayName(o), ns, namespace, ns)
	}
	if o.GetName() == "" {
		return fmt.Errorf("%s: metadata.generateName is not supported; set metadata.name", displayName(o))
	}
	return nil
}

// displayName is how kubectl names an object in messages: "service/smiley",
// "deployment.apps/web".
func displayName(o api.Object) string {
	return kindDisplay(api.KindOf(o)) + "/" + o.GetName()
}

func kindDisplay(k api.Kind) string {
	s := strings.ToLower(k.Kind)
	if k.Group != "" {
		s += "." + k.Group
	}
	return s
}

// ---- delete ----

func newCmdDelete(g *Globals) *cobra.Command {
	var (
		files          []string
		recursive      bool
		namespace      string
		all            bool
		ignoreNotFound bool
	)
	cmd := &cobra.Command{
		Use:   "delete (-f FILE|DIR|- | KIND NAME... | KIND/NAME... | KIND --all)",
		Short: "Delete resources by manifest or by kind and name",
		Example: `  weft delete -f faces.yaml
  weft delete service smiley -n faces
  weft delete deploy/web svc/web
  weft delete httproutes --all -n faces`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var refs []api.Ref
			var names []string
			switch {
			case len(files) > 0:
				if len(args) > 0 || all {
					return &ExitError{Code: 2, Err: errors.New("delete: give either -f or KIND NAME, not both")}
				}
				objs, err := loadManifests(g, "delete", files, recursive, namespace)
				if err != nil {
					return err
				}
				for _, o := range objs {
					refs = append(refs, api.RefOf(o))
					names = append(names, displayName(o))
				}
			default:
				var err error
				if refs, err = refsFromArgs(ctx, g, args, namespace, all); err != nil {
					return err
				}
				for _, r := range refs {
					names = append(names, kindDisplay(r.Kind)+"/"+r.Name)
				}
			}
			return runDelete(ctx, g, refs, names, ignoreNotFound)
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "manifest file, directory, or - for standard input (repeatable)")
	cmd.Flags().BoolVarP(&recursive, "recursive", "R", false, "read directories given with -f recursively")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", `namespace (default "default")`)
	cmd.Flags().BoolVar(&all, "all", false, "delete every object of the kind in the namespace")
	cmd.Flags().BoolVar(&ignoreNotFound, "ignore-not-found", false, "treat missing objects as deleted")
	return cmd
}

func runDelete(ctx context.Context, g *Globals, refs []api.Ref, names []string, ignoreNotFound bool) error {
	st, err := openLocalStore(g)
	if err != nil {
		return err
	}
	defer st.Close()
	var present []api.Ref
	var presentNames []string
	var missing []string
	seen := map[api.Ref]bool{}
	for i, r := range refs {
		if seen[r] {
			continue
		}
		seen[r] = true
		_, err := st.Get(ctx, r)
		switch {
		case err == nil:
			present = append(present, r)
			presentNames = append(presentNames, names[i])
		case errors.Is(err, store.ErrNotFound):
			if !ignoreNotFound {
				missing = append(missing, notFound(r))
			}
		default:
			return err
		}
	}
	if len(present) > 0 {
		if err := st.Delete(ctx, present...); err != nil {
			return fmt.Errorf("delete: nothing was deleted: %w", err)
		}
	}
	for _, n := range presentNames {
		fmt.Fprintf(g.Out, "%s deleted\n", n)
	}
	if len(missing) > 0 {
		return &ExitError{Code: 1, Err: errors.New(strings.Join(missing, "\n"))}
	}
	return nil
}

// notFound is kubectl's message for a missing object.
func notFound(r api.Ref) string {
	plural := strings.ToLower(r.Kind.Kind) + "s"
	if ki := api.Lookup(r.Kind); ki != nil {
		plural = ki.Plural
	}
	if r.Kind.Group != "" {
		plural += "." + r.Kind.Group
	}
	if r.Namespace != "" {
		return fmt.Sprintf("%s %q not found in namespace %q", plural, r.Name, r.Namespace)
	}
	return fmt.Sprintf("%s %q not found", plural, r.Name)
}

// refsFromArgs turns "KIND NAME..." or "KIND/NAME..." (or "KIND --all") into
// refs in the given namespace.
func refsFromArgs(ctx context.Context, g *Globals, args []string, namespace string, all bool) ([]api.Ref, error) {
	usage := errors.New("delete: give -f FILE, KIND NAME..., KIND/NAME... or KIND --all")
	if len(args) == 0 {
		return nil, &ExitError{Code: 2, Err: usage}
	}
	if namespace == "" {
		namespace = "default"
	}
	var refs []api.Ref
	ref := func(ki *api.KindInfo, name string) api.Ref {
		r := api.Ref{Kind: ki.Kind, Name: name}
		if ki.Namespaced {
			r.Namespace = namespace
		}
		return r
	}
	if strings.Contains(args[0], "/") {
		if all {
			return nil, &ExitError{Code: 2, Err: errors.New("delete: --all takes a KIND, not KIND/NAME")}
		}
		for _, a := range args {
			k, name, ok := strings.Cut(a, "/")
			if !ok || name == "" {
				return nil, &ExitError{Code: 2, Err: fmt.Errorf("delete: %q: want KIND/NAME when the first argument is KIND/NAME", a)}
			}
			ki, err := api.ResolveKind(k)
			if err != nil {
				return nil, &ExitError{Code: 2, Err: err}
			}
			refs = append(refs, ref(ki, name))
		}
		return refs, nil
	}
	ki, err := api.ResolveKind(args[0])
	if err != nil {
		return nil, &ExitError{Code: 2, Err: err}
	}
	if all {
		if len(args) > 1 {
			return nil, &ExitError{Code: 2, Err: errors.New("delete: --all takes no names")}
		}
		st, err := openLocalStore(g)
		if err != nil {
			return nil, err
		}
		defer st.Close()
		ns := namespace
		if !ki.Namespaced {
			ns = ""
		}
		objs, err := st.List(ctx, ki.Kind, ns)
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			refs = append(refs, api.RefOf(o))
		}
		return refs, nil
	}
	if len(args) == 1 {
		return nil, &ExitError{Code: 2, Err: fmt.Errorf("delete: name the %s to delete, or pass --all", ki.Plural)}
	}
	for _, name := range args[1:] {
		refs = append(refs, ref(ki, name))
	}
	return refs, nil
}

// ---- get ----

type getOptions struct {
	namespace     string
	allNamespaces bool
	output        string
	selector      string
	noHeaders     bool
	named         bool // names were given: missing ones are errors, not "No resources found"
}

func newCmdGet(g *Globals) *cobra.Command {
	var o getOptions
	cmd := &cobra.Command{
		Use:   "get KIND[,KIND...] [NAME...] | KIND/NAME...",
		Short: "Show resources in the local store",
		Long: `Show resources in the local store as tables, like kubectl get.

KIND is a kind, its plural or its short name (see 'weft api-resources').`,
		Example: `  weft get deploy -n faces
  weft get svc smiley -n faces -o yaml
  weft get pods -A -l app=smiley
  weft get endpointslices -n faces -o wide`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGet(cmd.Context(), g, args, o)
		},
	}
	cmd.Flags().StringVarP(&o.namespace, "namespace", "n", "", `namespace (default "default")`)
	cmd.Flags().BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "list objects in every namespace")
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "output format: yaml, json, wide or name")
	cmd.Flags().StringVarP(&o.selector, "selector", "l", "", "label selector, e.g. app=smiley,tier!=web")
	cmd.Flags().BoolVar(&o.noHeaders, "no-headers", false, "print tables without their header line")
	return cmd
}

// getGroup is one kind's objects to print.
type getGroup struct {
	ki   *api.KindInfo
	objs []api.Object
}

func runGet(ctx context.Context, g *Globals, args []string, o getOptions) error {
	switch o.output {
	case "", "wide", "name", api.FormatYAML, api.FormatJSON:
	default:
		return &ExitError{Code: 2, Err: fmt.Errorf("get: unknown output format %q; use yaml, json, wide or name", o.output)}
	}
	if len(args) == 0 {
		return &ExitError{Code: 2, Err: errors.New("get: name the kind of resource to get, e.g. 'weft get services'; 'weft api-resources' lists them")}
	}
	if o.allNamespaces && o.namespace != "" {
		return &ExitError{Code: 2, Err: errors.New("get: give either -n or -A, not both")}
	}
	sel := labels.Everything()
	if o.selector != "" {
		var err error
		if sel, err = labels.Parse(o.selector); err != nil {
			return &ExitError{Code: 2, Err: fmt.Errorf("get: -l %q: %w", o.selector, err)}
		}
	}
	namespace := o.namespace
	if namespace == "" {
		namespace = "default"
	}
	if o.allNamespaces {
		namespace = ""
	}

	// Parse what to get before opening the store.
	type request struct {
		ki    *api.KindInfo
		names []string // nil: list
	}
	var reqs []request
	if strings.Contains(args[0], "/") {
		for _, a := range args {
			k, name, ok := strings.Cut(a, "/")
			if !ok || name == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("get: %q: want KIND/NAME when the first argument is KIND/NAME", a)}
			}
			ki, err := api.ResolveKind(k)
			if err != nil {
				return &ExitError{Code: 2, Err: fmt.Errorf("get: %w", err)}
			}
			reqs = append(reqs, request{ki, []string{name}})
		}
	} else {
		for _, k := range strings.Split(args[0], ",") {
			ki, err := api.ResolveKind(k)
			if err != nil {
				return &ExitError{Code: 2, Err: fmt.Errorf("get: %w", err)}
			}
			reqs = append(reqs, request{ki, args[1:]})
		}
		if len(reqs) > 1 && len(args) > 1 {
			return &ExitError{Code: 2, Err: errors.New("get: names can only be given with a single kind")}
		}
	}
	for _, r := range reqs {
		if len(r.names) > 0 && o.allNamespaces && r.ki.Namespaced {
			return &ExitError{Code: 2, Err: errors.New("get: a name cannot be combined with -A; use -n NAMESPACE")}
		}
	}

	o.named = len(reqs[0].names) > 0
	st, err := openLocalStore(g)
	if err != nil {
		return err
	}
	defer st.Close()
	var groups []getGroup
	var missing []string
	for _, r := range reqs {
		ns := namespace
		if !r.ki.Namespaced {
			ns = ""
		}
		var objs []api.Object
		if len(r.names) == 0 {
			all, err := st.List(ctx, r.ki.Kind, ns)
			if err != nil {
				return err
			}
			for _, obj := range all {
				if sel.Matches(labels.Set(obj.GetLabels())) {
					objs = append(objs, obj)
				}
			}
		} else {
			for _, name := range r.names {
				ref := api.Ref{Kind: r.ki.Kind, Namespace: ns, Name: name}
				obj, err := st.Get(ctx, ref)
				switch {
				case err == nil:
					objs = append(objs, obj)
				case errors.Is(err, store.ErrNotFound):
					missing = append(missing, notFound(ref))
				default:
					return err
				}
			}
		}
		if r.ki.Kind == api.KindDeployment && (o.output == "" || o.output == "wide") {
			if err := fillDeploymentStatus(ctx, st, objs); err != nil {
				return err
			}
		}
		// Merge a kind given twice (get deploy/a deploy/b) into one table.
		if n := len(groups); n > 0 && groups[n-1].ki == r.ki {
			groups[n-1].objs = append(groups[n-1].objs, objs...)
		} else {
			groups = append(groups, getGroup{r.ki, objs})
		}
	}
	if err := printGet(g.Out, g.Err, groups, o, namespace, time.Now()); err != nil {
		return err
	}
	if len(missing) > 0 {
		return &ExitError{Code: 1, Err: errors.New(strings.Join(missing, "\n"))}
	}
	return nil
}

// fillDeploymentStatus gives Deployments that carry no status one derived
// from their Pods, for the READY/UP-TO-DATE/AVAILABLE columns: in local mode
// the supervisor writes Pods, not Deployment status. Pods match by the
// Deployment's selector in its namespace.
func fillDeploymentStatus(ctx context.Context, st store.Store, objs []api.Object) error {
	pods := map[string][]api.Object{} // by namespace, listed once
	for _, o := range objs {
		d := o.(*appsv1.Deployment)
		if !reflect.DeepEqual(d.Status, appsv1.DeploymentStatus{}) || d.Spec.Selector == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || sel.Empty() {
			continue // an invalid or empty selector matches nothing useful
		}
		list, ok := pods[d.Namespace]
		if !ok {
			if list, err = st.List(ctx, api.KindPod, d.Namespace); err != nil {
				return err
			}
			pods[d.Namespace] = list
		}
		for _, po := range list {
			p := po.(*corev1.Pod)
			if !sel.Matches(labels.Set(p.Labels)) {
				continue
			}
			d.Status.Replicas++
			d.Status.UpdatedReplicas++
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					d.Status.ReadyReplicas++
					d.Status.AvailableReplicas++
				}
			}
		}
	}
	return nil
}

// printGet writes groups in the requested format. "No resources found" goes
// to errOut, as kubectl does, so that scripts reading out see nothing.
func printGet(out, errOut io.Writer, groups []getGroup, o getOptions, namespace string, now time.Time) error {
	var objs []api.Object
	for _, gr := range groups {
		objs = append(objs, gr.objs...)
	}
	if len(objs) == 0 && !o.named {
		allClusterScoped := true
		for _, gr := range groups {
			allClusterScoped = allClusterScoped && !gr.ki.Namespaced
		}
		if namespace == "" || allClusterScoped {
			fmt.Fprintln(errOut, "No resources found")
		} else {
			fmt.Fprintf(errOut, "No resources found in %s namespace.\n", namespace)
		}
		if o.output == api.FormatJSON {
			return api.Encode(out, nil, api.FormatJSON) // an empty List
		}
		return nil
	}
	switch o.output {
	case api.FormatYAML, api.FormatJSON:
		return api.Encode(out, objs, o.output)
	case "name":
		for _, obj := range objs {
			fmt.Fprintln(out, displayName(obj))
		}
		return nil
	}
	first := true
	for _, gr := range groups {
		if len(gr.objs) == 0 {
			continue
		}
		if !first {
			fmt.Fprintln(out)
		}
		first = false
		t := tableFor(gr.ki, gr.objs, tableOptions{
			wide:          o.output == "wide",
			withNamespace: o.allNamespaces && gr.ki.Namespaced,
			kindPrefix:    len(groups) > 1,
			now:           now,
		})
		if o.noHeaders {
			t.header = nil
		}
		if err := t.write(out); err != nil {
			return err
		}
	}
	return nil
}

// table is rows of cells under a header, written with kubectl's spacing.
type table struct {
	header []string
	rows   [][]string
}

func (t *table) write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	if t.header != nil {
		fmt.Fprintln(tw, strings.Join(t.header, "\t"))
	}
	for _, r := range t.rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

type tableOptions struct {
	wide          bool
	withNamespace bool // -A: a NAMESPACE column first
	kindPrefix    bool // several kinds: names as kind/name
	now           time.Time
}

// tableFor builds the table for one kind: NAME, kind-specific columns, AGE,
// and with wide a few more.
func tableFor(ki *api.KindInfo, objs []api.Object, o tableOptions) *table {
	cols := columnsFor(ki.Kind)
	t := &table{}
	if o.withNamespace {
		t.header = append(t.header, "NAMESPACE")
	}
	t.header = append(t.header, "NAME")
	for _, c := range cols {
		if !c.wide || o.wide {
			t.header = append(t.header, c.name)
		}
	}
	for _, obj := range objs {
		var row []string
		if o.withNamespace {
			row = append(row, obj.GetNamespace())
		}
		name := obj.GetName()
		if o.kindPrefix {
			name = displayName(obj)
		}
		row = append(row, name)
		for _, c := range cols {
			if !c.wide || o.wide {
				row = append(row, c.value(obj, o.now))
			}
		}
		t.rows = append(t.rows, row)
	}
	return t
}

type column struct {
	name  string
	wide  bool // shown only with -o wide
	value func(o api.Object, now time.Time) string
}

var ageColumn = column{name: "AGE", value: func(o api.Object, now time.Time) string { return age(o, now) }}

// columnsFor returns the columns after NAME for a kind.
func columnsFor(k api.Kind) []column {
	switch k {
	case api.KindService:
		return []column{
			{name: "TYPE", value: func(o api.Object, _ time.Time) string { return serviceType(o.(*corev1.Service)) }},
			{name: "PORT(S)", value: func(o api.Object, _ time.Time) string { return servicePorts(o.(*corev1.Service)) }},
			ageColumn,
			{name: "SELECTOR", wide: true, value: func(o api.Object, _ time.Time) string {
				return selectorString(o.(*corev1.Service).Spec.Selector)
			}},
		}
	case api.KindDeployment:
		return []column{
			{name: "READY", value: func(o api.Object, _ time.Time) string {
				d := o.(*appsv1.Deployment)
				return fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, desiredReplicas(d))
			}},
			{name: "UP-TO-DATE", value: func(o api.Object, _ time.Time) string {
				return strconv.Itoa(int(o.(*appsv1.Deployment).Status.UpdatedReplicas))
			}},
			{name: "AVAILABLE", value: func(o api.Object, _ time.Time) string {
				return strconv.Itoa(int(o.(*appsv1.Deployment).Status.AvailableReplicas))
			}},
			ageColumn,
			{name: "CONTAINERS", wide: true, value: func(o api.Object, _ time.Time) string {
				var names []string
				for _, c := range o.(*appsv1.Deployment).Spec.Template.Spec.Containers {
					names = append(names, c.Name)
				}
				return orNone(strings.Join(names, ","))
			}},
			{name: "SELECTOR", wide: true, value: func(o api.Object, _ time.Time) string {
				if s := o.(*appsv1.Deployment).Spec.Selector; s != nil {
					return selectorString(s.MatchLabels)
				}
				return "<none>"
			}},
		}
	case api.KindPod:
		return []column{
			{name: "READY", value: func(o api.Object, _ time.Time) string { return podReady(o.(*corev1.Pod)) }},
			{name: "STATUS", value: func(o api.Object, _ time.Time) string { return podStatus(o.(*corev1.Pod)) }},
			{name: "RESTARTS", value: func(o api.Object, _ time.Time) string {
				n := 0
				for _, cs := range o.(*corev1.Pod).Status.ContainerStatuses {
					n += int(cs.RestartCount)
				}
				return strconv.Itoa(n)
			}},
			ageColumn,
			{name: "IP", wide: true, value: func(o api.Object, _ time.Time) string { return orNone(o.(*corev1.Pod).Status.PodIP) }},
			{name: "ADMIN", wide: true, value: func(o api.Object, _ time.Time) string {
				return orNone(o.GetAnnotations()["weft.io/admin-addr"])
			}},
		}
	case api.KindNamespace:
		return []column{
			{name: "STATUS", value: func(o api.Object, _ time.Time) string {
				if p := o.(*corev1.Namespace).Status.Phase; p != "" {
					return string(p)
				}
				return "Active"
			}},
			ageColumn,
		}
	case api.KindEndpointSlice:
		return []column{
			{name: "ADDRESSTYPE", value: func(o api.Object, _ time.Time) string {
				return string(o.(*discoveryv1.EndpointSlice).AddressType)
			}},
			{name: "PORTS", value: func(o api.Object, _ time.Time) string { return slicePorts(o.(*discoveryv1.EndpointSlice)) }},
			{name: "ENDPOINTS", value: func(o api.Object, _ time.Time) string {
				return sliceEndpoints(o.(*discoveryv1.EndpointSlice))
			}},
			ageColumn,
		}
	case api.KindHTTPRoute, api.KindPolicyHTTPRoute:
		return []column{
			{name: "HOSTNAMES", value: func(o api.Object, _ time.Time) string {
				return hostnames(o.(*gatewayv1.HTTPRoute).Spec.Hostnames)
			}},
			ageColumn,
			{name: "PARENTS", wide: true, value: func(o api.Object, _ time.Time) string {
				return parentRefs(o.(*gatewayv1.HTTPRoute).Spec.ParentRefs)
			}},
		}
	case api.KindGRPCRoute:
		return []column{
			{name: "HOSTNAMES", value: func(o api.Object, _ time.Time) string {
				return hostnames(o.(*gatewayv1.GRPCRoute).Spec.Hostnames)
			}},
			ageColumn,
			{name: "PARENTS", wide: true, value: func(o api.Object, _ time.Time) string {
				return parentRefs(o.(*gatewayv1.GRPCRoute).Spec.ParentRefs)
			}},
		}
	case api.KindGatewayClass:
		// kubectl's columns for a GatewayClass.
		return []column{
			{name: "CONTROLLER", value: func(o api.Object, _ time.Time) string {
				return orNone(string(o.(*gatewayv1.GatewayClass).Spec.ControllerName))
			}},
			{name: "ACCEPTED", value: func(o api.Object, _ time.Time) string {
				for _, c := range o.(*gatewayv1.GatewayClass).Status.Conditions {
					if c.Type == string(gatewayv1.GatewayClassConditionStatusAccepted) {
						return string(c.Status)
					}
				}
				return "Unknown"
			}},
			ageColumn,
		}
	case api.KindGateway:
		return []column{
			{name: "CLASS", value: func(o api.Object, _ time.Time) string {
				return orNone(string(o.(*gatewayv1.Gateway).Spec.GatewayClassName))
			}},
			{name: "LISTENERS", value: func(o api.Object, _ time.Time) string {
				return strconv.Itoa(len(o.(*gatewayv1.Gateway).Spec.Listeners))
			}},
			ageColumn,
		}
	}
	return []column{ageColumn}
}

func hostnames(hs []gatewayv1.Hostname) string {
	parts := make([]string, len(hs))
	for i, h := range hs {
		parts[i] = string(h)
	}
	return orNone(strings.Join(parts, ","))
}

// parentRefs lists a route's parents as kind/name (namespace/name when in
// another namespace): "service/smiley", "gateway/ingress".
func parentRefs(refs []gatewayv1.ParentReference) string {
	parts := make([]string, len(refs))
	for i, r := range refs {
		kind := "gateway"
		if r.Kind != nil {
			kind = strings.ToLower(string(*r.Kind))
		}
		name := string(r.Name)
		if r.Namespace != nil {
			name = string(*r.Namespace) + "/" + name
		}
		if r.Port != nil {
			name += ":" + strconv.Itoa(int(*r.Port))
		}
		parts[i] = kind + "/" + name
	}
	return orNone(strings.Join(parts, ","))
}

// age is kubectl's AGE: a short human duration since creation.
func age(o api.Object, now time.Time) string {
	ts := o.GetCreationTimestamp()
	if ts.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(ts.Time))
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func selectorString(m map[string]string) string {
	if len(m) == 0 {
		return "<none>"
	}
	return labels.SelectorFromSet(m).String()
}

func serviceType(s *corev1.Service) string {
	if s.Spec.Type == "" {
		return string(corev1.ServiceTypeClusterIP)
	}
	return string(s.Spec.Type)
}

// servicePorts is kubectl's PORT(S): "80/TCP,8443:30443/TCP".
func servicePorts(s *corev1.Service) string {
	var parts []string
	for _, p := range s.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		if p.NodePort != 0 {
			parts = append(parts, fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, proto))
		} else {
			parts = append(parts, fmt.Sprintf("%d/%s", p.Port, proto))
		}
	}
	return orNone(strings.Join(parts, ","))
}

func desiredReplicas(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

// podReady is "ready/total" containers: from container statuses when the
// writer set them, else from the Ready condition.
func podReady(p *corev1.Pod) string {
	total := len(p.Spec.Containers)
	if len(p.Status.ContainerStatuses) > 0 {
		ready := 0
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Ready {
				ready++
			}
		}
		return fmt.Sprintf("%d/%d", ready, max(total, len(p.Status.ContainerStatuses)))
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return fmt.Sprintf("%d/%d", total, total)
		}
	}
	return fmt.Sprintf("0/%d", total)
}

func podStatus(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return "Terminating"
	}
	if p.Status.Reason != "" {
		return p.Status.Reason
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			return w.Reason
		}
	}
	if p.Status.Phase == "" {
		return "Unknown"
	}
	return string(p.Status.Phase)
}

func slicePorts(s *discoveryv1.EndpointSlice) string {
	var parts []string
	for _, p := range s.Ports {
		if p.Port != nil {
			parts = append(parts, strconv.Itoa(int(*p.Port)))
		}
	}
	return orNone(strings.Join(parts, ","))
}

// sliceEndpoints lists addresses, marking not-ready ones as kubectl's
// describe does; several endpoints share 127.0.0.1 in local mode.
func sliceEndpoints(s *discoveryv1.EndpointSlice) string {
	var parts []string
	for _, e := range s.Endpoints {
		for _, a := range e.Addresses {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				a += " (not ready)"
			}
			parts = append(parts, a)
		}
	}
	return orNone(strings.Join(parts, ","))
}

// ---- api-resources ----

func newCmdAPIResources(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "api-resources",
		Short: "List the resource kinds Weft reads",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return printAPIResources(g.Out, api.Kinds())
		},
	}
}

// printAPIResources writes kubectl's api-resources table, core group first,
// then by group and name.
func printAPIResources(w io.Writer, kinds []*api.KindInfo) error {
	sorted := append([]*api.KindInfo(nil), kinds...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		return a.Plural < b.Plural
	})
	t := &table{header: []string{"NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"}}
	for _, ki := range sorted {
		t.rows = append(t.rows, []string{
			ki.Plural, strings.Join(ki.ShortNames, ","), ki.APIVersion(), strconv.FormatBool(ki.Namespaced), ki.Kind.Kind,
		})
	}
	return t.write(w)
}
