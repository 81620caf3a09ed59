package local

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Expand replaces $(VAR) references in s the way Kubernetes expands a
// container's command, args and env: $(VAR) becomes the value lookup returns;
// a reference lookup does not know is left as written; $$ is an escaped $, so
// $$(VAR) yields the literal $(VAR). Any other $ is kept.
func Expand(s string, lookup func(string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				// Unterminated reference: Kubernetes keeps it literally.
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// EnvVar is one resolved environment variable.
type EnvVar struct{ Name, Value string }

// envList is an ordered environment in which later entries override earlier
// ones, as in a container.
type envList []EnvVar

func (l envList) lookup(name string) (string, bool) {
	for i := len(l) - 1; i >= 0; i-- {
		if l[i].Name == name {
			return l[i].Value, true
		}
	}
	return "", false
}

func (l envList) set(name, value string) envList {
	for i := range l {
		if l[i].Name == name {
			l[i].Value = value
			return l
		}
	}
	return append(l, EnvVar{name, value})
}

// Strings returns NAME=VALUE entries for exec.
func (l envList) Strings() []string {
	out := make([]string, len(l))
	for i, e := range l {
		out[i] = e.Name + "=" + e.Value
	}
	return out
}

// PodInfo is what a container's environment may refer to about its pod.
type PodInfo struct {
	Name, Namespace, ServiceAccount string
	Labels, Annotations             map[string]string
}

// SecretLookup returns one key of a Secret, for env valueFrom.secretKeyRef.
type SecretLookup func(namespace, name, key string) (string, error)

// ContainerEnv builds a container's environment: first the variables the
// supervisor injects (PORT, HTTP_PROXY, ... in injected), then the container's
// own env in order, each value expanded against the variables before it as
// Kubernetes does.
//
// All replicas share 127.0.0.1, so an app cannot listen on the containerPort
// its manifest declares (two replicas would collide, and the sidecar's
// inbound listener needs its own port). The supervisor gives each declared
// containerPort a free local port (localPorts); manifests commonly tell the
// app its port through env (WEB_PORT: "8080"), so an env value that is
// exactly a declared containerPort number is rewritten to that port's local
// port. Without this the app would bind the manifest's port and never be
// reached by its sidecar.
func ContainerEnv(c *corev1.Container, pod PodInfo, injected []EnvVar, localPorts map[int32]int, secrets SecretLookup) ([]EnvVar, error) {
	env := envList(append([]EnvVar(nil), injected...))
	for _, e := range c.Env {
		var value string
		switch {
		case e.ValueFrom == nil:
			value = Expand(e.Value, env.lookup)
		case e.ValueFrom.FieldRef != nil:
			v, err := fieldRef(e.ValueFrom.FieldRef.FieldPath, pod)
			if err != nil {
				return nil, fmt.Errorf("local: container %q env %s: %w", c.Name, e.Name, err)
			}
			value = v
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			if secrets == nil {
				return nil, fmt.Errorf("local: container %q env %s: secrets are not available", c.Name, e.Name)
			}
			v, err := secrets(pod.Namespace, ref.Name, ref.Key)
			if err != nil {
				if ref.Optional != nil && *ref.Optional {
					continue
				}
				return nil, fmt.Errorf("local: container %q env %s: %w", c.Name, e.Name, err)
			}
			value = v
		default:
			return nil, fmt.Errorf("local: container %q env %s: only value, fieldRef and secretKeyRef are supported in local mode", c.Name, e.Name)
		}
		value = rewritePort(value, localPorts)
		env = env.set(e.Name, value)
	}
	return env, nil
}

func rewritePort(value string, localPorts map[int32]int) string {
	n, err := strconv.ParseInt(value, 10, 32)
	if err != nil {
		return value
	}
	if p, ok := localPorts[int32(n)]; ok {
		return strconv.Itoa(p)
	}
	return value
}

func fieldRef(path string, pod PodInfo) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "spec.serviceAccountName":
		return pod.ServiceAccount, nil
	case "status.podIP", "status.hostIP", "spec.nodeName":
		if path == "spec.nodeName" {
			return "localhost", nil
		}
		return "127.0.0.1", nil
	}
	for _, p := range []struct {
		prefix string
		m      map[string]string
	}{{"metadata.labels['", pod.Labels}, {"metadata.annotations['", pod.Annotations}} {
		if strings.HasPrefix(path, p.prefix) && strings.HasSuffix(path, "']") {
			return p.m[strings.TrimSuffix(strings.TrimPrefix(path, p.prefix), "']")], nil
		}
	}
	return "", fmt.Errorf("fieldRef %q is not supported in local mode", path)
}
