// Package config is amqp-server's configuration: the settings, their
// defaults, and loading them from a YAML or JSON file, AMQP_<SECTION>_<KEY>
// environment variables and command-line flags, in that order of
// precedence, with errors that name where a bad value came from.
package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/amqp-go/amqp-go/server/tlsconf"
)

// Config is every setting of the server, by section. Field tags give each
// key's name, bounds and documentation; Keys lists them.
type Config struct {
	Network    Network    `key:"network"`
	Storage    Storage    `key:"storage"`
	Security   Security   `key:"security"`
	Server     Server     `key:"server"`
	Engine     Engine     `key:"engine"`
	Telemetry  Telemetry  `key:"telemetry"`
	Management Management `key:"management"`
	Cluster    Cluster    `key:"cluster"`
}

// Network is the AMQP listener and the connection parameters offered.
type Network struct {
	Address         string   `key:"address" doc:"listen address, host:port; an empty host (\":5672\") listens on every interface"`
	Port            int      `key:"port" min:"0" max:"65535" doc:"when not 0, replaces the port of address"`
	MaxConnections  int      `key:"maxconnections" min:"0" max:"1000000" doc:"most concurrent client connections; more are closed at accept (0: the open-file limit, RLIMIT_NOFILE, less a reserve for the store and HTTP listeners)"`
	MaxHandshakes   int      `key:"maxhandshakes" min:"1" max:"1000000" doc:"most connections still in the opening handshake at once; more are closed at accept"`
	MaxMessageSize  int      `key:"maxmessagesize" min:"1" max:"536870912" doc:"largest message body a client may publish, bytes (RabbitMQ's max_message_size); a larger one is refused with 406"`
	SendTimeout     Duration `key:"sendtimeout" min:"1ms" max:"1h" doc:"longest a write to a client may block (RabbitMQ's send_timeout); past it the socket is closed"`
	TCPKeepAlive    Duration `key:"tcpkeepalive" min:"0" doc:"TCP keepalive period of client sockets (0s: keepalive off)"`
	ReadBufferSize  int      `key:"readbuffersize" min:"4096" max:"67108864" doc:"bytes of each connection's read buffer"`
	WriteBufferSize int      `key:"writebuffersize" min:"0" max:"67108864" doc:"kernel send buffer (SO_SNDBUF) of each socket in bytes (0: the kernel's auto-tuned default)"`
	Heartbeat       int      `key:"heartbeat" min:"0" max:"65535" doc:"heartbeat interval offered in connection.tune, seconds (0: off)"`
	ChannelMax      int      `key:"channelmax" min:"1" max:"65535" doc:"highest channel number offered in connection.tune"`
	FrameMax        int      `key:"framemax" min:"4096" max:"16777216" doc:"largest frame offered in connection.tune, bytes"`
	TLSPort         int      `key:"tlsport" min:"0" max:"65535" doc:"port of the AMQPS listener on address's host (0: 5671 when security.tlscertfile is set); given without network.port, the server listens for TLS only"`
	Plain           bool     `key:"plain" doc:"listen for plain AMQP too when TLS is on (false: TLS only)"`
}

// Storage is where and how messages are kept.
type Storage struct {
	Backend                  string   `key:"backend" enum:"memory,badger" doc:"memory (nothing survives a restart) or badger (definitions in Badger, messages in the segment log under path)"`
	Path                     string   `key:"path" doc:"data directory; also where the disk free-space alarm measures"`
	Persistent               bool     `key:"persistent" doc:"keep persistent messages of durable queues across restarts (badger backend)"`
	Fsync                    string   `key:"fsync" enum:"always,batch,never" doc:"when the message log is fsynced before confirms: always (every write), batch (group commit), never (tests and benchmarks only)"`
	SegmentSize              int64    `key:"segmentsize" min:"1048576" max:"2147483648" doc:"bytes of a message-log segment before rolling to the next"`
	OffsetCheckpointInterval Duration `key:"offsetcheckpointinterval" min:"1ms" doc:"how often the delivered position (which logged messages may have reached a consumer, for the redelivered flag after a crash) is checkpointed"`
}

// Security holds TLS and authentication settings. A key tagged notyet is
// reserved for work not done: a non-empty value stops start-up.
type Security struct {
	// TLS is the AMQPS listener's (network.tlsport).
	TLS
	CertLoginFrom   string `key:"certloginfrom" enum:"distinguished_name,common_name" doc:"the user name an EXTERNAL login takes from the client certificate (RabbitMQ's ssl_cert_login_from): its subject DN in RabbitMQ's format, or its common name"`
	UsersFile       string `key:"usersfile" notyet:"true" doc:"file of users and password hashes (not supported yet: must be empty; use definitionsfile)"`
	DefaultUser     string `key:"defaultuser" doc:"user created on the first start only (an empty data directory), with defaultusertags and the defaultpermissions* on defaultvhost (RabbitMQ's default_user; empty: none); not created when definitionsfile is set"`
	DefaultPass     string `key:"defaultpass" doc:"defaultuser's password (RabbitMQ's default_pass)"`
	DefaultVHost    string `key:"defaultvhost" doc:"vhost created on the first start only (RabbitMQ's default_vhost)"`
	DefaultUserTags string `key:"defaultusertags" doc:"comma-separated tags of defaultuser (RabbitMQ's default_user_tags; empty: none)"`
	// The defaultuser's permissions on defaultvhost (RabbitMQ's
	// default_permissions.configure, .write and .read).
	DefaultPermissionsConfigure string `key:"defaultpermissionsconfigure" doc:"defaultuser's configure pattern on defaultvhost (RabbitMQ's default_permissions.configure; empty: nothing)"`
	DefaultPermissionsWrite     string `key:"defaultpermissionswrite" doc:"defaultuser's write pattern on defaultvhost (RabbitMQ's default_permissions.write; empty: nothing)"`
	DefaultPermissionsRead      string `key:"defaultpermissionsread" doc:"defaultuser's read pattern on defaultvhost (RabbitMQ's default_permissions.read; empty: nothing)"`
	LoopbackUsers               string `key:"loopbackusers" doc:"comma-separated users who may log in only over loopback (RabbitMQ's loopback_users); none: nobody"`
	DefinitionsFile             string `key:"definitionsfile" doc:"RabbitMQ definitions JSON (rabbitmqctl export_definitions) imported at every start: users, vhosts, permissions, topic permissions, vhost limits, exchanges, queues, bindings, policies and operator policies (applied)"`
}

// Server is the process: logging, pidfile, daemon mode and resource alarms.
type Server struct {
	LogLevel              string   `key:"loglevel" enum:"debug,info,warn,error" doc:"least severe log level written"`
	LogFormat             string   `key:"logformat" enum:"text,json" doc:"log line format"`
	LogFile               string   `key:"logfile" doc:"log file, reopened on SIGHUP (empty: stderr)"`
	PIDFile               string   `key:"pidfile" doc:"write the process id here and lock it; removed at exit (empty: none)"`
	Daemonize             bool     `key:"daemonize" doc:"detach into the background with its own session (needs pidfile)"`
	MemoryLimitPercent    int      `key:"memorylimitpercent" min:"0" max:"100" doc:"memory alarm when the process's resident memory passes this percentage of the machine's or the cgroup's memory (0: off)"`
	MemoryLimitBytes      int64    `key:"memorylimitbytes" min:"0" doc:"absolute memory alarm threshold in bytes; overrides memorylimitpercent when not 0"`
	GCPercent             int      `key:"gcpercent" min:"10" max:"10000" doc:"the Go garbage collector's GOGC: heap growth in percent over the live heap before a collection (the GOGC variable, when set, wins); higher trades memory for fewer collections and a lower tail latency, still bounded by the memory alarm's threshold"`
	DiskFreeLimit         int64    `key:"diskfreelimit" min:"0" doc:"disk alarm when free space under storage.path falls below this many bytes (0: off)"`
	ResourceCheckInterval Duration `key:"resourcecheckinterval" min:"10ms" max:"1m" doc:"how often memory and disk are measured"`
	ShutdownTimeout       Duration `key:"shutdowntimeout" min:"1s" max:"1h" doc:"longest a graceful shutdown may take before the process exits 1"`
}

// Engine tunes the durable message engine.
type Engine struct {
	RingBufferSize  int      `key:"ringbuffersize" min:"16" max:"16777216" doc:"ready messages per durable queue kept in memory; older ones are read back from the log"`
	RingBufferBytes int64    `key:"ringbufferbytes" min:"1048576" max:"1099511627776" doc:"bytes of ready persistent messages all durable queues together keep in memory; past it new ones are read back from the log"`
	WALBatchSize    int      `key:"walbatchsize" min:"4096" max:"268435456" doc:"most bytes in one group-commit write to the message log"`
	WALBatchTimeout Duration `key:"walbatchtimeout" min:"0" max:"1s" doc:"longest a write waits for others to join its group commit (0s: none)"`
	ConsumerTimeout Duration `key:"consumertimeout" min:"0" doc:"longest a delivery may stay unacknowledged before its channel is closed with 406 (RabbitMQ's consumer_timeout; 0s: off); a queue's or a consumer's x-consumer-timeout argument overrides it"`
}

// Management is RabbitMQ's management HTTP API (served by
// server/management), on by default as RabbitMQ's plugin usually is.
type Management struct {
	Enabled bool   `key:"enabled" doc:"serve RabbitMQ's management HTTP API (HTTP basic auth against the broker's users)"`
	Address string `key:"address" doc:"host or IP the management API binds to (empty: the AMQP listener's host)"`
	Port    int    `key:"port" min:"0" max:"65535" doc:"management API port (0: any free port, logged at start)"`
	// TLS makes the API HTTPS (RabbitMQ's management.ssl.*).
	TLS
}

// Cluster is the node's place in a cluster (server/cluster): off while
// peers is empty. See docs/clustering.md.
type Cluster struct {
	Name     string `key:"name" doc:"the cluster's name; a node of another cluster is refused at the inter-node handshake"`
	NodeName string `key:"nodename" doc:"this node's name, unique in the cluster, such as amqp1 (needed when peers is set); its Raft id is derived from it (see docs/clustering.md)"`
	Address  string `key:"address" doc:"host:port of the inter-node listener (RabbitMQ's distribution port is 25672)"`
	Peers    string `key:"peers" doc:"the initial members as name=host:port,... (this node may be among them; empty: no cluster, a single node); with join, the current members"`
	Join     bool   `key:"join" doc:"start as a node that joins a running cluster: no initial members, wait until a member adds it (ctl cluster join); peers names the current members, not this node"`
	// The inter-node connections' TLS: mutual, each node presenting its
	// certificate and verifying its peer's against the CA bundle.
	TLSCertFile string `key:"tlscertfile" doc:"PEM certificate chain of this node for the inter-node connections, allowing TLS server and client authentication; with tlskeyfile and tlscafile it turns inter-node TLS on (every member must have it on; reloaded on SIGHUP)"`
	TLSKeyFile  string `key:"tlskeyfile" doc:"PEM private key of tlscertfile (reloaded on SIGHUP)"`
	TLSCAFile   string `key:"tlscafile" doc:"PEM CA bundle that peers' certificates are verified against, required with inter-node TLS (reloaded on SIGHUP)"`
}

// TLS is the inter-node connections' TLS settings (cluster.tls*): a
// certificate is always asked for and verified, at TLS 1.3 (both ends are
// this server).
func (c Cluster) TLS() tlsconf.Settings {
	return tlsconf.Settings{CertFile: c.TLSCertFile, KeyFile: c.TLSKeyFile, CAFile: c.TLSCAFile,
		VerifyPeer: c.TLSCAFile != "", FailIfNoPeerCert: c.TLSCAFile != "", MinVersion: "1.3"}
}

// TLS is one listener's TLS keys. The sections with a listener (security
// for AMQPS, telemetry, management) embed it, so each has the same keys
// with the same meaning and checks; with tlscertfile and tlskeyfile set,
// that listener speaks TLS.
type TLS struct {
	TLSCertFile         string `key:"tlscertfile" doc:"PEM certificate chain (the server's first) of this section's listener; with tlskeyfile it turns TLS on (reloaded on SIGHUP)"`
	TLSKeyFile          string `key:"tlskeyfile" doc:"PEM private key of tlscertfile (reloaded on SIGHUP)"`
	TLSCAFile           string `key:"tlscafile" doc:"PEM CA bundle that client certificates are verified against (empty: the system's roots; reloaded on SIGHUP)"`
	TLSVerifyPeer       bool   `key:"tlsverifypeer" doc:"ask TLS clients for a certificate and verify one that is given (RabbitMQ's ssl_options.verify = verify_peer); on AMQPS a verified certificate may log in by EXTERNAL"`
	TLSFailIfNoPeerCert bool   `key:"tlsfailifnopeercert" doc:"refuse a TLS handshake without a valid client certificate (RabbitMQ's ssl_options.fail_if_no_peer_cert); implies tlsverifypeer"`
	TLSMinVersion       string `key:"tlsminversion" enum:"1.2,1.3" doc:"oldest TLS version accepted"`
	TLSCiphers          string `key:"tlsciphers" doc:"comma-separated TLS 1.2 cipher suites by Go's names, in no particular order (empty: Go's defaults; TLS 1.3's suites are not configurable)"`
}

// Settings is t as tlsconf takes it.
func (t TLS) Settings() tlsconf.Settings {
	return tlsconf.Settings{CertFile: t.TLSCertFile, KeyFile: t.TLSKeyFile, CAFile: t.TLSCAFile,
		VerifyPeer: t.TLSVerifyPeer, FailIfNoPeerCert: t.TLSFailIfNoPeerCert, MinVersion: t.TLSMinVersion, Ciphers: t.TLSCiphers}
}

// tlsDefaults is every section's TLS before configuration.
var tlsDefaults = TLS{TLSMinVersion: "1.2"}

// Telemetry is the HTTP endpoint with /metrics, /health and, when asked
// for, /debug/pprof/. Its TLS keys mean what security's do.
type Telemetry struct {
	Enabled bool   `key:"enabled" doc:"serve telemetry over HTTP"`
	Address string `key:"address" doc:"host or IP the telemetry endpoint binds to (a warning is logged when it is not loopback)"`
	Port    int    `key:"port" min:"0" max:"65535" doc:"telemetry port"`
	Pprof   bool   `key:"pprof" doc:"serve Go's pprof handlers under /debug/pprof/ too"`
	// TLS makes the endpoint HTTPS.
	TLS
}

// DefaultUserTagList is security.defaultusertags as a list.
func (s Security) DefaultUserTagList() []string { return commaList(s.DefaultUserTags) }

// LoopbackUserList is security.loopbackusers as a list (none: empty, not
// nil).
func (s Security) LoopbackUserList() []string {
	if strings.TrimSpace(s.LoopbackUsers) == "none" {
		return []string{}
	}
	return commaList(s.LoopbackUsers)
}

// commaList splits a comma-separated key into its non-empty items,
// trimmed (empty, not nil, for none).
func commaList(v string) []string {
	out := []string{}
	for _, u := range strings.Split(v, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// Duration is a time.Duration written as Go duration text ("250ms", "1m").
type Duration time.Duration

// String formats d as Go duration text.
func (d Duration) String() string { return time.Duration(d).String() }

// Defaults returns the built-in configuration: what runs with no file.
func Defaults() Config {
	return Config{
		Network: Network{
			Address: ":5672", TCPKeepAlive: Duration(15 * time.Second), ReadBufferSize: 64 << 10,
			Heartbeat: 60, ChannelMax: 2047, FrameMax: 131072,
			MaxHandshakes: 1000, MaxMessageSize: 128 << 20, SendTimeout: Duration(15 * time.Second),
			Plain: true,
		},
		Storage: Storage{
			Backend: "badger", Path: "./data", Persistent: true, Fsync: "batch",
			SegmentSize: 64 << 20, OffsetCheckpointInterval: Duration(time.Second),
		},
		Server: Server{
			LogLevel: "info", LogFormat: "text", MemoryLimitPercent: 40, GCPercent: 100, DiskFreeLimit: 50 << 20,
			ResourceCheckInterval: Duration(time.Second), ShutdownTimeout: Duration(30 * time.Second),
		},
		Engine: Engine{
			RingBufferSize: 16384, RingBufferBytes: 256 << 20, WALBatchSize: 4 << 20, WALBatchTimeout: 0,
			ConsumerTimeout: Duration(30 * time.Minute),
		},
		Security: Security{TLS: tlsDefaults, CertLoginFrom: "distinguished_name",
			DefaultUser: "guest", DefaultPass: "guest", DefaultVHost: "/", DefaultUserTags: "administrator",
			DefaultPermissionsConfigure: ".*", DefaultPermissionsWrite: ".*", DefaultPermissionsRead: ".*", LoopbackUsers: "guest"},
		Telemetry:  Telemetry{Address: "127.0.0.1", Port: 9419, TLS: tlsDefaults},
		Management: Management{Enabled: true, Port: 15672, TLS: tlsDefaults},
		Cluster:    Cluster{Name: "amqp-go", Address: ":25672"},
	}
}

// Key describes one setting.
type Key struct {
	Section string // "network"
	Name    string // "port"
	Doc     string
	Type    string // "string", "integer", "boolean" or "duration"
	Enum    []string
	Min     string // bounds as written in the tag ("" if none)
	Max     string
	// NotYet marks a key reserved for work not done: any value but the
	// empty default stops start-up.
	NotYet bool

	index []int
}

// Path is "section.key".
func (k Key) Path() string { return k.Section + "." + k.Name }

// Env is the environment variable that overrides the key.
func (k Key) Env() string { return "AMQP_" + strings.ToUpper(k.Section+"_"+k.Name) }

// Flag is the command-line flag that overrides the key.
func (k Key) Flag() string { return k.Section + "-" + k.Name }

// Allowed describes the values the key accepts.
func (k Key) Allowed() string {
	switch {
	case len(k.Enum) > 0:
		return "one of " + strings.Join(k.Enum, ", ")
	case k.Type == "boolean":
		return "true or false"
	}
	var b strings.Builder
	switch k.Type {
	case "integer":
		b.WriteString("an integer")
	case "duration":
		b.WriteString(`a duration such as "500ms", "30s" or "2m"`)
	default:
		return "a string"
	}
	switch {
	case k.Min != "" && k.Max != "":
		fmt.Fprintf(&b, " from %s to %s", k.Min, k.Max)
	case k.Min != "":
		fmt.Fprintf(&b, " of at least %s", k.Min)
	}
	return b.String()
}

// Default is the key's built-in value as text.
func (k Key) Default() string {
	d := Defaults()
	return k.Get(&d)
}

// Get returns the key's value in c as text.
func (k Key) Get(c *Config) string {
	v := reflect.ValueOf(c).Elem().FieldByIndex(k.index)
	switch x := v.Interface().(type) {
	case Duration:
		return x.String()
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	default:
		return strconv.FormatInt(v.Int(), 10)
	}
}

func (k Key) field(c *Config) reflect.Value {
	return reflect.ValueOf(c).Elem().FieldByIndex(k.index)
}

var keys = buildKeys()

var durationType = reflect.TypeFor[Duration]()

func buildKeys() []Key {
	var out []Key
	ct := reflect.TypeFor[Config]()
	for i := range ct.NumField() {
		sf := ct.Field(i)
		var fields []reflect.StructField // a section's keys, an embedded struct's (TLS) in its place
		for j := range sf.Type.NumField() {
			kf := sf.Type.Field(j)
			kf.Index = []int{i, j}
			if !kf.Anonymous {
				fields = append(fields, kf)
				continue
			}
			for n := range kf.Type.NumField() {
				ef := kf.Type.Field(n)
				ef.Index = []int{i, j, n}
				fields = append(fields, ef)
			}
		}
		for _, kf := range fields {
			k := Key{Section: sf.Tag.Get("key"), Name: kf.Tag.Get("key"), Doc: kf.Tag.Get("doc"),
				Min: kf.Tag.Get("min"), Max: kf.Tag.Get("max"), NotYet: kf.Tag.Get("notyet") == "true", index: kf.Index}
			if e := kf.Tag.Get("enum"); e != "" {
				k.Enum = strings.Split(e, ",")
			}
			switch {
			case kf.Type == durationType:
				k.Type = "duration"
			case kf.Type.Kind() == reflect.String:
				k.Type = "string"
			case kf.Type.Kind() == reflect.Bool:
				k.Type = "boolean"
			default:
				k.Type = "integer"
			}
			out = append(out, k)
		}
	}
	return out
}

// Keys lists every setting in file order.
func Keys() []Key { return append([]Key(nil), keys...) }

// Sections lists the section names in file order.
func Sections() []string {
	var out []string
	for _, k := range keys {
		if len(out) == 0 || out[len(out)-1] != k.Section {
			out = append(out, k.Section)
		}
	}
	return out
}

func lookup(section, name string) (Key, bool) {
	for _, k := range keys {
		if k.Section == section && k.Name == name {
			return k, true
		}
	}
	return Key{}, false
}

func sectionKnown(section string) bool {
	for _, k := range keys {
		if k.Section == section {
			return true
		}
	}
	return false
}

func keyNames(section string) string {
	var names []string
	for _, k := range keys {
		if k.Section == section {
			names = append(names, k.Name)
		}
	}
	return strings.Join(names, ", ")
}
