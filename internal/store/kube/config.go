package kube

import (
	"errors"
	"fmt"
	"os"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// RESTConfig finds the API server to talk to, as Kubernetes controllers
// do: the kubeconfig file at path if given, else the file named by
// $KUBECONFIG, else the in-cluster configuration (the pod's service account
// token and the KUBERNETES_SERVICE_HOST/PORT environment).
//
// A non-empty kubeContext selects that context of the kubeconfig (as
// kubectl --context does) instead of its current one; the kubeconfig is
// then path, else $KUBECONFIG, else ~/.kube/config.
func RESTConfig(path, kubeContext string) (*rest.Config, error) {
	if kubeContext != "" {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		rules.ExplicitPath = path
		cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: kubeContext}).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("store/kube: kubeconfig context %q: %w", kubeContext, err)
		}
		return cfg, nil
	}
	if path == "" {
		path = os.Getenv("KUBECONFIG")
	}
	if path != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("store/kube: reading kubeconfig %s: %w", path, err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if errors.Is(err, rest.ErrNotInCluster) {
		return nil, errors.New("store/kube: not running in a cluster and no kubeconfig given: pass --kubeconfig PATH or set KUBECONFIG")
	}
	if err != nil {
		return nil, fmt.Errorf("store/kube: in-cluster configuration: %w", err)
	}
	return cfg, nil
}
