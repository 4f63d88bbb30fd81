package config

import (
	"reflect"
	"testing"
)

// The security section's user keys: defaults as RabbitMQ's, loopbackusers
// as a list with none for nobody, and no "not supported yet" for them.
func TestSecurityUserKeys(t *testing.T) {
	d := Defaults().Security
	if d.DefaultUser != "guest" || d.DefaultPass != "guest" || !reflect.DeepEqual(d.LoopbackUserList(), []string{"guest"}) {
		t.Fatalf("defaults %+v", d)
	}
	for _, tc := range []struct {
		value string
		want  []string
	}{{"none", []string{}}, {"", []string{}}, {" a, b ,,c", []string{"a", "b", "c"}}} {
		if got := (Security{LoopbackUsers: tc.value}).LoopbackUserList(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.value, got, tc.want)
		}
	}
	c, err := Load(writeFile(t, "s.yaml", "security:\n  defaultuser: admin\n  defaultpass: s3cret\n  loopbackusers: none\n  definitionsfile: /etc/amqp/defs.json\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Security; s.DefaultUser != "admin" || s.DefaultPass != "s3cret" || len(s.LoopbackUserList()) != 0 || s.DefinitionsFile != "/etc/amqp/defs.json" {
		t.Fatalf("loaded %+v", s)
	}
}
