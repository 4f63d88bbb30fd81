package management

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/amqp-go/amqp-go/server/cluster"
)

// nodeItems are the nodes /api/nodes lists: this one first, with every
// field, then the other members with name, type and running, and for
// those it reaches their own alarms, mem_alarm and disk_free_alarm, as
// they stated them to the cluster (RabbitMQ reports a member it cannot
// reach with running false and little else).
func (h *Handler) nodeItems(rq *request) ([]item, error) {
	if h.members == nil {
		return []item{h.nodeItem()}, nil
	}
	st, err := h.members(rq.r.Context())
	if err != nil {
		return nil, &apiError{http.StatusServiceUnavailable, "cluster_unavailable", err.Error()}
	}
	items := []item{h.nodeItem()}
	for _, m := range st.Members {
		switch {
		case m.Self:
		case m.Reachable:
			a := h.srv.MemberAlarms(m.ID)
			items = append(items, item{"name": m.Name, "type": "disc", "running": true, "mem_alarm": a.Memory, "disk_free_alarm": a.Disk})
		default:
			items = append(items, item{"name": m.Name, "type": "disc", "running": false})
		}
	}
	return items, nil
}

// clusterStatus is GET /api/cluster-status (ours, not RabbitMQ's): the
// members as this node sees them and the metadata group's leader and
// term. A single node answers 404, as it is in no cluster.
func (h *Handler) clusterStatus(rq *request) error {
	if h.members == nil {
		return &apiError{http.StatusNotFound, "Object Not Found", "not in a cluster (cluster.peers is empty)"}
	}
	st, err := h.members(rq.r.Context())
	if err != nil {
		return &apiError{http.StatusServiceUnavailable, "cluster_unavailable", err.Error()}
	}
	writeJSON(rq.w, st)
	return nil
}

// membershipTimeout bounds how long a membership change waits to be
// applied: a few elections.
const membershipTimeout = 15 * time.Second

// clusterMembers is /api/cluster-members (ours, not RabbitMQ's),
// administrators only: POST {"name", "address"} adds a node started with
// cluster.join (ctl cluster join), DELETE /api/cluster-members/{name}
// removes a member (ctl cluster leave and forget-node). Both answer 204
// once this node has applied the change.
func (h *Handler) clusterMembers(rq *request) error {
	if h.changes == nil {
		return &apiError{http.StatusNotFound, "Object Not Found", "not in a cluster (cluster.peers is empty)"}
	}
	if err := needAdmin(rq); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(rq.r.Context(), membershipTimeout)
	defer cancel()
	var err error
	switch {
	case len(rq.seg) == 1 && rq.r.Method == http.MethodPost:
		m, berr := rq.body()
		if berr != nil {
			return berr
		}
		f := fields{m: m}
		name, addr := f.string("name", ""), f.string("address", "")
		if f.err != nil {
			return f.err
		}
		if name == "" || addr == "" {
			return errBadRequest("name and address are needed")
		}
		err = h.changes.AddMember(ctx, name, addr)
	case len(rq.seg) == 2 && rq.r.Method == http.MethodDelete:
		err = h.changes.RemoveMember(ctx, rq.seg[1])
	case len(rq.seg) == 1:
		return methodNotAllowed(rq, "POST, OPTIONS")
	case len(rq.seg) == 2:
		return methodNotAllowed(rq, "DELETE, OPTIONS")
	default:
		return errNotFound()
	}
	switch {
	case err == nil:
		rq.w.WriteHeader(http.StatusNoContent)
		return nil
	case errors.Is(err, cluster.ErrNoMember):
		return &apiError{http.StatusNotFound, "Object Not Found", err.Error()}
	case errors.Is(err, cluster.ErrMemberExists), errors.Is(err, cluster.ErrChangePending), errors.Is(err, cluster.ErrLastMember):
		return &apiError{http.StatusConflict, "conflict", err.Error()}
	default:
		return &apiError{http.StatusServiceUnavailable, "cluster_unavailable", err.Error()}
	}
}

// quorumMembers sets a replicated quorum queue's leader, members and
// online members (those this node reaches) by node name, as RabbitMQ's
// /api/queues does.
func (h *Handler) quorumMembers(it item, lead uint64, members []uint64) {
	names := map[uint64]string{}
	reachable := map[uint64]bool{}
	if h.members != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := h.members(ctx)
		cancel()
		if err == nil {
			for _, m := range st.Members {
				names[m.ID], reachable[m.ID] = m.Name, m.Reachable
			}
		}
	}
	name := func(id uint64) string {
		if n, ok := names[id]; ok {
			return n
		}
		return strconv.FormatUint(id, 16)
	}
	ms, online := []string{}, []string{}
	for _, id := range members {
		ms = append(ms, name(id))
		if reachable[id] {
			online = append(online, name(id))
		}
	}
	it["members"], it["online"], it["leader"] = ms, online, ""
	if lead != 0 {
		it["leader"] = name(lead)
	}
}

// rebalance is POST /api/rebalance/queues, as RabbitMQ's: it moves
// quorum queues' leaders so that each member leads about as many
// (broker.Server.RebalanceQuorumQueues) and answers 204 once it has
// asked for the moves, which then take an election's time. A single
// node has nothing to move. Administrators only.
func (h *Handler) rebalance(rq *request) error {
	if len(rq.seg) != 2 || rq.seg[1] != "queues" {
		return errNotFound()
	}
	if rq.r.Method != http.MethodPost {
		return methodNotAllowed(rq, "POST, OPTIONS")
	}
	if err := needAdmin(rq); err != nil {
		return err
	}
	moved, err := h.srv.RebalanceQuorumQueues(rq.r.Context())
	if err != nil {
		return &apiError{http.StatusServiceUnavailable, "cluster_unavailable", err.Error()}
	}
	rq.w.Header().Set("X-Leaders-Moved", strconv.Itoa(moved))
	rq.w.WriteHeader(http.StatusNoContent)
	return nil
}
