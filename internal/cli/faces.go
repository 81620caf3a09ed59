package cli

import "github.com/spf13/cobra"

// PLACEHOLDER: replaced by the real commands.
func newCmdFaces(g *Globals) *cobra.Command { return &cobra.Command{Use: "faces", Hidden: true} }
