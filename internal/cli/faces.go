package cli

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/demo/faces"
)

// newCmdFaces runs one service of the Faces demo application. The
// supervisor runs the faces-gui and faces-workload images as this command.
func newCmdFaces(g *Globals) *cobra.Command {
	var (
		port int
		addr string
	)
	cmd := &cobra.Command{
		Use:   "faces [gui|face|smiley|color]",
		Short: "Run one service of the Faces demo application",
		Long: `Run one service of the Faces demo (https://github.com/BuoyantIO/faces-demo,
chart 1.4.1 behaviour). The role comes from the argument, else from
$FACES_SERVICE. Everything else is read from the environment as the upstream
images read it: ERROR_FRACTION, LATCH_FRACTION, DELAY_BUCKETS, MAX_RATE,
USER_HEADER_NAME, HOST_IP, DEBUG_ENABLED; SMILEY (smiley); COLOR (color, and
the gui's page background); SMILEY_SERVICE and COLOR_SERVICE (face); HIDE_KEY,
SHOW_PODS, DATA_PATH and FACE_SERVICE (gui).`,
		Example: `  weft faces smiley --port 8001
  SMILEY_SERVICE=127.0.0.1:8001 COLOR_SERVICE=127.0.0.1:8002 weft faces face --port 8003
  FACE_SERVICE=127.0.0.1:8003 weft faces gui`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := os.Getenv("FACES_SERVICE")
			if len(args) == 1 {
				name = args[0]
			}
			role, err := faces.ParseRole(name)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			if !cmd.Flags().Changed("port") {
				if p := os.Getenv("PORT"); p != "" {
					n, err := strconv.Atoi(p)
					if err != nil || n < 0 || n > 65535 {
						return &ExitError{Code: 2, Err: fmt.Errorf("faces: $PORT %q is not a port number: set it to 0-65535 or pass --port", p)}
					}
					port = n
				}
			}
			listen := addr
			if _, _, err := net.SplitHostPort(addr); err != nil {
				listen = net.JoinHostPort(addr, strconv.Itoa(port))
			}
			cfg := faces.ConfigFromEnv(role, os.Getenv)
			level := slog.LevelInfo
			if cfg.Debug {
				level = slog.LevelDebug
			}
			logger := slog.New(slog.NewTextHandler(g.Err, &slog.HandlerOptions{Level: level}))
			srv, err := faces.New(cfg, faces.Options{Logger: logger})
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("faces: listen on %s: %w (is another process using the port? pick one with --port)", listen, err)
			}
			return srv.Serve(cmd.Context(), ln)
		},
	}
	cmd.Flags().IntVar(&port, "port", 8000, "port to listen on (default $PORT, else 8000)")
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1", "address to listen on: a host (combined with --port) or host:port")
	return cmd
}
