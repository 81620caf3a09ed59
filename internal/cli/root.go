// Package cli holds weft's cobra commands, one file per command group.
// Commands parse flags and call into the internal packages; they hold no
// logic of their own beyond presenting results.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

// Globals are the settings every command shares.
type Globals struct {
	// StateDir is the local mesh's state directory; see StateDirOrDefault.
	StateDir string
	In       io.Reader
	Out      io.Writer
	Err      io.Writer
}

// StateDirOrDefault resolves the state directory: the --state-dir flag, else
// $WEFT_STATE_DIR, else $XDG_STATE_HOME/weft, else ~/.local/state/weft.
func (g *Globals) StateDirOrDefault() string {
	if g.StateDir != "" {
		return g.StateDir
	}
	if d := os.Getenv("WEFT_STATE_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "weft")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "weft-state")
	}
	return filepath.Join(home, ".local", "state", "weft")
}

// ExitError carries a specific exit code out of a command.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// NewRootCmd builds the command tree. The list below is the whole CLI.
func NewRootCmd(g *Globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "weft",
		Short: "Weft: a service mesh and ingress gateway in one binary",
		Long: `Weft meshes an application's services without changing their code:
mTLS, golden metrics, load balancing, retries, timeouts, rate limits and
an ingress, on a laptop (local mode) or on Kubernetes.

Start with 'weft demo' to run the Faces demo application on a local mesh.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(g.In)
	root.SetOut(g.Out)
	root.SetErr(g.Err)
	root.PersistentFlags().StringVar(&g.StateDir, "state-dir", "", "local mesh state directory (default $WEFT_STATE_DIR, else $XDG_STATE_HOME/weft or ~/.local/state/weft)")
	root.AddCommand(
		newCmdVersion(g),
		// Resources.
		newCmdApply(g),
		newCmdDelete(g),
		newCmdGet(g),
		newCmdAPIResources(g),
		// Identity and health.
		newCmdIdentity(g),
		newCmdCheck(g),
		// Observability.
		newCmdViz(g),
		newCmdDiagnostics(g),
		// The local mesh.
		newCmdUp(g),
		newCmdDemo(g),
		newCmdDown(g),
		newCmdStatus(g),
		newCmdLogs(g),
		newCmdScale(g),
		newCmdSet(g),
		// Components, normally started by 'weft up'.
		newCmdControl(g),
		newCmdProxy(g),
		newCmdIngress(g),
		newCmdRatelimit(g),
		// Demo applications.
		newCmdFaces(g),
		// Kubernetes.
		newCmdInstall(g),
		newCmdUninstall(g),
		newCmdInject(g),
		newCmdUninject(g),
		newCmdProxyInit(g),
	)
	return root
}

// Run executes the CLI and returns the process exit code.
func Run(ctx context.Context, args []string, in io.Reader, out, errOut io.Writer) int {
	g := &Globals{In: in, Out: out, Err: errOut}
	root := NewRootCmd(g)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(errOut, "Error:", err)
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return 1
}
