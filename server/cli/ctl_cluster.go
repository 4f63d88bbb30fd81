package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"text/tabwriter"

	"github.com/amqp-go/amqp-go/server/cluster"
	ucli "github.com/urfave/cli/v2"
)

// ctlClusterCommand is amqp-server ctl cluster: status, and the
// membership changes (rabbitmqctl's join_cluster and
// forget_cluster_node, on our own API: /api/cluster-members).
func ctlClusterCommand() *ucli.Command {
	return &ucli.Command{
		Name: "cluster", Usage: "the cluster this node is in",
		Subcommands: []*ucli.Command{{
			Name: "status", Usage: "the members, which this node reaches, and the metadata group's leader and term",
			UsageText: "amqp-server ctl cluster status [--format table|json]",
			Flags:     []ucli.Flag{&ucli.StringFlag{Name: "format", Value: "table", Usage: "table or json (the API's /api/cluster-status)"}},
			Action:    ctlAction(0, 0, "", ctlClusterStatus),
		}, {
			Name: "join", Usage: "add node NAME, started with cluster.join at inter-node ADDRESS, to this node's cluster (run against a member)",
			UsageText: "amqp-server ctl cluster join NAME ADDRESS",
			Action: ctlAction(2, 2, "NAME ADDRESS", func(cx *ucli.Context, c *ctlClient, a []string) error {
				if _, err := c.do(http.MethodPost, "/cluster-members", map[string]string{"name": a[0], "address": a[1]}); err != nil {
					return fail(err, "adding node '"+a[0]+"'", "the node is in no cluster (cluster.peers is empty)")
				}
				return done(cx, "Adding node \"%s\" at %s to the cluster ...\nDone.", a[0], a[1])
			}),
		}, {
			Name: "leave", Usage: "remove this node (the one the API is of) from its cluster",
			UsageText: "amqp-server ctl cluster leave",
			Action: ctlAction(0, 0, "", func(cx *ucli.Context, c *ctlClient, _ []string) error {
				st, err := c.clusterStatus()
				if err != nil {
					return err
				}
				if _, err := c.do(http.MethodDelete, "/cluster-members/"+esc(st.Node), nil); err != nil {
					return fail(err, "removing node '"+st.Node+"'", fmt.Sprintf("node '%s' is not a member", st.Node))
				}
				return done(cx, "Removing node \"%s\" from the cluster ...\nDone.", st.Node)
			}),
		}, {
			Name: "forget-node", Usage: "remove member NAME, a node that is gone, from the cluster (run against another member)",
			UsageText: "amqp-server ctl cluster forget-node NAME",
			Action: ctlAction(1, 1, "NAME", func(cx *ucli.Context, c *ctlClient, a []string) error {
				if _, err := c.do(http.MethodDelete, "/cluster-members/"+esc(a[0]), nil); err != nil {
					return fail(err, "removing node '"+a[0]+"'", fmt.Sprintf("node '%s' is not a member (or this node is in no cluster)", a[0]))
				}
				return done(cx, "Removing node \"%s\" from the cluster ...\nDone.", a[0])
			}),
		}},
	}
}

// clusterStatus reads GET /api/cluster-status.
func (c *ctlClient) clusterStatus() (cluster.Status, error) {
	var st cluster.Status
	b, err := c.do(http.MethodGet, "/cluster-status", nil)
	if err != nil {
		return st, fail(err, "reading the cluster status", "the node is in no cluster (cluster.peers is empty), or its API is not this server's")
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, ucli.Exit("Error: the cluster status is not JSON: "+err.Error(), exitSoftware)
	}
	return st, nil
}

// ctlClusterStatus prints GET /api/cluster-status.
func ctlClusterStatus(cx *ucli.Context, c *ctlClient, _ []string) error {
	st, err := c.clusterStatus()
	if err != nil {
		return err
	}
	w := cx.App.Writer
	if cx.String("format") == "json" {
		return writeIndented(w, st)
	}
	fmt.Fprintf(w, "Cluster status of node %s ...\n", st.Node)
	fmt.Fprintf(w, "Cluster name: %s\n\n", st.Cluster)
	if !st.Member {
		fmt.Fprintf(w, "This node is not a member: it waits to be added (ctl cluster join, run against a member), or it left.\n\n")
	}
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

// ctlRebalanceCommand is amqp-server ctl rebalance (rabbitmq-queues
// rebalance quorum): POST /api/rebalance/queues.
func ctlRebalanceCommand() *ucli.Command {
	return &ucli.Command{
		Name: "rebalance", Usage: "move quorum queues' leaders so that each member leads about as many",
		UsageText: "amqp-server ctl rebalance",
		Action: ctlAction(0, 0, "", func(cx *ucli.Context, c *ctlClient, _ []string) error {
			if _, err := c.do(http.MethodPost, "/rebalance/queues", nil); err != nil {
				return fail(err, "rebalancing quorum queues", "")
			}
			return done(cx, "Re-balancing leaders of quorum queues ...\nDone.")
		}),
	}
}
