package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"

	ucli "github.com/urfave/cli/v2"
)

// ctlMemberCommands are rabbitmq-queues' add_member, delete_member, grow
// and shrink, through the management API's quorum queue replica
// endpoints (RabbitMQ 4.x's; grow and shrink with ?report=true, ours, to
// print what they did to each queue).
func ctlMemberCommands(vhostFlag ucli.Flag) []*ucli.Command {
	errorsOnly := &ucli.BoolFlag{Name: "errors-only", Usage: "only list queues which reported an error"}
	return []*ucli.Command{{
		Name: "add-member", Usage: "add a member (replica) on node NODE to quorum queue QUEUE's group (rabbitmq-queues add_member)",
		UsageText: "amqp-server ctl add-member [--vhost V] QUEUE NODE",
		Flags:     []ucli.Flag{vhostFlag},
		Action: ctlAction(2, 2, "[--vhost V] QUEUE NODE", func(cx *ucli.Context, c *ctlClient, a []string) error {
			return ctlQueueMember(cx, c, a[0], a[1], true)
		}),
	}, {
		Name: "delete-member", Usage: "remove the member (replica) on node NODE from quorum queue QUEUE's group (rabbitmq-queues delete_member)",
		UsageText: "amqp-server ctl delete-member [--vhost V] QUEUE NODE",
		Flags:     []ucli.Flag{vhostFlag},
		Action: ctlAction(2, 2, "[--vhost V] QUEUE NODE", func(cx *ucli.Context, c *ctlClient, a []string) error {
			return ctlQueueMember(cx, c, a[0], a[1], false)
		}),
	}, {
		Name: "grow", Usage: "add a member on NODE to every matching quorum queue's group, all or only those of an even size (rabbitmq-queues grow)",
		UsageText: "amqp-server ctl grow [--vhost-pattern P] [--queue-pattern P] [--errors-only] NODE all|even",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "vhost-pattern", Value: ".*", Usage: "regular expression to match virtual host names"},
			&ucli.StringFlag{Name: "queue-pattern", Value: ".*", Usage: "regular expression to match queue names"},
			errorsOnly,
		},
		Action: ctlAction(2, 2, "NODE all|even", func(cx *ucli.Context, c *ctlClient, a []string) error {
			if a[1] != "all" && a[1] != "even" {
				return ucli.Exit(fmt.Sprintf("Error: strategy '%s' is not recognised (all or even).", a[1]), exitUsage)
			}
			fmt.Fprintf(cx.App.Writer, "Growing %s quorum queues on %s ...\n", a[1], a[0])
			b, err := c.do(http.MethodPost, "/queues/quorum/replicas/on/"+esc(a[0])+"/grow?report=true",
				map[string]string{"vhost_pattern": cx.String("vhost-pattern"), "queue_pattern": cx.String("queue-pattern"), "strategy": a[1]})
			if err != nil {
				return fail(err, "growing quorum queues on "+a[0], fmt.Sprintf("node '%s' is not a running member of the cluster", a[0]))
			}
			return memberReport(cx, b)
		}),
	}, {
		Name: "shrink", Usage: "remove the members on NODE from every quorum queue's group, but where it is the last (rabbitmq-queues shrink)",
		UsageText: "amqp-server ctl shrink [--errors-only] NODE",
		Flags:     []ucli.Flag{errorsOnly},
		Action: ctlAction(1, 1, "NODE", func(cx *ucli.Context, c *ctlClient, a []string) error {
			fmt.Fprintf(cx.App.Writer, "Shrinking quorum queues on %s ...\n", a[0])
			b, err := c.do(http.MethodDelete, "/queues/quorum/replicas/on/"+esc(a[0])+"/shrink?report=true", nil)
			if err != nil {
				return fail(err, "shrinking quorum queues on "+a[0], "")
			}
			return memberReport(cx, b)
		}),
	}}
}

// ctlQueueMember is add-member (add) and delete-member.
func ctlQueueMember(cx *ucli.Context, c *ctlClient, queue, node string, add bool) error {
	vhost := cx.String("vhost")
	path := "/queues/quorum/" + esc(vhost) + "/" + esc(queue) + "/replicas/"
	method, banner, doing := http.MethodPost, "Adding a member for queue %s on node %s ...", "adding a member for queue '%s' on node '%s'"
	if add {
		path += "add"
	} else {
		path += "delete"
		method, banner, doing = http.MethodDelete, "Removing a member of queue %s on node %s ...", "removing the member of queue '%s' on node '%s'"
	}
	fmt.Fprintf(cx.App.Writer, banner+"\n", queue, node)
	if _, err := c.do(method, path, map[string]string{"node": node}); err != nil {
		return fail(err, fmt.Sprintf(doing, queue, node), fmt.Sprintf("queue '%s' in vhost '%s' not found", queue, vhost))
	}
	return done(cx, "Done.")
}

// memberReport prints grow's or shrink's report as rabbitmq-queues
// does: vhost, name, the group's size after, and the result.
func memberReport(cx *ucli.Context, b []byte) error {
	if len(strings.TrimSpace(string(b))) == 0 {
		return done(cx, "Done (the API reports nothing per queue: RabbitMQ's does not).")
	}
	var rows []struct {
		VHost  string `json:"vhost"`
		Name   string `json:"name"`
		Size   int    `json:"size"`
		Result string `json:"result"`
	}
	if err := json.Unmarshal(b, &rows); err != nil {
		return ucli.Exit("Error: the API's answer is not a report (is it this server's?): "+err.Error(), exitSoftware)
	}
	tw := tabwriter.NewWriter(cx.App.Writer, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "vhost\tname\tsize\tresult")
	for _, r := range rows {
		if cx.Bool("errors-only") && !strings.HasPrefix(r.Result, "error") {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", r.VHost, r.Name, r.Size, r.Result)
	}
	return tw.Flush()
}
