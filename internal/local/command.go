package local

import (
	"fmt"
	"os/exec"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// builtinImages maps demo images to the weft subcommand that does the same
// job, so that the Faces demo's manifests run unchanged in local mode. The
// image's role comes from its environment (FACES_SERVICE), as in the real
// images.
var builtinImages = []struct{ prefix, subcommand string }{
	{"ghcr.io/buoyantio/faces-gui", "faces"},
	{"ghcr.io/buoyantio/faces-workload", "faces"},
}

func builtinFor(image string) (string, bool) {
	for _, b := range builtinImages {
		if strings.HasPrefix(image, b.prefix) {
			return b.subcommand, true
		}
	}
	return "", false
}

// CheckRunnable reports why a Deployment cannot run in local mode, or nil.
// Local mode runs processes, not images, so each container needs a command
// unless its image is a demo image weft has built in.
func CheckRunnable(d *appsv1.Deployment) error {
	cs := d.Spec.Template.Spec.Containers
	if len(cs) == 0 {
		return fmt.Errorf("local: Deployment %s/%s: spec.template.spec.containers is empty", d.Namespace, d.Name)
	}
	for i, c := range cs {
		if len(c.Command) > 0 {
			continue
		}
		if _, ok := builtinFor(c.Image); ok {
			continue
		}
		return fmt.Errorf("local: Deployment %s/%s: spec.template.spec.containers[%d] (%q): local mode runs processes, not images, so the container needs a command (image %q is not one weft has built in); add command: [...] with the program to run",
			d.Namespace, d.Name, i, c.Name, c.Image)
	}
	return nil
}

// ResolveCommand returns the argv a container runs: its command and args with
// $(VAR) references expanded against env, "weft" as command[0] meaning this
// binary (exe), and demo images without a command mapped to their built-in
// weft subcommand.
func ResolveCommand(c *corev1.Container, exe string, env []EnvVar) ([]string, error) {
	lookup := envList(env).lookup
	var argv []string
	if len(c.Command) == 0 {
		sub, ok := builtinFor(c.Image)
		if !ok {
			return nil, fmt.Errorf("local: container %q: local mode needs a command (image %q is not built in)", c.Name, c.Image)
		}
		argv = append(argv, exe, sub)
	} else {
		for _, a := range c.Command {
			argv = append(argv, Expand(a, lookup))
		}
		if argv[0] == "weft" {
			argv[0] = exe
		}
	}
	for _, a := range c.Args {
		argv = append(argv, Expand(a, lookup))
	}
	if !strings.Contains(argv[0], "/") {
		p, err := exec.LookPath(argv[0])
		if err != nil {
			return nil, fmt.Errorf("local: container %q: command %q: %w", c.Name, argv[0], err)
		}
		argv[0] = p
	}
	return argv, nil
}
