package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/amqp-go/amqp-go/server/tlsconf"
	"gopkg.in/yaml.v3"
)

// Error is a setting that stops start-up: where it came from (file and
// line, environment variable or flag), the key, the value given, what is
// wrong and what is allowed.
type Error struct {
	Source  string // "amqp.yaml:12", "AMQP_NETWORK_PORT", "--network-port"
	Key     string // "network.port"; a section name for an unknown section
	Value   string // the value as given ("" for unknown keys)
	Reason  string // "out of range", "wrong type", "unknown key", ...
	Allowed string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source + ": ")
	}
	b.WriteString(e.Key + ": " + e.Reason)
	if e.Value != "" {
		b.WriteString(": " + e.Value)
	}
	if e.Allowed != "" {
		b.WriteString(" (allowed: " + e.Allowed + ")")
	}
	return b.String()
}

// Loader builds a Config from the defaults, a file, the environment and
// flags, applied in that order; later sources override earlier ones.
type Loader struct {
	cfg Config
	src map[string]string // key path -> where its value came from
}

// NewLoader starts from the defaults.
func NewLoader() *Loader { return &Loader{cfg: Defaults(), src: map[string]string{}} }

// Load is the usual sequence: defaults, then path (if not empty), then the
// AMQP_* variables of environ, then validation.
func Load(path string, environ []string) (Config, error) {
	l := NewLoader()
	if path != "" {
		if err := l.LoadFile(path); err != nil {
			return Config{}, err
		}
	}
	if err := l.LoadEnv(environ); err != nil {
		return Config{}, err
	}
	return l.Config()
}

// LoadFile merges a YAML (.yaml, .yml) or JSON (.json) file over the
// current settings; keys it does not mention keep their values.
func (l *Loader) LoadFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	return l.LoadBytes(path, data)
}

// LoadBytes is LoadFile for data already read; name's extension picks the
// format and name appears in errors.
func (l *Loader) LoadBytes(name string, data []byte) error {
	switch ext := strings.ToLower(filepath.Ext(name)); ext {
	case ".yaml", ".yml":
	case ".json":
		// JSON is YAML too, which gives line numbers; but a .json file
		// must be valid JSON.
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			return fmt.Errorf("%s: not valid JSON: %v", name, err)
		}
	default:
		return &Error{Source: name, Key: "config file", Reason: "unknown extension", Value: strconv.Quote(ext),
			Allowed: ".yaml, .yml or .json"}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: not valid YAML: %v", name, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil // empty file: all defaults
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	at := func(n *yaml.Node) string { return fmt.Sprintf("%s:%d", name, n.Line) }
	if root.Kind != yaml.MappingNode {
		return &Error{Source: at(root), Key: "top level", Reason: "not a mapping of sections",
			Allowed: "sections " + strings.Join(Sections(), ", ")}
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		kn, vn := root.Content[i], root.Content[i+1]
		section := kn.Value
		if !sectionKnown(section) {
			return &Error{Source: at(kn), Key: section, Reason: "unknown section",
				Allowed: strings.Join(Sections(), ", ")}
		}
		if seen[section] {
			return &Error{Source: at(kn), Key: section, Reason: "section given twice"}
		}
		seen[section] = true
		if vn.Kind == yaml.ScalarNode && vn.Tag == "!!null" {
			continue
		}
		if vn.Kind != yaml.MappingNode {
			return &Error{Source: at(vn), Key: section, Reason: "not a mapping of keys", Allowed: keyNames(section)}
		}
		for j := 0; j+1 < len(vn.Content); j += 2 {
			kk, kv := vn.Content[j], vn.Content[j+1]
			k, ok := lookup(section, kk.Value)
			if !ok {
				return &Error{Source: at(kk), Key: section + "." + kk.Value, Reason: "unknown key",
					Allowed: "keys of " + section + ": " + keyNames(section)}
			}
			if seen[k.Path()] {
				return &Error{Source: at(kk), Key: k.Path(), Reason: "key given twice"}
			}
			seen[k.Path()] = true
			if err := l.setNode(at(kv), k, kv); err != nil {
				return err
			}
		}
	}
	return nil
}

// setNode applies one YAML value, which must have the key's type.
func (l *Loader) setNode(src string, k Key, n *yaml.Node) error {
	shown := n.Value
	if n.Tag == "!!str" {
		shown = strconv.Quote(n.Value)
	}
	wrong := &Error{Source: src, Key: k.Path(), Reason: "wrong type", Value: shown, Allowed: k.Allowed()}
	if n.Kind != yaml.ScalarNode {
		wrong.Value = "a " + map[yaml.Kind]string{yaml.MappingNode: "mapping", yaml.SequenceNode: "list"}[n.Kind]
		return wrong
	}
	want := map[string]string{"string": "!!str", "duration": "!!str", "integer": "!!int", "boolean": "!!bool"}[k.Type]
	if n.Tag != want {
		return wrong
	}
	return l.set(src, k, n.Value, shown)
}

// LoadEnv applies AMQP_<SECTION>_<KEY> variables from environ (os.Environ
// form). Variables of other sections (such as AMQP_PPROF_ADDRESS) and empty
// values are ignored; an unknown key in a known section is an error.
// Underscores inside the key are ignored: AMQP_ENGINE_WAL_BATCH_SIZE is
// AMQP_ENGINE_WALBATCHSIZE.
func (l *Loader) LoadEnv(environ []string) error {
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, "AMQP_") || value == "" {
			continue
		}
		section, key, ok := strings.Cut(strings.ToLower(strings.TrimPrefix(name, "AMQP_")), "_")
		if !ok || !sectionKnown(section) {
			continue
		}
		key = strings.ReplaceAll(key, "_", "")
		k, ok := lookup(section, key)
		if !ok {
			return &Error{Source: name, Key: section + "." + key, Reason: "unknown key",
				Allowed: "keys of " + section + ": " + keyNames(section)}
		}
		if err := l.set(name, k, value, strconv.Quote(value)); err != nil {
			return err
		}
	}
	return nil
}

// Set applies a value given as text (a flag); source names it in errors.
func (l *Loader) Set(source, path, value string) error {
	section, name, _ := strings.Cut(path, ".")
	k, ok := lookup(section, name)
	if !ok {
		return &Error{Source: source, Key: path, Reason: "unknown key"}
	}
	return l.set(source, k, value, strconv.Quote(value))
}

// set parses text for k, checks it and stores it.
func (l *Loader) set(src string, k Key, text, shown string) error {
	bad := func(reason string) error {
		return &Error{Source: src, Key: k.Path(), Reason: reason, Value: shown, Allowed: k.Allowed()}
	}
	f := k.field(&l.cfg)
	switch k.Type {
	case "string":
		if len(k.Enum) > 0 && !contains(k.Enum, text) {
			return bad("not one of the choices")
		}
		if err := checkString(k, text); err != "" {
			return &Error{Source: src, Key: k.Path(), Reason: err, Value: shown, Allowed: stringAllowed(k)}
		}
		f.SetString(text)
	case "boolean":
		b, err := strconv.ParseBool(text)
		if err != nil {
			return bad("wrong type")
		}
		f.SetBool(b)
	case "integer":
		n, err := strconv.ParseInt(strings.ReplaceAll(text, "_", ""), 0, 64)
		if err != nil {
			return bad("wrong type")
		}
		if !inRange(float64(n), k, func(s string) float64 { v, _ := strconv.ParseInt(s, 0, 64); return float64(v) }) {
			return bad("out of range")
		}
		f.SetInt(n)
	case "duration":
		d, err := time.ParseDuration(text)
		if err != nil {
			return bad("wrong type")
		}
		if !inRange(float64(d), k, func(s string) float64 { v, _ := time.ParseDuration(s); return float64(v) }) {
			return bad("out of range")
		}
		f.SetInt(int64(d))
	}
	l.src[k.Path()] = src
	return nil
}

func inRange(v float64, k Key, parse func(string) float64) bool {
	lo, hi := math.Inf(-1), math.Inf(1)
	if k.Min != "" {
		lo = parse(k.Min)
	}
	if k.Max != "" {
		hi = parse(k.Max)
	}
	return v >= lo && v <= hi
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// checkString validates the string keys with a format.
func checkString(k Key, s string) string {
	switch k.Path() {
	case "network.address":
		_, port, err := net.SplitHostPort(s)
		if err != nil {
			return "not host:port"
		}
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			return "not host:port"
		}
	case "telemetry.address":
		if s == "" || strings.Contains(strings.Trim(s, "[]"), ":") && net.ParseIP(strings.Trim(s, "[]")) == nil {
			return "not a host"
		}
	case "storage.path":
		if s == "" {
			return "empty"
		}
	case "cluster.address":
		if _, err := splitHostPort(s); err != nil {
			return "not host:port"
		}
	case "cluster.name":
		if s == "" || len(s) > 255 {
			return "empty or longer than 255 bytes"
		}
	case "cluster.nodename":
		if why := checkNodeName(s); s != "" && why != "" {
			return why
		}
	case "cluster.peers":
		if _, err := ParsePeers(s); err != nil {
			return err.Error()
		}
	}
	return ""
}

func stringAllowed(k Key) string {
	switch k.Path() {
	case "network.address":
		return `host:port, such as ":5672" or "127.0.0.1:5672"`
	case "telemetry.address":
		return `a host name or IP address without a port, such as "127.0.0.1" or "0.0.0.0"`
	case "storage.path":
		return "a directory"
	case "cluster.address":
		return `host:port, such as ":25672" or "10.0.0.1:25672"`
	case "cluster.name":
		return "a name of 1 to 255 bytes"
	case "cluster.nodename":
		return nodeNameAllowed
	case "cluster.peers":
		return peersAllowed
	}
	return k.Allowed()
}

// Source reports where the key's current value came from: a file and line,
// a variable, a flag, or "default".
func (l *Loader) Source(path string) string {
	if s, ok := l.src[path]; ok {
		return s
	}
	return "default"
}

// Config checks the settings together and returns them.
func (l *Loader) Config() (Config, error) {
	c := l.cfg
	for _, k := range keys {
		if k.NotYet && k.Get(&c) != k.Default() {
			return Config{}, &Error{Source: l.Source(k.Path()), Key: k.Path(), Reason: "not supported yet",
				Value: strconv.Quote(k.Get(&c)), Allowed: "empty: this setting arrives with later security work"}
		}
	}
	if err := l.checkTLS(&c); err != nil {
		return Config{}, err
	}
	if err := l.checkDefaults(&c); err != nil {
		return Config{}, err
	}
	if err := l.checkCluster(&c); err != nil {
		return Config{}, err
	}
	if c.Server.Daemonize && c.Server.PIDFile == "" {
		return Config{}, &Error{Source: l.Source("server.daemonize"), Key: "server.daemonize", Reason: "needs server.pidfile",
			Value: "true", Allowed: "true only with server.pidfile set"}
	}
	return c, nil
}

// ListenAddress is network.address with its port replaced by network.port
// when that is not 0.
func (c Config) ListenAddress() string {
	if c.Network.Port == 0 {
		return c.Network.Address
	}
	host, _, err := net.SplitHostPort(c.Network.Address)
	if err != nil {
		return c.Network.Address
	}
	return net.JoinHostPort(host, strconv.Itoa(c.Network.Port))
}

// TLSListenAddress is the host of network.address with network.tlsport,
// the AMQPS listener's address ("" when TLS is off).
func (c Config) TLSListenAddress() string {
	if !c.AMQPTLS().Enabled() {
		return ""
	}
	host, _, err := net.SplitHostPort(c.Network.Address)
	if err != nil {
		return ""
	}
	return net.JoinHostPort(host, strconv.Itoa(c.Network.TLSPort))
}

// AMQPTLS is the AMQPS listener's TLS settings (security.tls*).
func (c Config) AMQPTLS() tlsconf.Settings { return c.Security.TLS.Settings() }

// TelemetryTLS is the telemetry endpoint's TLS settings (telemetry.tls*).
func (c Config) TelemetryTLS() tlsconf.Settings { return c.Telemetry.TLS.Settings() }

// ManagementTLS is the management API's TLS settings (management.tls*).
func (c Config) ManagementTLS() tlsconf.Settings { return c.Management.TLS.Settings() }

// ManagementAddress is the host:port the management API binds: its own
// address, or the AMQP listener's host (empty: every interface).
func (c Config) ManagementAddress() string {
	host := c.Management.Address
	if host == "" {
		host, _, _ = net.SplitHostPort(c.ListenAddress())
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(c.Management.Port))
}

// TelemetryAddress is the host:port the telemetry endpoint binds.
func (c Config) TelemetryAddress() string {
	return net.JoinHostPort(strings.Trim(c.Telemetry.Address, "[]"), strconv.Itoa(c.Telemetry.Port))
}

// Generate renders c as a complete configuration file: commented YAML, or
// JSON when format is "json".
func Generate(c Config, format string) []byte {
	var b bytes.Buffer
	if format == "json" {
		b.WriteString("{\n")
		for si, s := range Sections() {
			fmt.Fprintf(&b, "  %q: {\n", s)
			ks := sectionKeys(s)
			for i, k := range ks {
				fmt.Fprintf(&b, "    %q: %s", k.Name, jsonValue(k, &c))
				if i < len(ks)-1 {
					b.WriteByte(',')
				}
				b.WriteByte('\n')
			}
			b.WriteString("  }")
			if si < len(Sections())-1 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString("}\n")
		return b.Bytes()
	}
	b.WriteString("# AMQP-Go Server configuration. Every key is optional: a key left out keeps\n")
	b.WriteString("# its default. The variable AMQP_<SECTION>_<KEY> overrides a key (for example\n")
	b.WriteString("# AMQP_NETWORK_PORT), and the flag --<section>-<key> overrides both.\n")
	for _, s := range Sections() {
		fmt.Fprintf(&b, "\n%s:\n", s)
		for _, k := range sectionKeys(s) {
			fmt.Fprintf(&b, "  # %s (%s)\n  %s: %s\n", k.Doc, k.Allowed(), k.Name, yamlValue(k, &c))
		}
	}
	return b.Bytes()
}

// GenerateFile writes Generate's output to path, as JSON for a .json path
// and YAML otherwise. It refuses to overwrite an existing file.
func GenerateFile(path string, c Config) error {
	format := "yaml"
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		format = "json"
	case ".yaml", ".yml":
	default:
		return &Error{Source: path, Key: "config file", Reason: "unknown extension",
			Value: strconv.Quote(filepath.Ext(path)), Allowed: ".yaml, .yml or .json"}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(Generate(c, format)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func sectionKeys(s string) []Key {
	var out []Key
	for _, k := range keys {
		if k.Section == s {
			out = append(out, k)
		}
	}
	return out
}

func yamlValue(k Key, c *Config) string {
	v := k.Get(c)
	if k.Type == "string" || k.Type == "duration" {
		return strconv.Quote(v)
	}
	return v
}

func jsonValue(k Key, c *Config) string {
	f := k.field(c)
	var v any
	switch k.Type {
	case "string", "duration":
		v = k.Get(c)
	default:
		v = f.Interface()
	}
	out, _ := json.Marshal(v)
	return string(out)
}
