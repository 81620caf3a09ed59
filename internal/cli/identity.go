package cli

import "github.com/spf13/cobra"

// PLACEHOLDER: replaced by the real commands.
func newCmdIdentity(g *Globals) *cobra.Command { return &cobra.Command{Use: "identity", Hidden: true} }
func newCmdCheck(g *Globals) *cobra.Command    { return &cobra.Command{Use: "check", Hidden: true} }
