package cli

import "github.com/spf13/cobra"

// PLACEHOLDER: replaced by the real commands.
func newCmdApply(g *Globals) *cobra.Command  { return &cobra.Command{Use: "apply", Hidden: true} }
func newCmdDelete(g *Globals) *cobra.Command { return &cobra.Command{Use: "delete", Hidden: true} }
func newCmdGet(g *Globals) *cobra.Command    { return &cobra.Command{Use: "get", Hidden: true} }
func newCmdAPIResources(g *Globals) *cobra.Command {
	return &cobra.Command{Use: "apiresources", Hidden: true}
}
