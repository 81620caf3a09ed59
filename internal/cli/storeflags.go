package cli

import (
	"fmt"
	"log/slog"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/weft-mesh/weft/internal/store"
	"github.com/weft-mesh/weft/internal/store/kube"
	"github.com/weft-mesh/weft/internal/store/local"
)

// storeFlags are --store and --kubeconfig, shared by the long-running
// commands that read resources ('weft control', 'weft ingress'), so that
// every one of them picks its store the same way.
type storeFlags struct {
	kind       string // "local" or "kube"
	kubeconfig string
}

func addStoreFlags(f *pflag.FlagSet, s *storeFlags) {
	if s.kind == "" {
		s.kind = "local"
	}
	f.StringVar(&s.kind, "store", s.kind, `where resources are read from: "local" (the state directory) or "kube" (the Kubernetes API)`)
	f.StringVar(&s.kubeconfig, "kubeconfig", "", "kubeconfig file for --store=kube (default $KUBECONFIG, else the in-cluster configuration)")
}

// openedStore is the store a command runs on.
type openedStore struct {
	// Store is the kube or local store itself (not wrapped, so that
	// consumers see its optional methods, such as ApplyStatus).
	Store store.Store
	// Kube is the API server's configuration with --store=kube (for
	// clients beyond the store, such as TokenReview); nil otherwise.
	Kube *rest.Config
}

// open opens the store the flags select: the state directory dir with
// localOpts, or the Kubernetes API (--kubeconfig, else $KUBECONFIG, else
// the in-cluster configuration) with kubeOpts. component prefixes errors
// ("control", "ingress"). The caller has checked the flags with validate
// and closes the store.
func (s storeFlags) open(component, dir string, logger *slog.Logger, localOpts local.Options, kubeOpts kube.Options) (*openedStore, error) {
	if s.kind == "kube" {
		cfg, err := kube.RESTConfig(s.kubeconfig, "")
		if err != nil {
			return nil, &ExitError{Code: 2, Err: fmt.Errorf("%s: --store=kube: %w", component, err)}
		}
		// client-go logs (watch errors, retries) through klog.
		klog.SetSlogLogger(logger)
		if kubeOpts.Logger == nil {
			kubeOpts.Logger = logger
		}
		ks, err := kube.New(cfg, kubeOpts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", component, err)
		}
		return &openedStore{Store: ks, Kube: cfg}, nil
	}
	if localOpts.Logger == nil {
		localOpts.Logger = logger
	}
	ls, err := local.OpenWithOptions(dir, localOpts)
	if err != nil {
		return nil, fmt.Errorf("%s: opening the state directory %s: %w", component, dir, err)
	}
	return &openedStore{Store: ls}, nil
}

// validate checks --store before anything else is started.
func (s storeFlags) validate(component string) error {
	if s.kind != "local" && s.kind != "kube" {
		return &ExitError{Code: 2, Err: fmt.Errorf("%s: unknown --store %q: use \"local\" (the state directory) or \"kube\" (the Kubernetes API)", component, s.kind)}
	}
	return nil
}

// Close closes the underlying store.
func (o *openedStore) Close() error {
	if c, ok := o.Store.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}
