package broker

import "fmt"

// DeleteVHost deletes vhost name with everything in it, as rabbitmqctl
// delete_vhost does: its permissions, limits and policies (the security
// store, stored first), its connections (closed with 320
// CONNECTION_FORCED - vhost 'v' is deleted), its exchanges and its queues
// with their bindings and messages (durable ones leave the definitions
// store and release their messages in the log).
//
// Locking: takes s.mu and s.tally.mu briefly, one after the other, and
// then deletes through Apply, holding no lock of its own.
func (s *Server) DeleteVHost(name string) error {
	if err := s.sec.DeleteVHost(name); err != nil {
		return err
	}
	// In a cluster, every member (this one too) has already carried the
	// deletion out on applying it (securityReplaced), and this finds
	// nothing left.
	return s.dropVHost(name)
}

// dropVHost deletes what vhost name holds in the broker, the security
// store having let go of it: see DeleteVHost.
func (s *Server) dropVHost(name string) error {
	s.mu.Lock()
	v := s.vhosts[name]
	delete(s.vhosts, name)
	s.mu.Unlock()
	if v == nil {
		return nil
	}
	s.tally.mu.Lock()
	var conns []*conn
	for c, e := range s.tally.conns {
		if e.vhost == name {
			conns = append(conns, c)
		}
	}
	s.tally.mu.Unlock()
	text := fmt.Sprintf("CONNECTION_FORCED - vhost '%s' is deleted", name)
	for _, c := range conns {
		c.forceCloseWith(text)
	}
	v.defsMu.Lock()
	var xs []*Exchange
	for xname, x := range v.exchanges {
		if xname != "" && !reservedName(xname) {
			xs = append(xs, x)
		}
	}
	qs := make([]*Queue, 0, len(v.queues))
	for _, q := range v.queues {
		qs = append(qs, q)
	}
	v.defsMu.Unlock()
	var first error
	for _, x := range xs {
		if _, err := v.Apply(DefChange{Kind: ExchangeDelete, Exchange: x.Name}, onlyExchange(x)); err != nil && first == nil {
			first = err
		}
	}
	for _, q := range qs {
		if _, err := v.deleteQueue(q, nil); err != nil && first == nil {
			first = err
		}
	}
	return first
}
