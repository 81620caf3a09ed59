package inject

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Mode is what Transform does to each workload.
type Mode int

const (
	// ModeAnnotate adds the inject annotation (weft inject).
	ModeAnnotate Mode = iota
	// ModeManual adds the containers (weft inject --manual).
	ModeManual
	// ModeUninject removes both (weft uninject).
	ModeUninject
)

// templatePaths are where each workload kind keeps its pod template.
var templatePaths = map[string][]string{
	"Deployment":            {"spec", "template"},
	"StatefulSet":           {"spec", "template"},
	"DaemonSet":             {"spec", "template"},
	"ReplicaSet":            {"spec", "template"},
	"ReplicationController": {"spec", "template"},
	"Job":                   {"spec", "template"},
	"CronJob":               {"spec", "jobTemplate", "spec", "template"},
	"Pod":                   {},
}

// Transform reads multi-document YAML (or JSON) manifests from r and
// writes them to w with each workload's pod template changed per mode.
// Documents without a workload pass through byte for byte; a List's items
// are each handled. Each workload changed is reported to report as
// `deployment "nginx" injected`, as linkerd does.
func Transform(r io.Reader, w, report io.Writer, mode Mode, cfg Config) error {
	yr := k8syaml.NewYAMLReader(bufio.NewReader(r))
	first := true
	for i := 0; ; i++ {
		doc, err := yr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("inject: reading document %d: %w", i+1, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		out, err := transformDoc(doc, report, mode, cfg)
		if err != nil {
			return fmt.Errorf("inject: document %d: %w", i+1, err)
		}
		if !first {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		first = false
		if _, err := w.Write(out); err != nil {
			return err
		}
	}
}

func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for line := range bytes.SplitSeq(doc, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) == 0 || t[0] == '#' || bytes.Equal(t, []byte("---")) {
			continue
		}
		out.Write(line)
		out.WriteByte('\n')
	}
	return out.Bytes()
}

func transformDoc(doc []byte, report io.Writer, mode Mode, cfg Config) ([]byte, error) {
	var obj map[string]any
	if err := yaml.Unmarshal(doc, &obj); err != nil {
		return nil, err
	}
	changed, err := transformObject(obj, report, mode, cfg)
	if err != nil {
		return nil, err
	}
	if !changed {
		out := bytes.TrimPrefix(doc, []byte("---\n"))
		if !bytes.HasSuffix(out, []byte("\n")) {
			out = append(out, '\n')
		}
		return out, nil
	}
	return yaml.Marshal(obj)
}

func transformObject(obj map[string]any, report io.Writer, mode Mode, cfg Config) (bool, error) {
	kind, _ := obj["kind"].(string)
	if strings.HasSuffix(kind, "List") {
		changed := false
		items, _ := obj["items"].([]any)
		for _, it := range items {
			m, ok := it.(map[string]any)
			if !ok {
				continue
			}
			c, err := transformObject(m, report, mode, cfg)
			if err != nil {
				return false, err
			}
			changed = changed || c
		}
		return changed, nil
	}
	path, ok := templatePaths[kind]
	if !ok {
		return false, nil
	}
	tmpl := obj
	for _, p := range path {
		next, ok := tmpl[p].(map[string]any)
		if !ok {
			return false, nil
		}
		tmpl = next
	}
	meta, _ := tmpl["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		tmpl["metadata"] = meta
	}
	spec, _ := tmpl["spec"].(map[string]any)
	objMeta, _ := obj["metadata"].(map[string]any)
	name, _ := objMeta["name"].(string)
	what := fmt.Sprintf("%s %q", strings.ToLower(kind), name)
	switch mode {
	case ModeAnnotate:
		Annotate(meta)
		fmt.Fprintf(report, "%s injected\n", what)
	case ModeManual:
		if spec == nil {
			return false, fmt.Errorf("%s has no pod spec", what)
		}
		workload := ""
		if kind == "Deployment" {
			workload = name
		}
		if err := Manual(meta, spec, cfg, workload); err != nil {
			return false, fmt.Errorf("%s: %w", what, err)
		}
		fmt.Fprintf(report, "%s injected\n", what)
	case ModeUninject:
		if !Uninject(meta, spec) {
			fmt.Fprintf(report, "%s skipped (not injected)\n", what)
			return false, nil
		}
		if len(meta) == 0 {
			delete(tmpl, "metadata")
		}
		fmt.Fprintf(report, "%s uninjected\n", what)
	}
	return true, nil
}
