package cli_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/amqp-go/amqp-go/server/security"
	amqp "github.com/rabbitmq/amqp091-go"
)

// runCmd runs the binary to completion in dir with the test's data
// directory and port, returning its output.
func runCmd(t *testing.T, dir string, port int, args ...string) (string, error) {
	t.Helper()
	c := exec.Command(binary, args...)
	c.Dir = dir
	c.Env = baseEnv(dir, port)
	out, err := c.CombinedOutput()
	return string(out), err
}

func userURL(port int, user, pass, vhost string) string {
	return fmt.Sprintf("amqp://%s:%s@127.0.0.1:%d/%s", user, pass, port, strings.ReplaceAll(vhost, "/", "%2F"))
}

// The README's definitions example, as it says: imported offline, the
// user logs in to its vhost and may use app.* only; exported again, the
// file holds it.
func TestReadmeDefinitions(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	defs := filepath.Join(dir, "app.json")
	if err := os.WriteFile(defs, []byte(readmeBlock(t, "<!-- example: definitions -->")), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runCmd(t, dir, port, "import-definitions", defs); err != nil {
		t.Fatalf("import-definitions: %v\n%s", err, out)
	}
	p := startIn(t, dir, port, []string{"run"})
	c := dial(t, userURL(port, "app", "p", "orders"))
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclarePassive("app.inbox", true, false, false, false, nil); err != nil {
		t.Fatalf("imported queue: %v", err)
	}
	if _, err := ch.QueueDeclare("other", false, false, false, false, nil); err == nil ||
		!strings.Contains(err.Error(), "access to queue 'other' in vhost 'orders' refused for user 'app'") {
		t.Fatalf("declare outside app.*: %v", err)
	}
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.stderr)
	}
	out := filepath.Join(dir, "backup.json")
	if o, err := runCmd(t, dir, port, "export-definitions", out); err != nil {
		t.Fatalf("export-definitions: %v\n%s", err, o)
	}
	d := readDefs(t, out)
	var found bool
	for _, u := range d.Users {
		found = found || u.Name == "app" && u.PasswordHash == "8jVoCkPvq4wEAN2EIpq2z9mgW8ifrmmRmXL7+BxTPB/NQyBh"
	}
	if !found || len(d.Queues) != 1 || d.Queues[0].Name != "app.inbox" {
		t.Fatalf("export: users %+v queues %+v", d.Users, d.Queues)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("export file mode: %v %v", fi, err)
	}
}

// security.definitionsfile seeds a first start in place of the default
// user: guest is not made, the file's user logs in.
func TestDefinitionsFileKey(t *testing.T) {
	dir := t.TempDir()
	defs := filepath.Join(dir, "app.json")
	if err := os.WriteFile(defs, []byte(readmeBlock(t, "<!-- example: definitions -->")), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startIn(t, dir, freePort(t), []string{"run"}, "AMQP_SECURITY_DEFINITIONSFILE="+defs)
	dial(t, userURL(p.port, "app", "p", "orders"))
	if _, err := amqp.Dial(p.url); err == nil {
		t.Fatal("guest logged in though a definitions file seeded the users")
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"users":[{"name":"x","password_hash":"AQI=","tags":[]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	p.stop(syscall.SIGTERM)
	out, err := runCmd(t, dir, p.port, "run", "--security-definitionsfile", bad)
	if err == nil || !strings.Contains(out, "security.definitionsfile: "+bad+": users: user 'x': password_hash holds 2 bytes") {
		t.Fatalf("bad definitions file: %v\n%s", err, out)
	}
}

func readDefs(t *testing.T, path string) *security.Definitions {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := security.ReadDefinitions(f)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The definitions round trip with RabbitMQ, passwords included: a user
// made by rabbitmqctl logs in here after export_definitions and our
// import; a user made here logs in to RabbitMQ after our export and
// rabbitmqctl import_definitions. Needs BROKER_TEST_URL (the RabbitMQ)
// and BROKER_TEST_CTL (the rabbitmqctl command line, e.g. "bash
// scripts/rabbitmq-peer ctl 5684", run on this machine); skipped without.
func TestDefinitionsRoundTripRabbitMQ(t *testing.T) {
	rmq, ctlCmd := os.Getenv("BROKER_TEST_URL"), strings.Fields(os.Getenv("BROKER_TEST_CTL"))
	if rmq == "" || len(ctlCmd) == 0 {
		t.Skip("needs BROKER_TEST_URL and BROKER_TEST_CTL naming a RabbitMQ")
	}
	ctl := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ctlCmd[0], append(ctlCmd[1:], args...)...).CombinedOutput(); err != nil {
			t.Fatalf("rabbitmqctl %v: %v\n%s", args, err, out)
		}
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	theirs, ours := "rt-rabbit-"+id, "rt-ours-"+id
	ctl("add_user", theirs, "their-pw")
	t.Cleanup(func() { ctl("delete_user", theirs) })
	ctl("set_permissions", "-p", "/", theirs, ".*", ".*", ".*")

	dir := t.TempDir()
	port := freePort(t)
	fromRabbit := filepath.Join(dir, "from-rabbitmq.json")
	ctl("export_definitions", fromRabbit)
	if out, err := runCmd(t, dir, port, "import-definitions", fromRabbit); err != nil {
		t.Fatalf("import-definitions: %v\n%s", err, out)
	}
	hash, err := security.HashPassword(security.HashSHA256, "our-pw")
	if err != nil {
		t.Fatal(err)
	}
	own := filepath.Join(dir, "own.json")
	if err := os.WriteFile(own, []byte(fmt.Sprintf(`{"users":[{"name":%q,"password_hash":%q,"hashing_algorithm":"rabbit_password_hashing_sha256","tags":[]}],
		"permissions":[{"user":%q,"vhost":"/","configure":".*","write":".*","read":".*"}]}`, ours, hash, ours)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runCmd(t, dir, port, "import-definitions", own); err != nil {
		t.Fatalf("import-definitions: %v\n%s", err, out)
	}
	p := startIn(t, dir, port, []string{"run"})
	// Their user here (not loopback-only: only guest is).
	dial(t, userURL(port, theirs, "their-pw", "/"))
	if _, err := amqp.Dial(userURL(port, theirs, "wrong", "/")); err == nil {
		t.Fatal("a wrong password logged in")
	}
	p.stop(syscall.SIGTERM)

	toRabbit := filepath.Join(dir, "to-rabbitmq.json")
	if out, err := runCmd(t, dir, port, "export-definitions", toRabbit); err != nil {
		t.Fatalf("export-definitions: %v\n%s", err, out)
	}
	if err := os.Chmod(toRabbit, 0o644); err != nil { // rabbitmqctl may run as another user
		t.Fatal(err)
	}
	ctl("import_definitions", toRabbit)
	t.Cleanup(func() { ctl("delete_user", ours) })
	u := strings.Replace(rmq, "guest:guest@", ours+":our-pw@", 1)
	if u == rmq {
		t.Fatalf("BROKER_TEST_URL %q has no guest:guest@ to replace", rmq)
	}
	c, err := amqp.Dial(u)
	if err != nil {
		t.Fatalf("our user on RabbitMQ after import_definitions: %v", err)
	}
	c.Close()
}

// remoteLoginURL, when set, makes this test binary the remote client of
// TestRemoteLoopbackUsersNone.
const remoteLoginURL = "AMQP_TEST_REMOTE_LOGIN_URL"

// security.loopbackusers none lets guest log in from another host (the
// default, guest only over loopback, is TestRemoteGuestRefused).
func TestRemoteLoopbackUsersNone(t *testing.T) {
	ns, hostIP := netnsPeer(t)
	port := freePort(t)
	startIn(t, t.TempDir(), port, []string{"run", "--storage-backend", "memory"},
		fmt.Sprintf("AMQP_NETWORK_ADDRESS=:%d", port), "AMQP_SECURITY_LOOPBACKUSERS=none")
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run", "^TestRemoteLoginClient$", "-test.v")
	// remoteGuestURL also tells TestMain not to build the server binary.
	cmd.Env = append(os.Environ(), remoteGuestURL+"=unused",
		fmt.Sprintf("%s=amqp://guest:guest@%s:%d/", remoteLoginURL, hostIP, port))
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "--- PASS: TestRemoteLoginClient") {
		t.Fatalf("remote client: %v\n%s", err, out)
	}
}

// TestRemoteLoginClient is the remote side of TestRemoteLoopbackUsersNone.
func TestRemoteLoginClient(t *testing.T) {
	url := os.Getenv(remoteLoginURL)
	if url == "" {
		t.Skip("run by TestRemoteLoopbackUsersNone inside its network namespace")
	}
	c, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("guest refused from another host with loopbackusers none: %v", err)
	}
	c.Close()
}
