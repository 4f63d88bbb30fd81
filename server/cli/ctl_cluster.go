package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"text/tabwriter"

	"github.com/amqp-go/amqp-go/server/cluster"
	ucli "github.com/urfave/cli/v2"
)

// ctlClusterCommand is amqp-server ctl cluster: status only, for now
// (join, leave and forget-node are to come).
func ctlClusterCommand() *ucli.Command {
	return &ucli.Command{
		Name: "cluster", Usage: "the cluster this node is in",
		Subcommands: []*ucli.Command{{
			Name: "status", Usage: "the members, which this node reaches, and the metadata group's leader and term",
			UsageText: "amqp-server ctl cluster status [--format table|json]",
			Flags:     []ucli.Flag{&ucli.StringFlag{Name: "format", Value: "table", Usage: "table or json (the API's /api/cluster-status)"}},
			Action:    ctlAction(0, 0, "", ctlClusterStatus),
		}},
	}
}

// ctlClusterStatus prints GET /api/cluster-status.
func ctlClusterStatus(cx *ucli.Context, c *ctlClient, _ []string) error {
	b, err := c.do(http.MethodGet, "/cluster-status", nil)
	if err != nil {
		return fail(err, "reading the cluster status", "the node is in no cluster (cluster.peers is empty), or its API is not this server's")
	}
	var st cluster.Status
	if err := json.Unmarshal(b, &st); err != nil {
		return ucli.Exit("Error: the cluster status is not JSON: "+err.Error(), exitSoftware)
	}
	w := cx.App.Writer
	if cx.String("format") == "json" {
		return writeIndented(w, st)
	}
	fmt.Fprintf(w, "Cluster status of node %s ...\n", st.Node)
	fmt.Fprintf(w, "Cluster name: %s\n\n", st.Cluster)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "member\taddress\treachable\t")
	for _, m := range st.Members {
		reach := "no"
		switch {
		case m.Self:
			reach = "yes (this node)"
		case m.Reachable:
			reach = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t\n", m.Name, m.Address, reach)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	md := st.Metadata
	leader := md.Leader
	if leader == "" {
		leader = "(none)"
	}
	_, err = fmt.Fprintf(w, "\nMetadata group: leader %s, term %d (this node: %s, commit %d, applied %d)\n",
		leader, md.Term, md.Role, md.Commit, md.Applied)
	return err
}
