package cli_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// defaultsEnv is what TestDefaultUserAndVHost's first start is given: RabbitMQ's
// default_vhost, default_user, default_pass, default_user_tags and
// default_permissions, as the security.default* keys.
var defaultsEnv = []string{"AMQP_SECURITY_DEFAULTVHOST=prod", "AMQP_SECURITY_DEFAULTUSER=admin",
	"AMQP_SECURITY_DEFAULTPASS=s3cret", "AMQP_SECURITY_DEFAULTUSERTAGS=monitoring",
	`AMQP_SECURITY_DEFAULTPERMISSIONSCONFIGURE=^app\.`, "AMQP_SECURITY_DEFAULTPERMISSIONSWRITE=.*",
	"AMQP_SECURITY_DEFAULTPERMISSIONSREAD=.*"}

// checkDefaults asserts what a client sees of defaultsEnv on the broker
// at amqpAddr (host:port) with its management API at mgmtAddr: admin
// logs in to prod only, may configure app.* only, has the monitoring tag,
// and neither guest nor the vhost / exists.
func checkDefaults(t *testing.T, amqpAddr, mgmtAddr string) {
	t.Helper()
	c, err := amqp.Dial("amqp://admin:s3cret@" + amqpAddr + "/prod")
	if err != nil {
		t.Fatalf("admin on prod: %v", err)
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("app.defaults", false, true, true, false, nil); err != nil {
		t.Fatalf("declare app.defaults: %v", err)
	}
	_, err = ch.QueueDeclare("other.defaults", false, true, true, false, nil)
	var ae *amqp.Error
	if want := "ACCESS_REFUSED - access to queue 'other.defaults' in vhost 'prod' refused for user 'admin'"; !errors.As(err, &ae) ||
		ae.Code != 403 || ae.Reason != want {
		t.Errorf("declare other.defaults: %v, want 403 %q", err, want)
	}
	if _, err := amqp.Dial("amqp://admin:s3cret@" + amqpAddr + "/"); !errors.Is(err, amqp.ErrVhost) {
		t.Errorf("admin on /: %v, want the vhost refused", err)
	}
	if _, err := amqp.Dial("amqp://guest:guest@" + amqpAddr + "/prod"); !errors.Is(err, amqp.ErrCredentials) {
		t.Errorf("guest: %v, want the login refused", err)
	}
	req, err := http.NewRequest("GET", "http://"+mgmtAddr+"/api/whoami", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("admin", "s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var who struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(b, &who); err != nil || resp.StatusCode != 200 || who.Name != "admin" || fmt.Sprint(who.Tags) != "[monitoring]" {
		t.Errorf("whoami as admin: %d %s", resp.StatusCode, b)
	}
}

// The security.default* keys, as RabbitMQ's default_* settings: the first
// start on an empty data directory creates the vhost and the user with
// its tags and permissions there (and no guest, no /); a later start with
// other defaults changes nothing, as RabbitMQ applies them to a blank node
// only. With DEFAULTS_RABBITMQ (amqp host:port,management host:port) the
// same checks run against a RabbitMQ started with those settings, e.g.
// scripts/rabbitmq-peer with CONF lines default_vhost = prod, default_user =
// admin, default_pass = s3cret, default_user_tags.monitoring = true and
// default_permissions.configure = ^app\. (write and read .*), on port 5698:
// DEFAULTS_RABBITMQ=127.0.0.1:5698,127.0.0.1:35698.
func TestDefaultUserAndVHost(t *testing.T) {
	if r := os.Getenv("DEFAULTS_RABBITMQ"); r != "" {
		amqpAddr, mgmtAddr, _ := strings.Cut(r, ",")
		t.Run("RabbitMQ", func(t *testing.T) { checkDefaults(t, amqpAddr, mgmtAddr) })
	}
	dir := t.TempDir()
	port := freePort(t)
	p := startIn(t, dir, port, []string{"run"}, defaultsEnv...)
	checkDefaults(t, fmt.Sprintf("127.0.0.1:%d", port), managementAddr(t, p, false))
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.stderr)
	}

	// Started again with other defaults, on the same data directory.
	p = startIn(t, dir, port, []string{"run"}, "AMQP_SECURITY_DEFAULTVHOST=other", "AMQP_SECURITY_DEFAULTUSER=newadmin",
		"AMQP_SECURITY_DEFAULTPASS=pw", "AMQP_SECURITY_DEFAULTPERMISSIONSCONFIGURE=.*")
	checkDefaults(t, fmt.Sprintf("127.0.0.1:%d", port), managementAddr(t, p, false))
	if _, err := amqp.Dial(fmt.Sprintf("amqp://newadmin:pw@127.0.0.1:%d/other", port)); !errors.Is(err, amqp.ErrCredentials) {
		t.Errorf("the second start's default user: %v, want the login refused", err)
	}
}

// A bad security.default* key stops start-up naming the source, the key
// and what is allowed.
func TestDefaultsConfigErrors(t *testing.T) {
	for _, tc := range []struct{ env, want string }{
		{`AMQP_SECURITY_DEFAULTPERMISSIONSREAD=^(?!tmp)`, `amqp-server: AMQP_SECURITY_DEFAULTPERMISSIONSREAD: security.defaultpermissionsread: not a regular expression: error parsing regexp: invalid or unsupported Perl syntax: ` + "`(?!`" + `: "^(?!tmp)" (allowed: a Go (RE2) regular expression, matched unanchored ("": nothing); PCRE's look-arounds and back-references are not supported)`},
		{"AMQP_SECURITY_DEFAULTUSERTAGS=administrator,power user", `amqp-server: AMQP_SECURITY_DEFAULTUSERTAGS: security.defaultusertags: a tag has a space in it: "administrator,power user" (allowed: comma-separated tags such as administrator, monitoring, management, policymaker, impersonator)`},
	} {
		cmd := exec.Command(binary, "run")
		cmd.Env = baseEnv(t.TempDir(), freePort(t), tc.env)
		out, err := cmd.CombinedOutput()
		if err == nil || strings.TrimSpace(string(out)) != tc.want {
			t.Errorf("%s: %v\n%s\nwant\n%s", tc.env, err, out, tc.want)
		}
	}
	dir := t.TempDir()
	file := dir + "/amqp.yaml"
	if err := os.WriteFile(file, []byte("security:\n  defaultvhost: \"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "run", "--config", file)
	cmd.Env = baseEnv(dir, freePort(t))
	out, err := cmd.CombinedOutput()
	if want := "amqp-server: " + file + `:2: security.defaultvhost: must not be empty: "" (allowed: a vhost name)`; err == nil || strings.TrimSpace(string(out)) != want {
		t.Errorf("empty defaultvhost: %v\n%s\nwant\n%s", err, out, want)
	}
}
