package config

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGenerateRoundTripsToDefaults(t *testing.T) {
	for _, name := range []string{"amqp.yaml", "amqp.yml", "amqp.json"} {
		p := filepath.Join(t.TempDir(), name)
		if err := GenerateFile(p, Defaults()); err != nil {
			t.Fatal(err)
		}
		got, err := Load(p, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, Defaults()) {
			t.Errorf("%s: parsed %+v, want the defaults %+v", name, got, Defaults())
		}
		if err := GenerateFile(p, Defaults()); err == nil {
			t.Errorf("%s: GenerateFile overwrote an existing file", name)
		}
	}
}

// The sample is the generated file, so it documents exactly the keys the
// code knows, each with a comment.
func TestSampleHasExactlyTheKnownKeys(t *testing.T) {
	b, err := os.ReadFile("../../config.sample.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(Generate(Defaults(), "yaml")) {
		t.Errorf("config.sample.yaml differs from generate-config output; regenerate it with: go run ./server/cmd/amqp-server generate-config config.sample.yaml")
	}
	var doc map[string]map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var inSample, inCode []string
	for s, ks := range doc {
		for k := range ks {
			inSample = append(inSample, s+"."+k)
		}
	}
	for _, k := range Keys() {
		inCode = append(inCode, k.Path())
		if k.Doc == "" {
			t.Errorf("%s has no documentation", k.Path())
		}
		if !strings.Contains(string(b), "# "+k.Doc) {
			t.Errorf("the sample has no comment for %s", k.Path())
		}
	}
	sort.Strings(inSample)
	sort.Strings(inCode)
	if !reflect.DeepEqual(inSample, inCode) {
		t.Errorf("sample keys %v\ncode keys %v", inSample, inCode)
	}
}

func TestPartialFileMergesOverDefaults(t *testing.T) {
	p := writeFile(t, "min.yaml", "network:\n  port: 5673\n")
	c, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	want.Network.Port = 5673
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v, want %+v", c, want)
	}
	if c.ListenAddress() != ":5673" {
		t.Errorf("ListenAddress %q, want :5673", c.ListenAddress())
	}
}

func TestJSONFile(t *testing.T) {
	p := writeFile(t, "c.json", `{"network": {"address": "127.0.0.1:1234", "heartbeat": 7}, "server": {"daemonize": false, "loglevel": "debug"}, "engine": {"walbatchtimeout": "2ms"}}`)
	c, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Network.Address != "127.0.0.1:1234" || c.Network.Heartbeat != 7 || c.Server.LogLevel != "debug" || c.Engine.WALBatchTimeout.String() != "2ms" {
		t.Errorf("got %+v", c)
	}
}

// Precedence: defaults, then the file, then the environment, then flags
// (Loader.Set, which the command line uses).
func TestPrecedence(t *testing.T) {
	p := writeFile(t, "c.yaml", "network:\n  port: 1111\n  heartbeat: 11\n  channelmax: 111\nserver:\n  loglevel: warn\n")
	l := NewLoader()
	if err := l.LoadFile(p); err != nil {
		t.Fatal(err)
	}
	if err := l.LoadEnv([]string{"AMQP_NETWORK_PORT=2222", "AMQP_NETWORK_HEARTBEAT=22"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Set("--network-port", "network.port", "3333"); err != nil {
		t.Fatal(err)
	}
	c, err := l.Config()
	if err != nil {
		t.Fatal(err)
	}
	if c.Network.Port != 3333 || c.Network.Heartbeat != 22 || c.Network.ChannelMax != 111 || c.Server.LogLevel != "warn" || c.Network.FrameMax != 131072 {
		t.Errorf("port %d (flag 3333), heartbeat %d (env 22), channelmax %d (file 111), loglevel %s (file warn), framemax %d (default 131072)",
			c.Network.Port, c.Network.Heartbeat, c.Network.ChannelMax, c.Server.LogLevel, c.Network.FrameMax)
	}
	for key, want := range map[string]string{"network.port": "--network-port", "network.heartbeat": "AMQP_NETWORK_HEARTBEAT",
		"network.channelmax": p + ":4", "network.framemax": "default"} {
		if got := l.Source(key); got != want {
			t.Errorf("Source(%s) = %q, want %q", key, got, want)
		}
	}
}

// altValue is a valid value for k that differs from its default.
func altValue(k Key) string {
	switch k.Path() {
	case "network.address":
		return "127.0.0.1:6000"
	case "telemetry.address":
		return "0.0.0.0"
	case "cluster.address":
		return "127.0.0.1:26000"
	case "cluster.nodename":
		return "amqp3"
	case "cluster.peers":
		return "amqp1=127.0.0.1:26001,amqp2=127.0.0.1:26002"
	}
	if needsTLS(k) {
		return "" // tls_test.go sets these, with certificates to load
	}
	def := k.Default()
	switch {
	case len(k.Enum) > 0:
		for _, e := range k.Enum {
			if e != def {
				return e
			}
		}
	case k.Type == "boolean":
		return strconv.FormatBool(def != "true")
	case k.Type == "duration":
		if def == "1s" {
			return "2s"
		}
		if k.Path() == "engine.walbatchtimeout" {
			return "5ms"
		}
		return "1m0s"
	case k.Type == "integer":
		n, _ := strconv.ParseInt(def, 10, 64)
		lo, _ := strconv.ParseInt(k.Min, 10, 64)
		if n > lo {
			return strconv.FormatInt(n-1, 10)
		}
		return strconv.FormatInt(n+1, 10)
	case k.Type == "string":
		return "x/" + k.Name
	}
	return def
}

// Every key has an environment override, with or without a file.
func TestEnvOverridesEveryKey(t *testing.T) {
	var env []string
	want := map[string]string{}
	for _, k := range Keys() {
		v := altValue(k)
		if v == "" || v == k.Default() {
			continue
		}
		env = append(env, k.Env()+"="+v)
		want[k.Path()] = v
	}
	if len(want) < len(Keys())-tlsKeys()-4 {
		t.Fatalf("only %d of %d keys covered", len(want), len(Keys()))
	}
	for _, file := range []string{"", writeFile(t, "c.yaml", "network:\n  port: 9\n")} {
		c, err := Load(file, env)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range Keys() {
			if w, ok := want[k.Path()]; ok && k.Get(&c) != w {
				t.Errorf("file %q: %s = %q, want %q from %s", file, k.Path(), k.Get(&c), w, k.Env())
			}
		}
	}
	// Underscores inside the key are ignored; other sections are not ours.
	c, err := Load("", []string{"AMQP_ENGINE_WAL_BATCH_SIZE=8192", "AMQP_PPROF_ADDRESS=:6060", "AMQP_NETWORK_PORT="})
	if err != nil || c.Engine.WALBatchSize != 8192 || c.Network.Port != 0 {
		t.Errorf("got %d, %v", c.Engine.WALBatchSize, err)
	}
}

// Every key can be set from a file, reaching the Config struct the server
// and the store are built from.
func TestFileSetsEveryKey(t *testing.T) {
	var b strings.Builder
	want := map[string]string{}
	section := ""
	for _, k := range Keys() {
		v := altValue(k)
		if v == "" || v == k.Default() {
			continue
		}
		if k.Section != section {
			section = k.Section
			b.WriteString(section + ":\n")
		}
		if k.Type == "string" || k.Type == "duration" {
			b.WriteString("  " + k.Name + ": " + strconv.Quote(v) + "\n")
		} else {
			b.WriteString("  " + k.Name + ": " + v + "\n")
		}
		want[k.Path()] = v
	}
	c, err := Load(writeFile(t, "all.yaml", b.String()), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		if w, ok := want[k.Path()]; ok && k.Get(&c) != w {
			t.Errorf("%s = %q, want %q", k.Path(), k.Get(&c), w)
		}
	}
	// The storage and engine keys as the store will receive them.
	if c.Storage.Backend != "memory" || c.Storage.Path != "x/path" || c.Storage.Persistent || c.Storage.Fsync != "always" ||
		c.Storage.SegmentSize != 64<<20-1 || c.Storage.OffsetCheckpointInterval.String() != "2s" ||
		c.Engine.RingBufferSize != 16383 || c.Engine.WALBatchSize != 4<<20-1 || c.Engine.WALBatchTimeout.String() != "5ms" {
		t.Errorf("storage %+v engine %+v", c.Storage, c.Engine)
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file, body string
		env              []string
		want             string
	}{
		{"unknown key", "c.yaml", "network:\n  prot: 1\n", nil,
			"c.yaml:2: network.prot: unknown key (allowed: keys of network: address, port, maxconnections, maxhandshakes, maxmessagesize, sendtimeout, tcpkeepalive, readbuffersize, writebuffersize, heartbeat, channelmax, framemax, tlsport, plain)"},
		{"unknown section", "c.yaml", "netwrk:\n  port: 1\n", nil,
			"c.yaml:1: netwrk: unknown section (allowed: network, storage, security, server, engine, telemetry, management, cluster)"},
		{"wrong type", "c.yaml", "server:\n  daemonize: \"yes\"\n", nil,
			`c.yaml:2: server.daemonize: wrong type: "yes" (allowed: true or false)`},
		{"string given a number", "c.yaml", "network:\n  address: 5672\n", nil,
			`c.yaml:2: network.address: wrong type: 5672 (allowed: a string)`},
		{"out of range", "c.yaml", "network:\n  port: 70000\n", nil,
			"c.yaml:2: network.port: out of range: 70000 (allowed: an integer from 0 to 65535)"},
		{"duration out of range", "c.yaml", "engine:\n  walbatchtimeout: 2s\n", nil,
			`c.yaml:2: engine.walbatchtimeout: out of range: "2s" (allowed: a duration such as "500ms", "30s" or "2m" from 0 to 1s)`},
		{"not a choice", "c.yaml", "storage:\n  backend: rocks\n", nil,
			`c.yaml:2: storage.backend: not one of the choices: "rocks" (allowed: one of memory, badger)`},
		{"bad address", "c.json", `{"network": {"address": "localhost"}}`, nil,
			`c.json:1: network.address: not host:port: "localhost" (allowed: host:port, such as ":5672" or "127.0.0.1:5672")`},
		{"a list", "c.yaml", "network:\n  port: [1, 2]\n", nil,
			"c.yaml:2: network.port: wrong type: a list (allowed: an integer from 0 to 65535)"},
		{"twice", "c.yaml", "network:\n  port: 1\n  port: 2\n", nil, "c.yaml:3: network.port: key given twice"},
		{"extension", "c.toml", "x = 1", nil, `c.toml: config file: unknown extension: ".toml" (allowed: .yaml, .yml or .json)`},
		{"invalid JSON", "c.json", `{"network": }`, nil, "c.json: not valid JSON: invalid character '}' looking for beginning of value"},
		{"env wrong type", "", "", []string{"AMQP_NETWORK_PORT=abc"},
			`AMQP_NETWORK_PORT: network.port: wrong type: "abc" (allowed: an integer from 0 to 65535)`},
		{"env out of range", "", "", []string{"AMQP_SERVER_MEMORYLIMITPERCENT=101"},
			`AMQP_SERVER_MEMORYLIMITPERCENT: server.memorylimitpercent: out of range: "101" (allowed: an integer from 0 to 100)`},
		{"env unknown key", "", "", []string{"AMQP_STORAGE_PAHT=/x"},
			"AMQP_STORAGE_PAHT: storage.paht: unknown key (allowed: keys of storage: backend, path, persistent, fsync, segmentsize, offsetcheckpointinterval)"},
		{"security key", "c.yaml", "security:\n  tlscertfile: /etc/cert.pem\n", nil,
			`c.yaml:2: security.tlskeyfile: missing: security.tlscertfile is set (allowed: a PEM private key file)`},
		{"security env", "", "", []string{"AMQP_SECURITY_USERSFILE=/etc/users"},
			`AMQP_SECURITY_USERSFILE: security.usersfile: not supported yet: "/etc/users" (allowed: empty: this setting arrives with later security work)`},
		{"daemonize without pidfile", "c.yaml", "server:\n  daemonize: true\n", nil,
			"c.yaml:2: server.daemonize: needs server.pidfile: true (allowed: true only with server.pidfile set)"},
		{"peers without nodename", "c.yaml", "cluster:\n  peers: a=10.0.0.1:25672\n", nil,
			`default: cluster.nodename: missing: cluster.peers is set: "" (allowed: 1 to 255 letters, digits and . _ - @ such as amqp1 or rabbit@host1)`},
		{"peer without address", "c.yaml", "cluster:\n  peers: a=10.0.0.1:25672,b\n", nil,
			`c.yaml:2: cluster.peers: "b" is not name=host:port: "a=10.0.0.1:25672,b" (allowed: name=host:port pairs separated by commas, each name once, such as amqp1=10.0.0.1:25672,amqp2=10.0.0.2:25672)`},
		{"peer given twice", "", "", []string{"AMQP_CLUSTER_PEERS=a=10.0.0.1:1,b=10.0.0.2:1,a=10.0.0.3:1"},
			`AMQP_CLUSTER_PEERS: cluster.peers: node a is given twice: "a=10.0.0.1:1,b=10.0.0.2:1,a=10.0.0.3:1" (allowed: name=host:port pairs separated by commas, each name once, such as amqp1=10.0.0.1:25672,amqp2=10.0.0.2:25672)`},
		{"join naming itself", "", "", []string{"AMQP_CLUSTER_NODENAME=a", "AMQP_CLUSTER_JOIN=true", "AMQP_CLUSTER_PEERS=a=10.0.0.1:1,b=10.0.0.2:1"},
			`AMQP_CLUSTER_PEERS: cluster.peers: names this node, which joins (cluster.join): name the current members only: "a=10.0.0.1:1,b=10.0.0.2:1" (allowed: name=host:port pairs separated by commas, each name once, such as amqp1=10.0.0.1:25672,amqp2=10.0.0.2:25672)`},
		{"peer port 0", "", "", []string{"AMQP_CLUSTER_PEERS=a=10.0.0.1:0"},
			`AMQP_CLUSTER_PEERS: cluster.peers: node a: address "10.0.0.1:0" is not host:port with a port: "a=10.0.0.1:0" (allowed: name=host:port pairs separated by commas, each name once, such as amqp1=10.0.0.1:25672,amqp2=10.0.0.2:25672)`},
		{"bad node name", "c.yaml", "cluster:\n  nodename: a b\n", nil,
			`c.yaml:2: cluster.nodename: the character ' ' is not allowed in a node name: "a b" (allowed: 1 to 255 letters, digits and . _ - @ such as amqp1 or rabbit@host1)`},
		{"bad cluster address", "c.yaml", "cluster:\n  address: host1\n", nil,
			`c.yaml:2: cluster.address: not host:port: "host1" (allowed: host:port, such as ":25672" or "10.0.0.1:25672")`},
		{"empty cluster name", "c.yaml", "cluster:\n  name: \"\"\n", nil,
			`c.yaml:2: cluster.name: empty or longer than 255 bytes: "" (allowed: a name of 1 to 255 bytes)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.file != "" {
				dir := t.TempDir()
				path = filepath.Join(dir, tc.file)
				if err := os.WriteFile(path, []byte(tc.body), 0o644); err != nil {
					t.Fatal(err)
				}
				t.Chdir(dir)
				path = tc.file
			}
			_, err := Load(path, tc.env)
			if err == nil || err.Error() != tc.want {
				t.Errorf("got  %v\nwant %s", err, tc.want)
			}
		})
	}
	l := NewLoader()
	if err := l.Set("--network-heartbeat", "network.heartbeat", "-1"); err == nil ||
		err.Error() != `--network-heartbeat: network.heartbeat: out of range: "-1" (allowed: an integer from 0 to 65535)` {
		t.Errorf("flag error: %v", err)
	}
}

// The members are the peers and this node, each with the id derived from
// its name; ids are stable (a change would strand every existing log).
func TestClusterMembers(t *testing.T) {
	c, err := Load("", []string{"AMQP_CLUSTER_NODENAME=amqp2", "AMQP_CLUSTER_ADDRESS=10.0.0.2:25672",
		"AMQP_CLUSTER_PEERS=amqp3=10.0.0.3:25672, amqp1=10.0.0.1:25672"})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Cluster.Enabled() || Defaults().Cluster.Enabled() {
		t.Error("Enabled is not peers being set")
	}
	ms := c.Cluster.Members()
	if len(ms) != 3 || ms[0].Name != "amqp1" || ms[1] != (Member{"amqp2", "10.0.0.2:25672", NodeID("amqp2")}) || ms[2].Address != "10.0.0.3:25672" {
		t.Errorf("members %+v", ms)
	}
	if id := NodeID("amqp1"); id != 0xbc0c7148db45bfe3 {
		t.Errorf("NodeID(amqp1) = %#x", id)
	}
	if NodeID("amqp1") == NodeID("amqp2") {
		t.Error("two names, one id")
	}
}

func TestEmptyFileIsDefaults(t *testing.T) {
	for _, body := range []string{"", "# nothing\n", "network:\n"} {
		c, err := Load(writeFile(t, "e.yaml", body), nil)
		if err != nil || !reflect.DeepEqual(c, Defaults()) {
			t.Errorf("%q: %+v, %v", body, c, err)
		}
	}
}

// The README documents every key and its variable form.
func TestReadmeDocumentsEveryKey(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		if !strings.Contains(string(b), "| `"+k.Path()+"` |") {
			t.Errorf("README.md does not document %s", k.Path())
		}
	}
}
