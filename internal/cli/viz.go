package cli

import "github.com/spf13/cobra"

// PLACEHOLDER: replaced by the real commands.
func newCmdViz(g *Globals) *cobra.Command         { return &cobra.Command{Use: "viz", Hidden: true} }
func newCmdDiagnostics(g *Globals) *cobra.Command { return &cobra.Command{Use: "diagnostics", Hidden: true} }
