package cli

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/control"
	"github.com/weft-mesh/weft/internal/store/local"
)

// controlOptions are the flags of 'weft control'.
type controlOptions struct {
	addr          string
	adminAddr     string
	store         string
	shutdownGrace time.Duration
	logLevel      string
}

func newCmdControl(g *Globals) *cobra.Command {
	o := controlOptions{
		addr:          control.DefaultAddr,
		adminAddr:     control.DefaultAdminAddr,
		store:         "local",
		shutdownGrace: control.DefaultShutdownGrace,
		logLevel:      "info",
	}
	cmd := &cobra.Command{
		Use:   "control",
		Short: "Run the control plane (normally started by 'weft up')",
		Long: `Run weft's control plane: the Destination service proxies use to discover
endpoints and service profiles (io.linkerd.proxy.destination.Destination, the
Linkerd proxy API), served over gRPC at --addr from the resources in the
state directory.

The admin server at --admin-addr serves /ready (the store has been read),
/live and /metrics. On SIGINT or SIGTERM open streams end, so proxies
reconnect, and the process exits.`,
		Example: `  weft control --state-dir /tmp/mesh --addr 127.0.0.1:8086 --admin-addr 127.0.0.1:9996`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
				return &ExitError{Code: 2, Err: fmt.Errorf("control: --log-level: %w", err)}
			}
			if o.store != "local" {
				return &ExitError{Code: 2, Err: fmt.Errorf("control: unknown --store %q: the only store is \"local\" (the state directory)", o.store)}
			}
			logger := slog.New(slog.NewTextHandler(g.Err, &slog.HandlerOptions{Level: level}))
			dir := g.StateDirOrDefault()
			st, err := local.OpenWithOptions(dir, local.Options{Logger: logger})
			if err != nil {
				return fmt.Errorf("control: opening the state directory %s: %w", dir, err)
			}
			defer st.Close()
			p, err := control.Listen(control.Config{
				Addr:          o.addr,
				AdminAddr:     o.adminAddr,
				Store:         st,
				Logger:        logger,
				ShutdownGrace: o.shutdownGrace,
			})
			if err != nil {
				return err
			}
			return p.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", o.addr, "gRPC listen address (Destination)")
	f.StringVar(&o.adminAddr, "admin-addr", o.adminAddr, "admin server address (/ready, /live, /metrics)")
	f.StringVar(&o.store, "store", o.store, `where resources are read from: "local" (the state directory)`)
	f.DurationVar(&o.shutdownGrace, "shutdown-grace", o.shutdownGrace, "how long to wait for RPCs to finish on shutdown")
	f.StringVar(&o.logLevel, "log-level", o.logLevel, "log level: debug, info, warn or error")
	return cmd
}
