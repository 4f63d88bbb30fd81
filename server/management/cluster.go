package management

import (
	"net/http"
)

// nodeItems are the nodes /api/nodes lists: this one first, with every
// field, then the other members with name, type and running (RabbitMQ
// reports a member it cannot reach with running false and little else).
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
		if !m.Self {
			items = append(items, item{"name": m.Name, "type": "disc", "running": m.Reachable})
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
