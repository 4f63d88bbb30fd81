package cli

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/amqp-go/amqp-go/server/tlsconf"
	ucli "github.com/urfave/cli/v2"
)

// amqp-server ctl: the everyday rabbitmqctl tasks, done through the
// management HTTP API (ours, or RabbitMQ's: nothing here is specific to
// this server). Exit codes follow rabbitmqctl's (sysexits): 64 a usage
// error, 69 the API cannot be reached, 77 refused (401), 70 any other
// error the API answers.
const (
	exitUsage       = 64
	exitUnavailable = 69
	exitSoftware    = 70
	exitNoPerm      = 77
)

// ctlClient speaks to the management API.
type ctlClient struct {
	base       string // http://host:port, no trailing slash
	user, pass string
	http       *http.Client
}

func newCtlClient(cx *ucli.Context) (*ctlClient, error) {
	raw := strings.TrimSuffix(cx.String("url"), "/")
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, ucli.Exit(fmt.Sprintf("Error: --url %q is not an http:// or https:// URL", raw), exitUsage)
	}
	raw = strings.TrimSuffix(raw, "/api")
	tr := http.DefaultTransport.(*http.Transport).Clone()
	cfg, err := ctlTLS(cx)
	if err != nil {
		return nil, err
	}
	tr.TLSClientConfig = cfg
	return &ctlClient{base: raw, user: cx.String("user"), pass: cx.String("password"),
		http: &http.Client{Timeout: cx.Duration("timeout"), Transport: tr}}, nil
}

// ctlTLS is the HTTPS client's configuration from --cacert, --cert, --key
// and --insecure, rabbitmqadmin's --ssl-ca-cert-file, --ssl-cert-file,
// --ssl-key-file and --ssl-insecure (nil: Go's defaults, the system's
// roots): an API behind a self-signed or private CA's certificate, or one
// that asks for a client certificate (management.tlsfailifnopeercert).
func ctlTLS(cx *ucli.Context) (*tls.Config, error) {
	ca, cert, key, insecure := cx.String("cacert"), cx.String("cert"), cx.String("key"), cx.Bool("insecure")
	if ca == "" && cert == "" && key == "" && !insecure {
		return nil, nil
	}
	cfg := &tls.Config{InsecureSkipVerify: insecure} // only when asked, as with curl -k
	if ca != "" {
		pool, err := tlsconf.LoadCAs(ca)
		if err != nil {
			return nil, ucli.Exit(fmt.Sprintf("Error: --cacert %s: %v", ca, err), exitUsage)
		}
		cfg.RootCAs = pool
	}
	if (cert == "") != (key == "") {
		return nil, ucli.Exit("Error: --cert and --key go together", exitUsage)
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, ucli.Exit(fmt.Sprintf("Error: --cert %s --key %s: %v", cert, key, err), exitUsage)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// apiError is an error reply of the API.
type ctlAPIError struct {
	status int
	kind   string
	reason string
}

func (e *ctlAPIError) Error() string {
	switch {
	case e.reason != "" && e.kind != "" && e.reason != e.kind:
		return fmt.Sprintf("%s: %s", e.kind, e.reason)
	case e.reason != "":
		return e.reason
	case e.kind != "":
		return e.kind
	}
	return http.StatusText(e.status)
}

// do sends method path (under /api, segments already escaped) with body
// (nil: none) and returns the reply's body for a 2xx answer.
func (c *ctlClient) do(method, path string, body any, header ...string) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		if b, ok := body.([]byte); ok {
			rd = bytes.NewReader(b)
		} else {
			b, err := json.Marshal(body)
			if err != nil {
				return nil, err
			}
			rd = bytes.NewReader(b)
		}
	}
	req, err := http.NewRequest(method, c.base+"/api"+path, rd)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(c.user, c.pass)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, ucli.Exit(fmt.Sprintf("Error: cannot reach the management API at %s: %v", c.base, err), exitUnavailable)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, ucli.Exit(fmt.Sprintf("Error: reading the answer of %s %s: %v", method, c.base+"/api"+path, err), exitUnavailable)
	}
	if resp.StatusCode/100 == 2 {
		return b, nil
	}
	e := &ctlAPIError{status: resp.StatusCode}
	var m map[string]any
	if json.Unmarshal(b, &m) == nil {
		e.kind, _ = m["error"].(string)
		switch r := m["reason"].(type) {
		case string:
			e.reason = r
		case nil:
		default:
			rb, _ := json.Marshal(r)
			e.reason = string(rb)
		}
	}
	return nil, e
}

// fail turns an error of do into the command's exit error, with what
// was being done; notFound, when set, is the message for a 404.
func fail(err error, doing, notFound string) error {
	var ae *ctlAPIError
	if !errors.As(err, &ae) {
		var ec ucli.ExitCoder
		if errors.As(err, &ec) {
			return err
		}
		return ucli.Exit(fmt.Sprintf("Error: %s: %v", doing, err), exitSoftware)
	}
	switch {
	case ae.status == http.StatusNotFound && notFound != "":
		return ucli.Exit("Error: "+notFound, exitSoftware)
	case ae.status == http.StatusUnauthorized:
		return ucli.Exit(fmt.Sprintf("Error: %s: refused (401 %s)", doing, ae), exitNoPerm)
	}
	return ucli.Exit(fmt.Sprintf("Error: %s: %d %s", doing, ae.status, ae), exitSoftware)
}

func esc(s string) string { return url.PathEscape(s) }

// exists reports whether GET path answers 200 (false on 404).
func (c *ctlClient) exists(path, doing string) (bool, error) {
	_, err := c.do(http.MethodGet, path, nil)
	var ae *ctlAPIError
	if errors.As(err, &ae) && ae.status == http.StatusNotFound {
		return false, nil
	}
	if err != nil {
		return false, fail(err, doing, "")
	}
	return true, nil
}

// column is one column of a list: rabbitmqctl's name and how to read it
// from the API's item.
type column struct {
	name string
	get  func(map[string]any) any
}

// field reads a dotted field of an item.
func field(path string) func(map[string]any) any {
	return func(m map[string]any) any {
		var v any = m
		for _, k := range strings.Split(path, ".") {
			mm, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = mm[k]
		}
		return v
	}
}

func constant(v any) func(map[string]any) any { return func(map[string]any) any { return v } }

// listKind is what `ctl list KIND` lists.
type listKind struct {
	// path is the API's list; %s is the escaped vhost where perVHost.
	path     string
	perVHost bool
	// columns are rabbitmqctl's, the default ones first (ndefault).
	columns  []column
	ndefault int
}

func col(name, path string) column { return column{name, field(path)} }

// listKinds follow rabbitmqctl 3.10's list_* commands: their column
// names and default columns. rabbitmqctl's pids do not exist over HTTP:
// channel_pid and pid are the channel's name, as the API names it.
var listKinds = map[string]listKind{
	"queues": {path: "/queues/%s", perVHost: true, ndefault: 2, columns: []column{
		col("name", "name"), col("messages", "messages"),
		col("messages_ready", "messages_ready"), col("messages_unacknowledged", "messages_unacknowledged"),
		col("durable", "durable"), col("auto_delete", "auto_delete"), col("exclusive", "exclusive"),
		col("arguments", "arguments"), col("policy", "policy"), col("consumers", "consumers"),
		col("type", "type"), col("state", "state"), col("vhost", "vhost"), col("message_bytes", "message_bytes"),
		col("memory", "memory"), col("exclusive_consumer_tag", "exclusive_consumer_tag"),
		col("consumer_utilisation", "consumer_utilisation"), col("head_message_timestamp", "head_message_timestamp"),
	}},
	"exchanges": {path: "/exchanges/%s", perVHost: true, ndefault: 2, columns: []column{
		col("name", "name"), col("type", "type"), col("durable", "durable"), col("auto_delete", "auto_delete"),
		col("internal", "internal"), col("arguments", "arguments"), col("policy", "policy"), col("vhost", "vhost"),
	}},
	"bindings": {path: "/bindings/%s", perVHost: true, ndefault: 6, columns: []column{
		col("source_name", "source"), {"source_kind", constant("exchange")},
		col("destination_name", "destination"), col("destination_kind", "destination_type"),
		col("routing_key", "routing_key"), col("arguments", "arguments"), col("vhost", "vhost"),
		col("properties_key", "properties_key"),
	}},
	"connections": {path: "/connections", ndefault: 4, columns: []column{
		col("user", "user"), col("peer_host", "peer_host"), col("peer_port", "peer_port"), col("state", "state"),
		col("name", "name"), col("vhost", "vhost"), col("host", "host"), col("port", "port"),
		col("protocol", "protocol"), col("auth_mechanism", "auth_mechanism"), col("ssl", "ssl"),
		col("channels", "channels"), col("channel_max", "channel_max"), col("frame_max", "frame_max"),
		col("timeout", "timeout"), col("client_properties", "client_properties"), col("connected_at", "connected_at"),
		col("type", "type"), col("node", "node"),
	}},
	"channels": {path: "/channels", ndefault: 4, columns: []column{
		col("pid", "name"), col("user", "user"), col("consumer_count", "consumer_count"),
		col("messages_unacknowledged", "messages_unacknowledged"), col("name", "name"),
		col("connection", "connection_details.name"), col("number", "number"), col("vhost", "vhost"),
		col("transactional", "transactional"), col("confirm", "confirm"),
		col("messages_unconfirmed", "messages_unconfirmed"), col("messages_uncommitted", "messages_uncommitted"),
		col("acks_uncommitted", "acks_uncommitted"), col("prefetch_count", "prefetch_count"),
		col("global_prefetch_count", "global_prefetch_count"), col("state", "state"),
	}},
	"consumers": {path: "/consumers/%s", perVHost: true, ndefault: 7, columns: []column{
		col("queue_name", "queue.name"), col("channel_pid", "channel_details.name"), col("consumer_tag", "consumer_tag"),
		col("ack_required", "ack_required"), col("prefetch_count", "prefetch_count"), col("active", "active"),
		col("arguments", "arguments"), col("activity_status", "activity_status"), col("exclusive", "exclusive"),
	}},
	"users": {path: "/users", ndefault: 2, columns: []column{
		col("user", "name"), col("tags", "tags"),
	}},
	"vhosts": {path: "/vhosts", ndefault: 1, columns: []column{
		col("name", "name"), col("description", "description"), col("tags", "tags"),
		col("default_queue_type", "default_queue_type"), col("tracing", "tracing"),
	}},
	"permissions": {path: "/vhosts/%s/permissions", perVHost: true, ndefault: 4, columns: []column{
		col("user", "user"), col("configure", "configure"), col("write", "write"), col("read", "read"),
		col("vhost", "vhost"),
	}},
	"policies": {path: "/policies/%s", perVHost: true, ndefault: 6, columns: []column{
		col("vhost", "vhost"), col("name", "name"), col("pattern", "pattern"), col("apply-to", "apply-to"),
		col("definition", "definition"), col("priority", "priority"),
	}},
}

// listNames is the kinds in the order the help shows them.
var listNames = []string{"queues", "exchanges", "bindings", "connections", "channels", "consumers", "users", "vhosts", "permissions", "policies"}

// pickColumns resolves --columns: rabbitmqctl's names or, for anything
// else, the API item's (dotted) field of that name.
func pickColumns(k listKind, spec string) []column {
	if spec == "" {
		return k.columns[:k.ndefault]
	}
	var out []column
	for _, name := range strings.Split(spec, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		c := col(name, name)
		for _, kc := range k.columns {
			if kc.name == name {
				c = kc
			}
		}
		out = append(out, c)
	}
	return out
}

// cell formats a value as rabbitmqctl's table does: strings bare, lists
// of strings comma-separated (tags), everything else as JSON.
func cell(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case []any:
		ss := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				b, _ := json.Marshal(v)
				return string(b)
			}
			ss = append(ss, s)
		}
		return strings.Join(ss, ",")
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// listCommands are `ctl list KIND`, one command per kind so that the
// flags may follow the kind.
func listCommands(vhostFlag ucli.Flag) []*ucli.Command {
	var out []*ucli.Command
	for _, name := range listNames {
		k := listKinds[name]
		defaults := make([]string, k.ndefault)
		all := make([]string, len(k.columns))
		for i, c := range k.columns {
			all[i] = c.name
			if i < k.ndefault {
				defaults[i] = c.name
			}
		}
		flags := []ucli.Flag{
			&ucli.StringFlag{Name: "format", Value: "table", Usage: "table (aligned, a header line) or json"},
			&ucli.StringFlag{Name: "columns", Usage: "comma-separated columns (default " + strings.Join(defaults, ",") +
				"): any of " + strings.Join(all, ",") + ", or a field of the API's JSON (dotted for a nested one)"},
		}
		usage := "amqp-server ctl list " + name + " [--format table|json] [--columns c1,c2]"
		if k.perVHost {
			flags = append(flags, vhostFlag)
			usage = "amqp-server ctl list " + name + " [--vhost V] [--format table|json] [--columns c1,c2]"
		}
		out = append(out, &ucli.Command{Name: name, Usage: "list " + name, UsageText: usage, Flags: flags, Action: ctlList})
	}
	return out
}

func ctlList(cx *ucli.Context) error {
	if cx.NArg() != 0 {
		return ucli.Exit(fmt.Sprintf("Error: unexpected argument %q (flags go before arguments)", cx.Args().First()), exitUsage)
	}
	name := cx.Command.Name
	k := listKinds[name]
	format := cx.String("format")
	if format != "table" && format != "json" {
		return ucli.Exit(fmt.Sprintf("Error: --format %q: table or json", format), exitUsage)
	}
	c, err := newCtlClient(cx)
	if err != nil {
		return err
	}
	vhost := cx.String("vhost")
	path := k.path
	if k.perVHost {
		path = fmt.Sprintf(path, esc(vhost))
	}
	b, err := c.do(http.MethodGet, path, nil)
	if err != nil {
		return fail(err, "listing "+name, fmt.Sprintf("no vhost '%s' (or the API has no %s)", vhost, path))
	}
	var items []map[string]any
	if err := json.Unmarshal(b, &items); err != nil {
		return ucli.Exit(fmt.Sprintf("Error: listing %s: the API's answer is not a list: %v", name, err), exitSoftware)
	}
	cols := pickColumns(k, cx.String("columns"))
	w := cx.App.Writer
	if format == "json" {
		rows := make([]map[string]any, 0, len(items))
		for _, it := range items {
			row := make(map[string]any, len(cols))
			for _, c := range cols {
				row[c.name] = c.get(it)
			}
			rows = append(rows, row)
		}
		out, _ := json.MarshalIndent(rows, "", "  ")
		_, err := fmt.Fprintf(w, "%s\n", out)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
	}
	fmt.Fprintln(tw, strings.Join(names, "\t"))
	for _, it := range items {
		cells := make([]string, len(cols))
		for i, c := range cols {
			cells[i] = cell(c.get(it))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// args checks the positional arguments' count.
func args(cx *ucli.Context, min, max int, usage string) ([]string, error) {
	// Flags are parsed only before the arguments: one after them would
	// be taken as an argument.
	for _, a := range cx.Args().Slice() {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name == "" {
			continue
		}
		for _, f := range cx.Command.Flags {
			for _, n := range f.Names() {
				if n == name {
					return nil, ucli.Exit(fmt.Sprintf("Error: %s must come before the arguments: amqp-server ctl %s %s", a, cx.Command.Name, usage), exitUsage)
				}
			}
		}
	}
	n := cx.NArg()
	if n < min || n > max {
		return nil, ucli.Exit(fmt.Sprintf("Error: usage: amqp-server ctl %s %s", cx.Command.Name, usage), exitUsage)
	}
	return cx.Args().Slice(), nil
}

// ctlAction wraps an action with the client and its arguments.
func ctlAction(min, max int, usage string, f func(cx *ucli.Context, c *ctlClient, a []string) error) ucli.ActionFunc {
	return func(cx *ucli.Context) error {
		a, err := args(cx, min, max, usage)
		if err != nil {
			return err
		}
		c, err := newCtlClient(cx)
		if err != nil {
			return err
		}
		return f(cx, c, a)
	}
}

func done(cx *ucli.Context, format string, a ...any) error {
	_, err := fmt.Fprintf(cx.App.Writer, format+"\n", a...)
	return err
}

// getUser reads a user, with a clear error when there is none.
func (c *ctlClient) getUser(name string) (map[string]any, error) {
	b, err := c.do(http.MethodGet, "/users/"+esc(name), nil)
	if err != nil {
		return nil, fail(err, "reading user '"+name+"'", fmt.Sprintf("user '%s' does not exist", name))
	}
	var u map[string]any
	if err := json.Unmarshal(b, &u); err != nil {
		return nil, ucli.Exit(fmt.Sprintf("Error: user '%s': %v", name, err), exitSoftware)
	}
	return u, nil
}

func splitTags(ss []string) []string {
	var out []string
	for _, s := range ss {
		for _, t := range strings.Split(s, ",") {
			if t = strings.TrimSpace(t); t != "" {
				out = append(out, t)
			}
		}
	}
	return out
}

// writeIndented writes v as indented JSON and a newline (--format json).
func writeIndented(w io.Writer, v any) error {
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", out)
	return err
}

func ctlStatus(cx *ucli.Context, c *ctlClient, _ []string) error {
	b, err := c.do(http.MethodGet, "/overview", nil)
	if err != nil {
		return fail(err, "reading the overview", "")
	}
	var ov map[string]any
	if err := json.Unmarshal(b, &ov); err != nil {
		return ucli.Exit("Error: the overview is not JSON: "+err.Error(), exitSoftware)
	}
	w := cx.App.Writer
	if cx.String("format") == "json" {
		return writeIndented(w, ov)
	}
	fmt.Fprintf(w, "Status of node %s ...\n", cell(ov["node"]))
	fmt.Fprintf(w, "Product: %s %s (RabbitMQ API %s)\n", cell(ov["product_name"]), cell(ov["product_version"]), cell(ov["rabbitmq_version"]))
	fmt.Fprintf(w, "Cluster name: %s\n", cell(ov["cluster_name"]))
	var nodes []map[string]any
	if nb, err := c.do(http.MethodGet, "/nodes", nil); err == nil && json.Unmarshal(nb, &nodes) == nil && len(nodes) > 0 {
		n := nodes[0]
		if up, ok := n["uptime"].(float64); ok {
			fmt.Fprintf(w, "Uptime: %s\n", (time.Duration(up) * time.Millisecond).Round(time.Second))
		}
		// A limit of 0 (or none) is not measured: left out.
		if lim, _ := n["mem_limit"].(float64); lim > 0 {
			fmt.Fprintf(w, "Memory used: %s bytes (high watermark %s)\n", cell(n["mem_used"]), cell(n["mem_limit"]))
		}
		if free, _ := n["disk_free"].(float64); free > 0 {
			fmt.Fprintf(w, "Disk free: %s bytes (low watermark %s)\n", cell(n["disk_free"]), cell(n["disk_free_limit"]))
		}
		var alarms []string
		if n["mem_alarm"] == true {
			alarms = append(alarms, "memory")
		}
		if n["disk_free_alarm"] == true {
			alarms = append(alarms, "disk")
		}
		if len(alarms) == 0 {
			alarms = []string{"(none)"}
		}
		fmt.Fprintf(w, "Alarms: %s\n", strings.Join(alarms, ", "))
	}
	if ls, ok := ov["listeners"].([]any); ok {
		fmt.Fprintln(w, "Listeners:")
		for _, l := range ls {
			m, _ := l.(map[string]any)
			fmt.Fprintf(w, "  %s on %s:%s\n", cell(m["protocol"]), cell(m["ip_address"]), cell(m["port"]))
		}
	}
	if ot, ok := ov["object_totals"].(map[string]any); ok {
		keys := make([]string, 0, len(ot))
		for k := range ot {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintln(w, "Totals:")
		for _, k := range keys {
			fmt.Fprintf(w, "  %s: %s\n", k, cell(ot[k]))
		}
	}
	if qt, ok := ov["queue_totals"].(map[string]any); ok {
		fmt.Fprintf(w, "Messages: %s (ready %s, unacknowledged %s)\n",
			orZero(qt["messages"]), orZero(qt["messages_ready"]), orZero(qt["messages_unacknowledged"]))
	}
	return nil
}

func orZero(v any) string {
	if v == nil {
		return "0"
	}
	return cell(v)
}

// ctlCommand is `amqp-server ctl`.
func ctlCommand() *ucli.Command {
	vhostFlag := &ucli.StringFlag{Name: "vhost", Aliases: []string{"p"}, Value: "/", Usage: "virtual host"}
	return &ucli.Command{
		Name:  "ctl",
		Usage: "manage a running broker through its management HTTP API (ours or RabbitMQ's), as rabbitmqctl does",
		Description: "Exit codes: 0 done, 64 usage error, 69 the API cannot be reached, 77 refused (401), " +
			"70 any other error the API answers.",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "url", Value: "http://127.0.0.1:15672", EnvVars: []string{"AMQP_CTL_URL"}, Usage: "the management API's base URL"},
			&ucli.StringFlag{Name: "user", Aliases: []string{"u"}, Value: "guest", EnvVars: []string{"AMQP_CTL_USER"}, Usage: "user name for HTTP basic auth"},
			&ucli.StringFlag{Name: "password", Value: "guest", EnvVars: []string{"AMQP_CTL_PASSWORD"}, Usage: "password for HTTP basic auth"},
			&ucli.DurationFlag{Name: "timeout", Value: 60 * time.Second, EnvVars: []string{"AMQP_CTL_TIMEOUT"}, Usage: "give up on a call after this long"},
			&ucli.StringFlag{Name: "cacert", Aliases: []string{"ssl-ca-cert-file"}, EnvVars: []string{"AMQP_CTL_CACERT"},
				Usage: "PEM CA bundle that an https:// API's certificate is verified against (default: the system's roots)"},
			&ucli.StringFlag{Name: "cert", Aliases: []string{"ssl-cert-file"}, EnvVars: []string{"AMQP_CTL_CERT"},
				Usage: "PEM client certificate for an API that asks for one (with --key)"},
			&ucli.StringFlag{Name: "key", Aliases: []string{"ssl-key-file"}, EnvVars: []string{"AMQP_CTL_KEY"}, Usage: "PEM private key of --cert"},
			&ucli.BoolFlag{Name: "insecure", Aliases: []string{"k", "ssl-insecure"},
				Usage: "do not verify the API's certificate (as rabbitmqadmin -k and curl -k): anyone on the path can read the password"},
		},
		Subcommands: append([]*ucli.Command{
			{
				Name: "list", Usage: "list " + strings.Join(listNames, "|") + " with rabbitmqctl's columns",
				UsageText:   "amqp-server ctl list KIND [--vhost V] [--format table|json] [--columns c1,c2]",
				Subcommands: listCommands(vhostFlag),
				Action: func(cx *ucli.Context) error {
					if cx.NArg() == 0 {
						return ucli.Exit("Error: list wants one of: "+strings.Join(listNames, ", "), exitUsage)
					}
					return ucli.Exit(fmt.Sprintf("Error: cannot list %q; one of: %s", cx.Args().First(), strings.Join(listNames, ", ")), exitUsage)
				},
			},
			{
				Name: "add-user", Usage: "add a user", UsageText: "amqp-server ctl add-user NAME PASSWORD [--tags t1,t2]",
				Flags: []ucli.Flag{&ucli.StringFlag{Name: "tags", Usage: "comma-separated tags"}},
				Action: ctlAction(2, 2, "NAME PASSWORD", func(cx *ucli.Context, c *ctlClient, a []string) error {
					ok, err := c.exists("/users/"+esc(a[0]), "checking user '"+a[0]+"'")
					if err != nil {
						return err
					}
					if ok {
						return ucli.Exit(fmt.Sprintf("Error: user '%s' already exists", a[0]), exitSoftware)
					}
					tags := splitTags([]string{cx.String("tags")})
					if _, err := c.do(http.MethodPut, "/users/"+esc(a[0]), map[string]any{"password": a[1], "tags": strings.Join(tags, ",")}); err != nil {
						return fail(err, "adding user '"+a[0]+"'", "")
					}
					return done(cx, "Adding user \"%s\" ...\nDone.", a[0])
				}),
			},
			{
				Name: "delete-user", Usage: "delete a user", UsageText: "amqp-server ctl delete-user NAME",
				Action: ctlAction(1, 1, "NAME", func(cx *ucli.Context, c *ctlClient, a []string) error {
					if _, err := c.do(http.MethodDelete, "/users/"+esc(a[0]), nil); err != nil {
						return fail(err, "deleting user '"+a[0]+"'", fmt.Sprintf("user '%s' does not exist", a[0]))
					}
					return done(cx, "Deleting user \"%s\" ...\nDone.", a[0])
				}),
			},
			{
				Name: "change-password", Usage: "change a user's password", UsageText: "amqp-server ctl change-password NAME PASSWORD",
				Action: ctlAction(2, 2, "NAME PASSWORD", func(cx *ucli.Context, c *ctlClient, a []string) error {
					u, err := c.getUser(a[0])
					if err != nil {
						return err
					}
					if _, err := c.do(http.MethodPut, "/users/"+esc(a[0]), map[string]any{"password": a[1], "tags": u["tags"]}); err != nil {
						return fail(err, "changing the password of '"+a[0]+"'", "")
					}
					return done(cx, "Changing password for user \"%s\" ...\nDone.", a[0])
				}),
			},
			{
				Name: "set-user-tags", Usage: "set a user's tags (none: clear them)", UsageText: "amqp-server ctl set-user-tags NAME [TAG ...]",
				Action: ctlAction(1, 1<<16, "NAME [TAG ...]", func(cx *ucli.Context, c *ctlClient, a []string) error {
					u, err := c.getUser(a[0])
					if err != nil {
						return err
					}
					tags := splitTags(a[1:])
					body := map[string]any{"tags": strings.Join(tags, ",")}
					// The hash is sent back: a PUT without one would leave
					// the user without a password.
					if h, ok := u["password_hash"]; ok {
						body["password_hash"], body["hashing_algorithm"] = h, u["hashing_algorithm"]
					}
					if _, err := c.do(http.MethodPut, "/users/"+esc(a[0]), body); err != nil {
						return fail(err, "setting the tags of '"+a[0]+"'", "")
					}
					return done(cx, "Setting tags for user \"%s\" to [%s] ...\nDone.", a[0], strings.Join(tags, ", "))
				}),
			},
			{
				Name: "add-vhost", Usage: "add a virtual host", UsageText: "amqp-server ctl add-vhost NAME [--description D]",
				Flags: []ucli.Flag{&ucli.StringFlag{Name: "description"}},
				Action: ctlAction(1, 1, "NAME", func(cx *ucli.Context, c *ctlClient, a []string) error {
					ok, err := c.exists("/vhosts/"+esc(a[0]), "checking vhost '"+a[0]+"'")
					if err != nil {
						return err
					}
					if ok {
						return ucli.Exit(fmt.Sprintf("Error: vhost '%s' already exists", a[0]), exitSoftware)
					}
					body := map[string]any{}
					if d := cx.String("description"); d != "" {
						body["description"] = d
					}
					if _, err := c.do(http.MethodPut, "/vhosts/"+esc(a[0]), body); err != nil {
						return fail(err, "adding vhost '"+a[0]+"'", "")
					}
					return done(cx, "Adding vhost \"%s\" ...\nDone.", a[0])
				}),
			},
			{
				Name: "delete-vhost", Usage: "delete a virtual host and everything in it", UsageText: "amqp-server ctl delete-vhost NAME",
				Action: ctlAction(1, 1, "NAME", func(cx *ucli.Context, c *ctlClient, a []string) error {
					if _, err := c.do(http.MethodDelete, "/vhosts/"+esc(a[0]), nil); err != nil {
						return fail(err, "deleting vhost '"+a[0]+"'", fmt.Sprintf("vhost '%s' does not exist", a[0]))
					}
					return done(cx, "Deleting vhost \"%s\" ...\nDone.", a[0])
				}),
			},
			{
				Name: "set-permissions", Usage: "set a user's permissions in a vhost",
				UsageText: "amqp-server ctl set-permissions [--vhost V] USER CONFIGURE WRITE READ",
				Flags:     []ucli.Flag{vhostFlag},
				Action: ctlAction(4, 4, "[--vhost V] USER CONFIGURE WRITE READ", func(cx *ucli.Context, c *ctlClient, a []string) error {
					v := cx.String("vhost")
					if _, err := c.do(http.MethodPut, "/permissions/"+esc(v)+"/"+esc(a[0]),
						map[string]any{"configure": a[1], "write": a[2], "read": a[3]}); err != nil {
						return fail(err, fmt.Sprintf("setting the permissions of '%s' in vhost '%s'", a[0], v), "")
					}
					return done(cx, "Setting permissions for user \"%s\" in vhost \"%s\" ...\nDone.", a[0], v)
				}),
			},
			{
				Name: "clear-permissions", Usage: "remove a user's permissions in a vhost",
				UsageText: "amqp-server ctl clear-permissions [--vhost V] USER",
				Flags:     []ucli.Flag{vhostFlag},
				Action: ctlAction(1, 1, "[--vhost V] USER", func(cx *ucli.Context, c *ctlClient, a []string) error {
					v := cx.String("vhost")
					if _, err := c.do(http.MethodDelete, "/permissions/"+esc(v)+"/"+esc(a[0]), nil); err != nil {
						return fail(err, fmt.Sprintf("clearing the permissions of '%s' in vhost '%s'", a[0], v),
							fmt.Sprintf("user '%s' has no permissions in vhost '%s'", a[0], v))
					}
					return done(cx, "Clearing permissions for user \"%s\" in vhost \"%s\" ...\nDone.", a[0], v)
				}),
			},
			{
				Name: "set-policy", Usage: "set a policy",
				UsageText: "amqp-server ctl set-policy [--vhost V] [--priority N] [--apply-to queues|exchanges|all] NAME PATTERN DEFINITION",
				Flags: []ucli.Flag{vhostFlag,
					&ucli.IntFlag{Name: "priority", Value: 0, Usage: "the highest priority matching policy applies"},
					&ucli.StringFlag{Name: "apply-to", Value: "all", Usage: "queues, exchanges or all"},
				},
				Action: ctlAction(3, 3, "[--vhost V] NAME PATTERN DEFINITION", func(cx *ucli.Context, c *ctlClient, a []string) error {
					var def map[string]any
					if err := json.Unmarshal([]byte(a[2]), &def); err != nil {
						return ucli.Exit(fmt.Sprintf("Error: the policy definition is not a JSON object: %v", err), exitUsage)
					}
					v := cx.String("vhost")
					if _, err := c.do(http.MethodPut, "/policies/"+esc(v)+"/"+esc(a[0]), map[string]any{
						"pattern": a[1], "definition": def, "priority": cx.Int("priority"), "apply-to": cx.String("apply-to"),
					}); err != nil {
						return fail(err, fmt.Sprintf("setting policy '%s' in vhost '%s'", a[0], v),
							fmt.Sprintf("vhost '%s' does not exist (or the API has no policies)", v))
					}
					return done(cx, "Setting policy \"%s\" for pattern \"%s\" to \"%s\" with priority \"%d\" for vhost \"%s\" ...\nDone.",
						a[0], a[1], a[2], cx.Int("priority"), v)
				}),
			},
			{
				Name: "clear-policy", Usage: "remove a policy", UsageText: "amqp-server ctl clear-policy [--vhost V] NAME",
				Flags: []ucli.Flag{vhostFlag},
				Action: ctlAction(1, 1, "[--vhost V] NAME", func(cx *ucli.Context, c *ctlClient, a []string) error {
					v := cx.String("vhost")
					if _, err := c.do(http.MethodDelete, "/policies/"+esc(v)+"/"+esc(a[0]), nil); err != nil {
						return fail(err, fmt.Sprintf("clearing policy '%s' in vhost '%s'", a[0], v),
							fmt.Sprintf("policy '%s' does not exist in vhost '%s'", a[0], v))
					}
					return done(cx, "Clearing policy \"%s\" on vhost \"%s\" ...\nDone.", a[0], v)
				}),
			},
			{
				Name: "close-connection", Usage: "close a client connection (320 CONNECTION_FORCED with REASON)",
				UsageText: "amqp-server ctl close-connection NAME [REASON]  (NAME as list connections --columns name shows it)",
				Action: ctlAction(1, 2, "NAME [REASON]", func(cx *ucli.Context, c *ctlClient, a []string) error {
					var hdr []string
					if len(a) == 2 {
						hdr = []string{"X-Reason", a[1]}
					}
					if _, err := c.do(http.MethodDelete, "/connections/"+esc(a[0]), nil, hdr...); err != nil {
						return fail(err, "closing connection '"+a[0]+"'", fmt.Sprintf("no connection '%s'", a[0]))
					}
					return done(cx, "Closing connection \"%s\" ...\nDone.", a[0])
				}),
			},
			{
				Name: "purge-queue", Usage: "drop a queue's ready messages", UsageText: "amqp-server ctl purge-queue [--vhost V] NAME",
				Flags: []ucli.Flag{vhostFlag},
				Action: ctlAction(1, 1, "[--vhost V] NAME", func(cx *ucli.Context, c *ctlClient, a []string) error {
					v := cx.String("vhost")
					if _, err := c.do(http.MethodDelete, "/queues/"+esc(v)+"/"+esc(a[0])+"/contents", nil); err != nil {
						return fail(err, fmt.Sprintf("purging queue '%s' in vhost '%s'", a[0], v),
							fmt.Sprintf("no queue '%s' in vhost '%s'", a[0], v))
					}
					return done(cx, "Purging queue '%s' in vhost '%s' ...\nDone.", a[0], v)
				}),
			},
			{
				Name: "delete-queue", Usage: "delete a queue", UsageText: "amqp-server ctl delete-queue [--vhost V] [--if-empty] [--if-unused] NAME",
				Flags: []ucli.Flag{vhostFlag,
					&ucli.BoolFlag{Name: "if-empty", Usage: "only if it has no messages"},
					&ucli.BoolFlag{Name: "if-unused", Usage: "only if it has no consumers"},
				},
				Action: ctlAction(1, 1, "[--vhost V] NAME", func(cx *ucli.Context, c *ctlClient, a []string) error {
					v := cx.String("vhost")
					q := url.Values{}
					if cx.Bool("if-empty") {
						q.Set("if-empty", "true")
					}
					if cx.Bool("if-unused") {
						q.Set("if-unused", "true")
					}
					path := "/queues/" + esc(v) + "/" + esc(a[0])
					if len(q) > 0 {
						path += "?" + q.Encode()
					}
					if _, err := c.do(http.MethodDelete, path, nil); err != nil {
						return fail(err, fmt.Sprintf("deleting queue '%s' in vhost '%s'", a[0], v),
							fmt.Sprintf("no queue '%s' in vhost '%s'", a[0], v))
					}
					return done(cx, "Deleting queue '%s' in vhost '%s' ...\nDone.", a[0], v)
				}),
			},
			{
				Name: "export-definitions", Usage: "write the broker's definitions (RabbitMQ's format) to FILE, - for stdout",
				UsageText: "amqp-server ctl export-definitions FILE",
				Action: ctlAction(1, 1, "FILE", func(cx *ucli.Context, c *ctlClient, a []string) error {
					b, err := c.do(http.MethodGet, "/definitions", nil)
					if err != nil {
						return fail(err, "exporting the definitions", "")
					}
					if a[0] == "-" {
						_, err := cx.App.Writer.Write(append(b, '\n'))
						return err
					}
					if err := os.WriteFile(a[0], b, 0o600); err != nil {
						return ucli.Exit("Error: "+err.Error(), exitSoftware)
					}
					return done(cx, "Exported definitions to %s", a[0])
				}),
			},
			{
				Name: "import-definitions", Usage: "import definitions (RabbitMQ's format) from FILE, - for stdin",
				UsageText: "amqp-server ctl import-definitions FILE",
				Action: ctlAction(1, 1, "FILE", func(cx *ucli.Context, c *ctlClient, a []string) error {
					var b []byte
					var err error
					if a[0] == "-" {
						b, err = io.ReadAll(os.Stdin)
					} else {
						b, err = os.ReadFile(a[0])
					}
					if err != nil {
						return ucli.Exit("Error: "+err.Error(), exitSoftware)
					}
					if !json.Valid(b) {
						return ucli.Exit(fmt.Sprintf("Error: %s is not JSON", a[0]), exitSoftware)
					}
					if _, err := c.do(http.MethodPost, "/definitions", b); err != nil {
						return fail(err, "importing "+a[0], "")
					}
					return done(cx, "Imported definitions from %s", a[0])
				}),
			},
			{
				Name: "status", Usage: "the node's version, uptime, alarms, listeners and totals",
				UsageText: "amqp-server ctl status [--format table|json]",
				Flags:     []ucli.Flag{&ucli.StringFlag{Name: "format", Value: "table", Usage: "table or json (the API's overview)"}},
				Action:    ctlAction(0, 0, "", ctlStatus),
			},
			ctlClusterCommand(),
			ctlRebalanceCommand(),
		}, ctlMemberCommands(vhostFlag)...),
	}
}
