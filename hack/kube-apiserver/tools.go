//go:build tools

// Package tools only pins k8s.io/kubernetes for build.sh: importing the
// kube-apiserver command's package keeps 'go mod tidy' from dropping the
// requirements the build needs. Nothing here is ever compiled.
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver/app"
