package security

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// Hashes RabbitMQ 3.10.8 wrote (rabbitmqctl add_user, then
// export_definitions) and ones made with openssl from a known salt.
func TestPasswordHashes(t *testing.T) {
	for _, tc := range []struct {
		name, alg, hash, password string
		want                      bool
	}{
		{"rabbitmq sha256 guest", HashSHA256, "knUTvXBSzJY2wuzezKL2Y+jObnFymtDEz2FgB9pdvptzJVcO", "guest", true},
		{"rabbitmq sha256 user", HashSHA256, "8jVoCkPvq4wEAN2EIpq2z9mgW8ifrmmRmXL7+BxTPB/NQyBh", "p", true},
		{"rabbitmq sha256 wrong password", HashSHA256, "8jVoCkPvq4wEAN2EIpq2z9mgW8ifrmmRmXL7+BxTPB/NQyBh", "q", false},
		{"rabbitmq sha256 empty password", HashSHA256, "8jVoCkPvq4wEAN2EIpq2z9mgW8ifrmmRmXL7+BxTPB/NQyBh", "", false},
		{"default algorithm is sha256", "", "knUTvXBSzJY2wuzezKL2Y+jObnFymtDEz2FgB9pdvptzJVcO", "guest", true},
		{"sha256 hash read as md5", HashMD5, "knUTvXBSzJY2wuzezKL2Y+jObnFymtDEz2FgB9pdvptzJVcO", "guest", false},
		{"openssl sha512", HashSHA512, "AQIDBFEKgg91QUjXOoEuIijrYjDJqmh1G3gQJEpEZS2FiDEOS23JGoN2eht5cR6qAC4KAE7kqph8wGA/9reOn6y+bcw=", "pw", true},
		{"openssl md5", HashMD5, "AQIDBJR91gt1SAWTmvD+VzA7MFU=", "pw", true},
		{"openssl md5 wrong", HashMD5, "AQIDBJR91gt1SAWTmvD+VzA7MFU=", "pW", false},
		{"no password", HashSHA256, "", "", false},
		{"not base64", HashSHA256, "***", "x", false},
		{"too short", HashSHA256, "AQI=", "x", false},
		{"unknown algorithm", "rabbit_password_hashing_sha1", "AQIDBJR91gt1SAWTmvD+VzA7MFU=", "pw", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := passwordMatches(tc.alg, tc.hash, tc.password); got != tc.want {
				t.Fatalf("passwordMatches = %v, want %v", got, tc.want)
			}
		})
	}
	for _, alg := range []string{HashSHA256, HashSHA512, HashMD5} {
		h, err := HashPassword(alg, "pässwörd")
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckHash(alg, h); err != nil {
			t.Fatalf("%s: own hash refused: %v", alg, err)
		}
		if !passwordMatches(alg, h, "pässwörd") || passwordMatches(alg, h, "password") {
			t.Fatalf("%s: own hash does not check", alg)
		}
	}
	if h, _ := HashPassword(HashSHA256, "x"); len(h) != 48 {
		t.Fatalf("sha256 hash is %d characters, RabbitMQ's are 48", len(h))
	}
	if err := CheckHash(HashSHA256, "AQIDBJR91gt1SAWTmvD+VzA7MFU="); err == nil {
		t.Fatal("an md5-sized hash passed as sha256")
	}
}

func newTestStore(t *testing.T) *Store {
	t.Helper()
	s := NewStore()
	must(t, s.PutVHost(VHost{Name: "/"}))
	must(t, s.PutVHost(VHost{Name: "v"}))
	must(t, s.AddUser("u", "p"))
	must(t, s.AddUser("nopass", ""))
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestPermissionMatching(t *testing.T) {
	s := newTestStore(t)
	must(t, s.SetPermissions(Permission{User: "u", VHost: "/", Configure: "^q", Write: "x", Read: ""}))
	must(t, s.SetPermissions(Permission{User: "u", VHost: "v", Configure: "(?<!x)", Write: ".*", Read: ".*"}))
	for _, tc := range []struct {
		vhost string
		a     Access
		name  string
		want  bool
	}{
		{"/", Configure, "q1", true},
		{"/", Configure, "aq", false},      // anchored by the pattern itself
		{"/", Write, "amq.default", false}, // unanchored, but no x in it
		{"/", Write, "box", true},          // unanchored: x anywhere
		{"/", Read, "anything", false},     // "" matches nothing
		{"/", Read, "", true},              // "" is ^$, as RabbitMQ has it
		{"v", Configure, "q", false},       // a pattern Go cannot compile denies
		{"v", Write, "amq.default", true},
		{"other", Read, "q", false}, // no entry for the vhost
	} {
		if got := s.Permitted("u", tc.vhost, tc.a, tc.name); got != tc.want {
			t.Errorf("Permitted(u, %s, %s, %q) = %v, want %v", tc.vhost, tc.a, tc.name, got, tc.want)
		}
	}
	if !s.CanAccessVHost("u", "/") || s.CanAccessVHost("u", "other") || s.CanAccessVHost("nopass", "/") {
		t.Error("CanAccessVHost wrong")
	}
	if _, ok := s.Authenticate("nopass", ""); ok {
		t.Error("a user without a password logged in by password")
	}
	if _, ok := s.Authenticate("u", "p"); !ok {
		t.Error("u/p refused")
	}
	if _, ok := s.User("nopass"); !ok {
		t.Error("User does not find a user without a password")
	}
	gen := s.Generation()
	must(t, s.ClearPermissions("u", "/"))
	if s.Generation() == gen || s.Permitted("u", "/", Configure, "q1") {
		t.Error("clearing permissions did not take effect or keep the generation")
	}
	if err := s.SetPermissions(Permission{User: "ghost", VHost: "/"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("permissions for a missing user: %v", err)
	}
	must(t, s.DeleteUser("u"))
	if s.CanAccessVHost("u", "v") {
		t.Error("a deleted user's permissions stayed")
	}
}

func TestTopicPermissions(t *testing.T) {
	s := newTestStore(t)
	must(t, s.SetTopicPermissions(TopicPermission{User: "u", VHost: "v", Exchange: "t", Write: "^{username}\\.{vhost}\\.", Read: "^r"}))
	for _, tc := range []struct {
		exchange string
		a        Access
		key      string
		want     bool
	}{
		{"t", Write, "u.v.x", true},
		{"t", Write, "w.v.x", false},
		{"t", Write, "{username}.{vhost}.x", false},
		{"t", Read, "r.1", true},
		{"t", Read, "x.r", false},
		{"t", Configure, "r", false},
		{"other", Write, "anything", true}, // none defined: allowed
	} {
		if got := s.TopicPermitted("u", "v", tc.exchange, tc.a, tc.key); got != tc.want {
			t.Errorf("TopicPermitted(%s, %s, %q) = %v, want %v", tc.exchange, tc.a, tc.key, got, tc.want)
		}
	}
	if !s.TopicPermitted("u", "/", "t", Write, "x") {
		t.Error("topic permissions of another vhost applied")
	}
	must(t, s.ClearTopicPermissions("u", "v", "t"))
	if s.HasTopicPermissions("u", "v", "t") {
		t.Error("cleared topic permission stayed")
	}
}

func TestLimits(t *testing.T) {
	s := newTestStore(t)
	must(t, s.SetVHostLimit("v", LimitMaxQueues, 2))
	must(t, s.SetUserLimit("u", LimitMaxChannels, 0))
	if err := s.SetVHostLimit("v", LimitMaxChannels, 1); err == nil {
		t.Error("max-channels accepted as a vhost limit")
	}
	v, _ := s.VHost("v")
	if n, ok := Limit(v.Limits, LimitMaxQueues); !ok || n != 2 {
		t.Errorf("max-queues = %d, %v", n, ok)
	}
	u, _ := s.User("u")
	if n, ok := Limit(u.Limits, LimitMaxChannels); !ok || n != 0 {
		t.Errorf("max-channels = %d, %v", n, ok)
	}
	must(t, s.SetVHostLimit("v", LimitMaxQueues, -1))
	v, _ = s.VHost("v")
	if _, ok := Limit(v.Limits, LimitMaxQueues); ok {
		t.Error("a cleared limit stayed")
	}
}

// RabbitMQ 3.10.8's export imports with its passwords, tags, limits and
// permissions, and exports again as it came in.
func TestImportRabbitMQExport(t *testing.T) {
	f, err := os.Open("testdata/rabbitmq-3.10.8-export.json")
	must(t, err)
	defer f.Close()
	d, err := ReadDefinitions(f)
	must(t, err)
	s := NewStore()
	must(t, s.Import(d))
	u, ok := s.Authenticate("sec10u", "p")
	if !ok || !u.HasTag(TagImpersonator) || !u.HasTag(TagMonitoring) {
		t.Fatalf("sec10u: %+v, %v", u, ok)
	}
	if n, _ := Limit(u.Limits, LimitMaxChannels); n != 4 {
		t.Errorf("max-channels %d", n)
	}
	v, _ := s.VHost("sec10v")
	if n, _ := Limit(v.Limits, LimitMaxConnections); n != 5 {
		t.Errorf("vhost max-connections %d", n)
	}
	if vv, _ := s.VHost("/"); vv.Description != "Default virtual host" {
		t.Errorf("description %q", vv.Description)
	}
	if !s.Permitted("sec10u", "sec10v", Configure, "q1") || s.Permitted("sec10u", "sec10v", Read, "q1") {
		t.Error("permissions")
	}
	if !s.TopicPermitted("sec10u", "sec10v", "amq.topic", Write, "sec10u.x") || s.TopicPermitted("sec10u", "sec10v", "amq.topic", Write, "x") {
		t.Error("topic permissions")
	}
	var out bytes.Buffer
	must(t, WriteDefinitions(&out, s.Export()))
	d2, err := ReadDefinitions(&out)
	must(t, err)
	s2 := NewStore()
	must(t, s2.Import(d2))
	if a, b := s.Export(), s2.Export(); !equalJSON(t, a, b) {
		t.Error("export, import, export changed the definitions")
	}
}

func equalJSON(t *testing.T, a, b *Definitions) bool {
	var x, y bytes.Buffer
	must(t, WriteDefinitions(&x, a))
	must(t, WriteDefinitions(&y, b))
	return x.String() == y.String()
}

func TestImportRefusesBadEntries(t *testing.T) {
	for _, tc := range []struct{ name, json string }{
		{"bad hash", `{"users":[{"name":"a","password_hash":"AQI=","hashing_algorithm":"rabbit_password_hashing_sha256","tags":[]}]}`},
		{"unknown algorithm", `{"users":[{"name":"a","password_hash":"AQIDBJR91gt1SAWTmvD+VzA7MFU=","hashing_algorithm":"sha1","tags":[]}]}`},
		{"permission for missing vhost", `{"users":[{"name":"a","password_hash":"","tags":""}],"permissions":[{"user":"a","vhost":"nope","configure":"","write":"","read":""}]}`},
		{"tags not strings", `{"users":[{"name":"a","tags":[1]}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ReadDefinitions(bytes.NewReader([]byte(tc.json)))
			s := NewStore()
			if err == nil {
				err = s.Import(d)
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if !s.Empty() {
				t.Fatal("a refused import left entries behind")
			}
		})
	}
}

// A change the persister refuses is not made; a stored one reaches it
// whole.
func TestPersister(t *testing.T) {
	s := newTestStore(t)
	var saved *Definitions
	fail := errors.New("disk says no")
	s.SetPersister(func(d *Definitions) error {
		if len(d.Users) > 2 {
			return fail
		}
		saved = d
		return nil
	})
	if err := s.AddUser("third", "x"); !errors.Is(err, fail) {
		t.Fatalf("AddUser: %v", err)
	}
	if _, ok := s.User("third"); ok {
		t.Fatal("a change the persister refused was made")
	}
	must(t, s.SetPermissions(Permission{User: "u", VHost: "v", Configure: ".*"}))
	if saved == nil || len(saved.Permissions) != 1 || saved.Permissions[0].Configure != ".*" {
		t.Fatalf("persisted %+v", saved)
	}
	l := NewStore()
	must(t, l.Load(saved))
	if !l.Permitted("u", "v", Configure, "q") {
		t.Fatal("Load lost the permission")
	}
}
