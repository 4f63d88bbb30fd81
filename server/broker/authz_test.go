package broker_test

import (
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/monitor"
	"github.com/amqp-go/amqp-go/server/security"
	"github.com/amqp-go/amqp-go/server/servertest"
	wire "github.com/amqp-go/amqp-go/shared/amqp"
	amqp "github.com/rabbitmq/amqp091-go"
)

// secAdmin sets users, vhosts and permissions up on the broker under
// test: our store in-process, or rabbitmqctl (BROKER_TEST_CTL) against
// BROKER_TEST_URL's RabbitMQ.
type secAdmin interface {
	addUser(t *testing.T, name, password string, tags ...string)
	addVHost(t *testing.T, name string)
	setPermissions(t *testing.T, user, vhost, configure, write, read string)
	setTopicPermissions(t *testing.T, user, vhost, exchange, write, read string)
	// setVHostLimits and setUserLimits take RabbitMQ's JSON object of
	// limits, e.g. {"max-connections": 1}.
	setVHostLimits(t *testing.T, vhost, limits string)
	setUserLimits(t *testing.T, user, limits string)
}

type storeAdmin struct{ s *security.Store }

func (a storeAdmin) addUser(t *testing.T, name, password string, tags ...string) {
	t.Helper()
	if err := a.s.AddUser(name, password, tags...); err != nil {
		t.Fatal(err)
	}
}

func (a storeAdmin) addVHost(t *testing.T, name string) {
	t.Helper()
	if err := a.s.PutVHost(security.VHost{Name: name}); err != nil {
		t.Fatal(err)
	}
}

func (a storeAdmin) setPermissions(t *testing.T, user, vhost, configure, write, read string) {
	t.Helper()
	if err := a.s.SetPermissions(security.Permission{User: user, VHost: vhost, Configure: configure, Write: write, Read: read}); err != nil {
		t.Fatal(err)
	}
}

func (a storeAdmin) setTopicPermissions(t *testing.T, user, vhost, exchange, write, read string) {
	t.Helper()
	if err := a.s.SetTopicPermissions(security.TopicPermission{User: user, VHost: vhost, Exchange: exchange, Write: write, Read: read}); err != nil {
		t.Fatal(err)
	}
}

func (a storeAdmin) setVHostLimits(t *testing.T, vhost, limits string) {
	t.Helper()
	for k, n := range parseLimits(t, limits) {
		if err := a.s.SetVHostLimit(vhost, k, n); err != nil {
			t.Fatal(err)
		}
	}
}

func (a storeAdmin) setUserLimits(t *testing.T, user, limits string) {
	t.Helper()
	for k, n := range parseLimits(t, limits) {
		if err := a.s.SetUserLimit(user, k, n); err != nil {
			t.Fatal(err)
		}
	}
}

func parseLimits(t *testing.T, limits string) map[string]int64 {
	t.Helper()
	var m map[string]int64
	if err := json.Unmarshal([]byte(limits), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// ctlAdmin runs BROKER_TEST_CTL (a command line that takes rabbitmqctl's
// arguments, e.g. "bash scripts/rabbitmq-peer ctl 5684").
type ctlAdmin struct{ cmd []string }

func (a ctlAdmin) ctl(t *testing.T, args ...string) {
	t.Helper()
	c := exec.Command(a.cmd[0], append(a.cmd[1:], args...)...)
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("rabbitmqctl %v: %v\n%s", args, err, out)
	}
}

func (a ctlAdmin) addUser(t *testing.T, name, password string, tags ...string) {
	a.ctl(t, "add_user", name, password)
	t.Cleanup(func() { a.ctl(t, "delete_user", name) })
	if len(tags) > 0 {
		a.ctl(t, append([]string{"set_user_tags", name}, tags...)...)
	}
}

func (a ctlAdmin) addVHost(t *testing.T, name string) {
	a.ctl(t, "add_vhost", name)
	t.Cleanup(func() { a.ctl(t, "delete_vhost", name) })
}

func (a ctlAdmin) setPermissions(t *testing.T, user, vhost, configure, write, read string) {
	a.ctl(t, "set_permissions", "-p", vhost, user, configure, write, read)
}

func (a ctlAdmin) setTopicPermissions(t *testing.T, user, vhost, exchange, write, read string) {
	a.ctl(t, "set_topic_permissions", "-p", vhost, user, exchange, write, read)
}

func (a ctlAdmin) setVHostLimits(t *testing.T, vhost, limits string) {
	a.ctl(t, "set_vhost_limits", "-p", vhost, limits)
}

func (a ctlAdmin) setUserLimits(t *testing.T, user, limits string) {
	a.ctl(t, "set_user_limits", user, limits)
}

// securedBroker returns the URL of a broker whose users the returned
// admin sets up, with guest/guest an administrator on "/" as RabbitMQ's.
// Against RabbitMQ it needs BROKER_TEST_CTL, and skips without it.
func securedBroker(t *testing.T) (string, secAdmin) {
	t.Helper()
	if u := os.Getenv("BROKER_TEST_URL"); u != "" {
		cmd := strings.Fields(os.Getenv("BROKER_TEST_CTL"))
		if len(cmd) == 0 {
			t.Skip("BROKER_TEST_URL is set without BROKER_TEST_CTL, the rabbitmqctl command to set users up with")
		}
		return u, ctlAdmin{cmd}
	}
	sec := security.NewStore()
	a := storeAdmin{sec}
	a.addVHost(t, "/")
	a.addUser(t, "guest", "guest", security.TagAdministrator)
	a.setPermissions(t, "guest", "/", ".*", ".*", ".*")
	_, u := servertest.StartServer(t, broker.Config{Security: sec})
	return u, a
}

// asUser is rawurl with another user, password and vhost.
func asUser(t *testing.T, rawurl, user, password, vhost string) string {
	t.Helper()
	u, err := url.Parse(rawurl)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, password)
	u.Path, u.RawPath = "/"+vhost, "/"+url.PathEscape(vhost)
	return u.String()
}

// TestPermissionMatrix checks each operation RabbitMQ authorises with a
// permission that allows it and with ones that refuse it: reply code and
// text. Resource names say what the user may do with them: all- (all),
// cfg- (configure), wr- (write), rd- (read), none- (nothing).
func TestPermissionMatrix(t *testing.T) {
	base, admin := securedBroker(t)
	user := "authz-" + runID
	imp := "authz-imp-" + runID
	admin.addUser(t, user, "pw")
	admin.addUser(t, imp, "pw", security.TagImpersonator)
	for _, u := range []string{user, imp} {
		admin.setPermissions(t, u, "/", "^(all|cfg)-", "^(all|wr)-", "^(all|rd)-")
	}
	n := func(prefix string) string { return prefix + "-" + runID }
	topicX := n("all-t")
	admin.setTopicPermissions(t, user, "/", topicX, "^{username}\\.", "^r\\.")

	// What the user works on, made by guest.
	gc := openConn(t, base)
	g := openChan(t, gc)
	for _, q := range []string{"all-q", "wr-q", "rd-q", "none-q", "cfg-q2"} {
		declareQueue(t, base, g, n(q))
	}
	for _, x := range []string{"wr-x", "rd-x", "rd-x2", "none-x"} {
		if err := g.ExchangeDeclare(n(x), "fanout", false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		cleanupExchanges(t, base, n(x))
	}
	if err := g.ExchangeDeclare(topicX, "topic", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	cleanupExchanges(t, base, topicX)
	cleanupQueues(t, base, n("cfg-q"), n("all-dl1"))
	cleanupExchanges(t, base, n("cfg-x"), n("all-ae1"))

	uc := openConn(t, asUser(t, base, user, "pw", "/"))
	// RabbitMQ 3.10's texts do not name the access refused (a says which
	// it is, for the reader).
	refused := func(a, kind, name string) string {
		return "ACCESS_REFUSED - access to " + kind + " '" + name + "' in vhost '/' refused for user '" + user + "'"
	}
	topicRefused := func(_, key string) string {
		return "ACCESS_REFUSED - access to topic '" + key + "' in exchange '" + topicX + "' in vhost '/' refused for user '" + user + "'"
	}
	// Each case runs on a fresh channel; want "" means it must succeed.
	cases := []struct {
		name string
		op   func(ch *amqp.Channel) error
		want string
	}{
		{"queue.declare allowed", func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare(n("cfg-q"), false, false, false, false, nil)
			return err
		}, ""},
		{"queue.declare refused", func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare(n("wr-q"), false, false, false, false, nil)
			return err
		}, refused("configure", "queue", n("wr-q"))},
		{"queue.declare passive needs nothing", func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclarePassive(n("none-q"), false, false, false, false, nil)
			return err
		}, ""},
		{"queue.declare dlx allowed", func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare(n("all-dl1"), false, false, false, false, amqp.Table{"x-dead-letter-exchange": n("wr-x")})
			return err
		}, ""},
		{"queue.declare dlx not writable", func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare(n("all-dl2"), false, false, false, false, amqp.Table{"x-dead-letter-exchange": n("rd-x")})
			return err
		}, refused("write", "exchange", n("rd-x"))},
		{"queue.declare dlx default exchange", func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare(n("all-dl3"), false, false, false, false, amqp.Table{"x-dead-letter-exchange": ""})
			return err
		}, refused("write", "exchange", "amq.default")},
		{"queue.declare dlx queue not readable", func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare(n("cfg-dl"), false, false, false, false, amqp.Table{"x-dead-letter-exchange": n("wr-x")})
			return err
		}, refused("read", "queue", n("cfg-dl"))},
		{"queue.delete allowed", func(ch *amqp.Channel) error {
			_, err := ch.QueueDelete(n("cfg-q2"), false, false, false)
			return err
		}, ""},
		{"queue.delete refused", func(ch *amqp.Channel) error {
			_, err := ch.QueueDelete(n("none-q"), false, false, false)
			return err
		}, refused("configure", "queue", n("none-q"))},
		{"queue.delete refused before not found", func(ch *amqp.Channel) error {
			_, err := ch.QueueDelete(n("none-missing"), false, false, false)
			return err
		}, refused("configure", "queue", n("none-missing"))},
		{"exchange.declare allowed", func(ch *amqp.Channel) error {
			return ch.ExchangeDeclare(n("cfg-x"), "direct", false, false, false, false, nil)
		}, ""},
		{"exchange.declare refused", func(ch *amqp.Channel) error {
			return ch.ExchangeDeclare(n("rd-x"), "fanout", false, false, false, false, nil)
		}, refused("configure", "exchange", n("rd-x"))},
		{"exchange.declare ae allowed", func(ch *amqp.Channel) error {
			return ch.ExchangeDeclare(n("all-ae1"), "direct", false, false, false, false, amqp.Table{"alternate-exchange": n("wr-x")})
		}, ""},
		{"exchange.declare ae not writable", func(ch *amqp.Channel) error {
			return ch.ExchangeDeclare(n("all-ae2"), "direct", false, false, false, false, amqp.Table{"alternate-exchange": n("rd-x")})
		}, refused("write", "exchange", n("rd-x"))},
		{"exchange.declare ae exchange not readable", func(ch *amqp.Channel) error {
			return ch.ExchangeDeclare(n("cfg-ae"), "direct", false, false, false, false, amqp.Table{"alternate-exchange": n("wr-x")})
		}, refused("read", "exchange", n("cfg-ae"))},
		{"exchange.delete allowed", func(ch *amqp.Channel) error {
			return ch.ExchangeDelete(n("cfg-x"), false, false)
		}, ""},
		{"exchange.delete refused", func(ch *amqp.Channel) error {
			return ch.ExchangeDelete(n("rd-x2"), false, false)
		}, refused("configure", "exchange", n("rd-x2"))},
		{"queue.bind allowed", func(ch *amqp.Channel) error {
			return ch.QueueBind(n("wr-q"), "k", n("rd-x"), false, nil)
		}, ""},
		{"queue.bind queue not writable", func(ch *amqp.Channel) error {
			return ch.QueueBind(n("rd-q"), "k", n("rd-x"), false, nil)
		}, refused("write", "queue", n("rd-q"))},
		{"queue.bind exchange not readable", func(ch *amqp.Channel) error {
			return ch.QueueBind(n("wr-q"), "k", n("wr-x"), false, nil)
		}, refused("read", "exchange", n("wr-x"))},
		{"queue.bind topic key allowed", func(ch *amqp.Channel) error {
			return ch.QueueBind(n("all-q"), "r.1", topicX, false, nil)
		}, ""},
		{"queue.bind topic key refused", func(ch *amqp.Channel) error {
			return ch.QueueBind(n("all-q"), "x.1", topicX, false, nil)
		}, topicRefused("read", "x.1")},
		{"queue.unbind allowed", func(ch *amqp.Channel) error {
			return ch.QueueUnbind(n("wr-q"), "k", n("rd-x"), nil)
		}, ""},
		{"queue.unbind queue not writable", func(ch *amqp.Channel) error {
			return ch.QueueUnbind(n("rd-q"), "k", n("rd-x"), nil)
		}, refused("write", "queue", n("rd-q"))},
		{"queue.unbind exchange not readable", func(ch *amqp.Channel) error {
			return ch.QueueUnbind(n("wr-q"), "k", n("wr-x"), nil)
		}, refused("read", "exchange", n("wr-x"))},
		{"exchange.bind allowed", func(ch *amqp.Channel) error {
			return ch.ExchangeBind(n("wr-x"), "k", n("rd-x"), false, nil)
		}, ""},
		{"exchange.bind destination not writable", func(ch *amqp.Channel) error {
			return ch.ExchangeBind(n("rd-x2"), "k", n("rd-x"), false, nil)
		}, refused("write", "exchange", n("rd-x2"))},
		{"exchange.bind source not readable", func(ch *amqp.Channel) error {
			return ch.ExchangeBind(n("wr-x"), "k", n("none-x"), false, nil)
		}, refused("read", "exchange", n("none-x"))},
		{"exchange.bind topic key allowed", func(ch *amqp.Channel) error {
			return ch.ExchangeBind(n("wr-x"), "r.2", topicX, false, nil)
		}, ""},
		{"exchange.bind topic key refused", func(ch *amqp.Channel) error {
			return ch.ExchangeBind(n("wr-x"), "y.2", topicX, false, nil)
		}, topicRefused("read", "y.2")},
		{"exchange.unbind allowed", func(ch *amqp.Channel) error {
			return ch.ExchangeUnbind(n("wr-x"), "k", n("rd-x"), false, nil)
		}, ""},
		{"exchange.unbind destination not writable", func(ch *amqp.Channel) error {
			return ch.ExchangeUnbind(n("rd-x2"), "k", n("rd-x"), false, nil)
		}, refused("write", "exchange", n("rd-x2"))},
		{"basic.publish allowed", func(ch *amqp.Channel) error {
			return publishAndSync(ch, n("wr-x"), "k", amqp.Publishing{})
		}, ""},
		{"basic.publish refused", func(ch *amqp.Channel) error {
			return publishAndSync(ch, n("rd-x"), "k", amqp.Publishing{})
		}, refused("write", "exchange", n("rd-x"))},
		{"basic.publish default exchange", func(ch *amqp.Channel) error {
			return publishAndSync(ch, "", n("all-q"), amqp.Publishing{})
		}, refused("write", "exchange", "amq.default")},
		{"basic.publish refused before not found", func(ch *amqp.Channel) error {
			return publishAndSync(ch, n("none-missing"), "k", amqp.Publishing{})
		}, refused("write", "exchange", n("none-missing"))},
		{"basic.publish topic key allowed", func(ch *amqp.Channel) error {
			return publishAndSync(ch, topicX, user+".a", amqp.Publishing{})
		}, ""},
		{"basic.publish topic key refused", func(ch *amqp.Channel) error {
			return publishAndSync(ch, topicX, "other.a", amqp.Publishing{})
		}, topicRefused("write", "other.a")},
		{"basic.publish user_id of another user", func(ch *amqp.Channel) error {
			return publishAndSync(ch, n("wr-x"), "k", amqp.Publishing{UserId: "someone"})
		}, "PRECONDITION_FAILED - user_id property set to 'someone' but authenticated user was '" + user + "'"},
		{"basic.publish own user_id", func(ch *amqp.Channel) error {
			return publishAndSync(ch, n("wr-x"), "k", amqp.Publishing{UserId: user})
		}, ""},
		{"basic.consume allowed", func(ch *amqp.Channel) error {
			_, err := ch.Consume(n("rd-q"), "", false, false, false, false, nil)
			return err
		}, ""},
		{"basic.consume refused", func(ch *amqp.Channel) error {
			_, err := ch.Consume(n("wr-q"), "", false, false, false, false, nil)
			return err
		}, refused("read", "queue", n("wr-q"))},
		{"basic.get allowed", func(ch *amqp.Channel) error {
			_, _, err := ch.Get(n("rd-q"), false)
			return err
		}, ""},
		{"basic.get refused", func(ch *amqp.Channel) error {
			_, _, err := ch.Get(n("wr-q"), false)
			return err
		}, refused("read", "queue", n("wr-q"))},
		{"queue.purge allowed", func(ch *amqp.Channel) error {
			_, err := ch.QueuePurge(n("rd-q"), false)
			return err
		}, ""},
		{"queue.purge refused", func(ch *amqp.Channel) error {
			_, err := ch.QueuePurge(n("cfg-q"), false)
			return err
		}, refused("read", "queue", n("cfg-q"))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ch := openChan(t, uc)
			defer ch.Close()
			err := tc.op(ch)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			code := 403
			if strings.HasPrefix(tc.want, "PRECONDITION_FAILED") {
				code = 406
			}
			wantErr(t, err, code, tc.want)
		})
	}

	t.Run("impersonator sets another user_id", func(t *testing.T) {
		ch := openChan(t, openConn(t, asUser(t, base, imp, "pw", "/")))
		if err := publishAndSync(ch, n("wr-x"), "k", amqp.Publishing{UserId: "someone"}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("connection.open without permissions in the vhost", func(t *testing.T) {
		vh := "authz-v-" + runID
		admin.addVHost(t, vh)
		rc, _ := rawHandshake(t, asUser(t, base, user, "pw", "/"), rawOpts{vhost: vh, password: "pw", noOpen: true})
		rc.send(0, &wire.ConnectionOpen{VirtualHost: vh})
		rc.expectConnClose(530, "NOT_ALLOWED - access to vhost '"+vh+"' refused for user '"+user+"'")
	})
}

// publishAndSync, once on a fresh channel (it puts the channel in confirm
// mode and listens for one confirm), publishes with a confirm and waits
// for it or for the channel's close, so a refusal of the publish (which has no reply of its
// own) comes back as the close. No other frame follows the publish on the
// channel, which could cross the server's channel.close.
func publishAndSync(ch *amqp.Channel, exchange, key string, p amqp.Publishing) error {
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.Confirm(false); err != nil {
		return err
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 1))
	if err := ch.Publish(exchange, key, false, false, p); err != nil {
		return err
	}
	timeout := time.After(5 * time.Second)
	select {
	case c, ok := <-confirms:
		if ok && c.Ack {
			return nil
		}
		if ok {
			return errors.New("publish nacked")
		}
	case e := <-closed:
		return e
	case <-timeout:
		return errors.New("no confirm and no close")
	}
	select { // confirms closed with the channel: the close says why
	case e := <-closed:
		return e
	case <-timeout:
		return errors.New("confirms ended without a close")
	}
}

// Users and permissions live in the definitions store: the default user
// is made on the first start only, so a deleted guest stays deleted, and
// a user added at run time is there after a restart.
func TestSecurityPersists(t *testing.T) {
	inProcessOnly(t, "restarts the server")
	dir := t.TempDir()
	s, u := servertest.StartServer(t, broker.Config{DataDir: dir})
	openConn(t, u).Close()
	if err := s.ImportDefinitions(mustDefs(t, `{"users":[{"name":"alice","password_hash":"8jVoCkPvq4wEAN2EIpq2z9mgW8ifrmmRmXL7+BxTPB/NQyBh","hashing_algorithm":"rabbit_password_hashing_sha256","tags":["management"]}],
		"vhosts":[{"name":"/"},{"name":"apps"}],
		"permissions":[{"user":"alice","vhost":"apps","configure":"^a-","write":".*","read":".*"}],
		"queues":[{"name":"a-q","vhost":"apps","durable":true,"auto_delete":false,"arguments":{"x-max-length":10}}],
		"exchanges":[{"name":"a-x","vhost":"apps","type":"topic","durable":true,"auto_delete":false,"internal":false,"arguments":{}}],
		"bindings":[{"source":"a-x","vhost":"apps","destination":"a-q","destination_type":"queue","routing_key":"k.#","arguments":{}}]}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Security().DeleteUser("guest"); err != nil {
		t.Fatal(err)
	}
	d := s.ExportDefinitions()
	if len(d.Users) != 1 || len(d.Queues) != 1 || len(d.Bindings) != 1 || d.Queues[0].Arguments["x-max-length"] != int64(10) {
		t.Fatalf("export: users %v queues %v bindings %v", d.Users, d.Queues, d.Bindings)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Restarted on the same directory with the default guest in the
	// config: what the store holds wins.
	s2, u2 := servertest.StartServer(t, broker.Config{DataDir: dir})
	alice := asUser(t, u2, "alice", "p", "apps")
	ch := openChan(t, openConn(t, alice))
	if _, err := ch.QueueDeclarePassive("a-q", true, false, false, false, nil); err != nil {
		t.Fatalf("imported queue after restart: %v", err)
	}
	if err := ch.Publish("a-x", "k.1", false, false, amqp.Publishing{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	waitCount(t, openConn(t, alice), "a-q", 1)
	if _, err := amqp.Dial(u2); err == nil {
		t.Fatal("guest, deleted before the restart, logged in after it")
	}
	if _, ok := s2.Security().User("guest"); ok {
		t.Fatal("guest made again at restart")
	}
}

func mustDefs(t *testing.T, js string) *security.Definitions {
	t.Helper()
	d, err := security.ReadDefinitions(strings.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestSecurityLimits checks vhost max-connections and max-queues and user
// max-connections and max-channels with RabbitMQ's codes and texts, and
// that a closed connection's place is free again.
func TestSecurityLimits(t *testing.T) {
	base, admin := securedBroker(t)
	user, other := "lim-"+runID, "lim2-"+runID
	// vh limits queues, vhc connections: the connections of one subtest
	// may still be going, server-side, when the next starts.
	vh, vhc := "lim-v-"+runID, "lim-vc-"+runID
	admin.addVHost(t, vh)
	admin.addVHost(t, vhc)
	admin.addUser(t, user, "pw")
	admin.addUser(t, other, "pw")
	for _, v := range []string{vh, vhc} {
		admin.setPermissions(t, user, v, ".*", ".*", ".*")
		admin.setPermissions(t, other, v, ".*", ".*", ".*")
	}
	admin.setVHostLimits(t, vh, `{"max-queues": 2}`)
	admin.setVHostLimits(t, vhc, `{"max-connections": 2}`)
	admin.setUserLimits(t, user, `{"max-channels": 2}`)
	admin.setUserLimits(t, other, `{"max-connections": 1}`)
	uurl := asUser(t, base, user, "pw", vh)

	t.Run("user max-channels", func(t *testing.T) {
		c := openConn(t, uurl)
		openChan(t, c)
		ch := openChan(t, c)
		_, err := c.Channel()
		wantErr(t, err, 530, "NOT_ALLOWED - number of channels opened for user '"+user+"' has reached the maximum allowed user limit of (2)")
		_ = ch
	})
	t.Run("vhost max-queues", func(t *testing.T) {
		c := openConn(t, uurl)
		ch := openChan(t, c)
		for _, q := range []string{"q1", "q2"} {
			if _, err := ch.QueueDeclare(q, false, true, false, false, nil); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := ch.QueueDeclare("q1", false, true, false, false, nil); err != nil {
			t.Fatalf("redeclare at the limit: %v", err)
		}
		_, err := ch.QueueDeclare("q3", false, true, false, false, nil)
		wantErr(t, err, 406, "PRECONDITION_FAILED - cannot declare queue 'q3': queue limit in vhost '"+vh+"' (2) is reached")
	})
	t.Run("user max-connections", func(t *testing.T) {
		ourl := asUser(t, base, other, "pw", vh)
		c := openConn(t, ourl)
		rc, _ := rawHandshake(t, asUser(t, base, other, "pw", vh), rawOpts{vhost: vh, password: "pw", noOpen: true})
		rc.send(0, &wire.ConnectionOpen{VirtualHost: vh})
		rc.expectConnClose(530, "NOT_ALLOWED - connection refused for user '"+other+"': user connection limit (1) is reached")
		c.Close()
		waitDial(t, ourl)
	})
	t.Run("vhost max-connections", func(t *testing.T) {
		curl := asUser(t, base, user, "pw", vhc)
		c1 := openConn(t, curl)
		openConn(t, curl)
		rc, _ := rawHandshake(t, curl, rawOpts{vhost: vhc, password: "pw", noOpen: true})
		rc.send(0, &wire.ConnectionOpen{VirtualHost: vhc})
		rc.expectConnClose(530, "NOT_ALLOWED - access to vhost '"+vhc+"' refused for user '"+user+"': connection limit (2) is reached")
		c1.Close()
		waitDial(t, curl)
	})
}

// waitDial dials until a connection's place, freed by a close, is taken
// (the server counts the close when it has torn the connection down).
func waitDial(t *testing.T, u string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := amqp.Dial(u)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still refused after a close: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Deleting a vhost takes everything in it: its connections are closed
// with 320, and after a restart its durable queue, exchange and messages
// are gone, also when a vhost of the same name is made again.
func TestDeleteVHost(t *testing.T) {
	inProcessOnly(t, "deletes a vhost through the server's API")
	dir := t.TempDir()
	s, u := servertest.StartServer(t, broker.Config{DataDir: dir})
	vh := "dv"
	defs := `{"vhosts":[{"name":"dv"}],
		"permissions":[{"user":"guest","vhost":"dv","configure":".*","write":".*","read":".*"}],
		"queues":[{"name":"dq","vhost":"dv","durable":true,"auto_delete":false,"arguments":{}}],
		"exchanges":[{"name":"dx","vhost":"dv","type":"fanout","durable":true,"auto_delete":false,"internal":false,"arguments":{}}],
		"bindings":[{"source":"dx","vhost":"dv","destination":"dq","destination_type":"queue","routing_key":"","arguments":{}}]}`
	if err := s.ImportDefinitions(mustDefs(t, defs)); err != nil {
		t.Fatal(err)
	}
	vurl := asUser(t, u, "guest", "guest", vh)
	c := openConn(t, vurl)
	ch := openChan(t, c)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 10))
	for i := 0; i < 10; i++ {
		if err := ch.Publish("dx", "", false, false, amqp.Publishing{DeliveryMode: 2, Body: []byte("m")}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 10; i++ {
		select {
		case cf := <-confirms:
			if !cf.Ack {
				t.Fatal("nacked")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no confirm")
		}
	}
	closed := c.NotifyClose(make(chan *amqp.Error, 1))
	if err := s.DeleteVHost(vh); err != nil {
		t.Fatal(err)
	}
	wantClose(t, closed, 320, "CONNECTION_FORCED - vhost 'dv' is deleted")
	rc, _ := rawHandshake(t, vurl, rawOpts{vhost: vh, noOpen: true})
	rc.send(0, &wire.ConnectionOpen{VirtualHost: vh})
	rc.expectConnClose(530, "NOT_ALLOWED - vhost dv not found")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2, u2 := servertest.StartServer(t, broker.Config{DataDir: dir})
	if d := s2.ExportDefinitions(); len(d.Queues) != 0 || len(d.Exchanges) != 0 || len(d.Bindings) != 0 {
		t.Fatalf("left after the delete and a restart: %+v %+v %+v", d.Queues, d.Exchanges, d.Bindings)
	}
	if err := s2.ImportDefinitions(mustDefs(t, `{"vhosts":[{"name":"dv"}],
		"permissions":[{"user":"guest","vhost":"dv","configure":".*","write":".*","read":".*"}]}`)); err != nil {
		t.Fatal(err)
	}
	ch2 := openChan(t, openConn(t, asUser(t, u2, "guest", "guest", vh)))
	_, err := ch2.QueueDeclarePassive("dq", true, false, false, false, nil)
	wantErr(t, err, 404, "NOT_FOUND - no queue 'dq' in vhost 'dv'")
}

// A user without a password cannot log in by PLAIN or AMQPLAIN, with an
// empty password or any other (it may only by EXTERNAL).
func TestLoginWithoutPassword(t *testing.T) {
	inProcessOnly(t, "rabbitmqctl cannot make a user without a password")
	base, admin := securedBroker(t)
	admin.addUser(t, "cert-only", "")
	admin.setPermissions(t, "cert-only", "/", ".*", ".*", ".*")
	for _, tc := range []struct{ mechanism, response string }{
		{"PLAIN", "\x00cert-only\x00"},
		{"PLAIN", "\x00cert-only\x00x"},
		{"AMQPLAIN", string(wire.AppendTable(nil, wire.Table{"LOGIN": "cert-only", "PASSWORD": ""})[4:])},
	} {
		r := rawDial(t, base)
		r.write(wire.ProtocolHeader)
		r.readMethod()
		r.send(0, &wire.ConnectionStartOk{
			ClientProperties: wire.Table{"capabilities": wire.Table{"authentication_failure_close": true}},
			Mechanism:        tc.mechanism, Response: tc.response, Locale: "en_US"})
		r.expectConnClose(403, "ACCESS_REFUSED - Login was refused using authentication mechanism "+tc.mechanism+". For details see the broker logfile.")
	}
}

// A security change is refused, and not made, while the disk alarm holds
// durable definitions back (a Badger write on a full disk can kill the
// process), and goes ahead once it clears.
func TestSecurityChangeUnderDiskAlarm(t *testing.T) {
	inProcessOnly(t, "raises the in-process server's alarm")
	s, _ := servertest.StartServer(t, broker.Config{DataDir: t.TempDir()})
	s.SetAlarm(monitor.DiskReason, true)
	err := s.Security().AddUser("late", "pw")
	if err == nil || !strings.Contains(err.Error(), "definitions are not written while the disk alarm is raised") {
		t.Fatalf("AddUser under the disk alarm: %v", err)
	}
	if _, ok := s.Security().User("late"); ok {
		t.Fatal("the refused user was made")
	}
	s.SetAlarm(monitor.DiskReason, false)
	if err := s.Security().AddUser("late", "pw"); err != nil {
		t.Fatal(err)
	}
}
