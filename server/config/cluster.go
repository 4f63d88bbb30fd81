package config

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// Member is one member of the cluster.
type Member struct {
	Name    string // cluster.nodename on that node
	Address string // host:port of its inter-node listener
	ID      uint64 // its Raft id, NodeID(Name)
}

// NodeID is the Raft id of the node named name: the first 8 bytes of the
// name's SHA-256, big endian, with 0 (Raft's "none") taken as 1. Every
// node derives every other's id from the same names, so ids need no
// configuration of their own and stay the same across restarts.
func NodeID(name string) uint64 {
	sum := sha256.Sum256([]byte(name))
	return max(binary.BigEndian.Uint64(sum[:8]), 1)
}

const (
	nodeNameAllowed = "1 to 255 letters, digits and . _ - @ such as amqp1 or rabbit@host1"
	peersAllowed    = "name=host:port pairs separated by commas, each name once, such as amqp1=10.0.0.1:25672,amqp2=10.0.0.2:25672"
)

// checkNodeName says what is wrong with a node name, or "".
func checkNodeName(s string) string {
	if s == "" || len(s) > 255 {
		return "empty or longer than 255 bytes"
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-@", r)) {
			return fmt.Sprintf("the character %q is not allowed in a node name", r)
		}
	}
	return ""
}

// splitHostPort checks a host:port and returns the port.
func splitHostPort(s string) (int, error) {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return 0, fmt.Errorf("bad port %q", port)
	}
	return p, nil
}

// ParsePeers parses cluster.peers: name=host:port,... in the order given.
func ParsePeers(s string) ([]Member, error) {
	var out []Member
	ids := map[uint64]string{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, addr, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not name=host:port", item)
		}
		if why := checkNodeName(name); why != "" {
			return nil, fmt.Errorf("node name %q: %s", name, why)
		}
		if p, err := splitHostPort(addr); err != nil || p == 0 {
			return nil, fmt.Errorf("node %s: address %q is not host:port with a port", name, addr)
		}
		id := NodeID(name)
		if other, dup := ids[id]; dup {
			if other == name {
				return nil, fmt.Errorf("node %s is given twice", name)
			}
			return nil, fmt.Errorf("nodes %s and %s have the same id (rename one)", other, name)
		}
		ids[id] = name
		out = append(out, Member{Name: name, Address: addr, ID: id})
	}
	return out, nil
}

// Enabled reports whether the node is in a cluster (cluster.peers set).
func (c Cluster) Enabled() bool { return strings.TrimSpace(c.Peers) != "" }

// Members returns the initial members, this node among them (with
// cluster.address when peers leaves it out), sorted by name; with join,
// the members it joins (this node not among them). It assumes a Config
// that passed validation.
func (c Cluster) Members() []Member {
	ms, _ := ParsePeers(c.Peers)
	if !c.Join && !slices.ContainsFunc(ms, func(m Member) bool { return m.Name == c.NodeName }) {
		ms = append(ms, Member{Name: c.NodeName, Address: c.Address, ID: NodeID(c.NodeName)})
	}
	slices.SortFunc(ms, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return ms
}

// checkCluster checks the cluster keys together.
func (l *Loader) checkCluster(c *Config) error {
	cl := c.Cluster
	if !cl.Enabled() {
		return nil
	}
	if cl.NodeName == "" {
		return &Error{Source: l.Source("cluster.nodename"), Key: "cluster.nodename", Reason: "missing: cluster.peers is set",
			Value: `""`, Allowed: nodeNameAllowed}
	}
	ms, err := ParsePeers(cl.Peers)
	if err != nil {
		return err // the key's own check reports it; not reached
	}
	self := NodeID(cl.NodeName)
	for _, m := range ms {
		if cl.Join && m.Name == cl.NodeName {
			return &Error{Source: l.Source("cluster.peers"), Key: "cluster.peers", Reason: "names this node, which joins (cluster.join): name the current members only",
				Value: strconv.Quote(cl.Peers), Allowed: peersAllowed}
		}
		if m.ID == self && m.Name != cl.NodeName {
			return &Error{Source: l.Source("cluster.nodename"), Key: "cluster.nodename", Reason: "has the same id as peer " + m.Name,
				Value: strconv.Quote(cl.NodeName), Allowed: "another name"}
		}
	}
	if len(ms) == 0 {
		return &Error{Source: l.Source("cluster.peers"), Key: "cluster.peers", Reason: "no members",
			Value: strconv.Quote(cl.Peers), Allowed: peersAllowed}
	}
	return nil
}
