package management

import (
	"context"
	"errors"
	"net/http"

	"github.com/amqp-go/amqp-go/server/broker"
)

// quorumReplicas is RabbitMQ 4.x's shaping of quorum queues' groups
// (rabbit_mgmt_wm_quorum_queue_replicas_*), administrators only; nodes
// are named as /api/nodes names them (cluster.nodename):
//
//   - POST /api/queues/quorum/{vhost}/{name}/replicas/add {"node"}: 204;
//   - DELETE /api/queues/quorum/{vhost}/{name}/replicas/delete {"node"}:
//     202;
//   - POST /api/queues/quorum/replicas/on/{node}/grow {"vhost_pattern",
//     "queue_pattern", "strategy": "all" or "even"}: 204;
//   - DELETE /api/queues/quorum/replicas/on/{node}/shrink: 202.
//
// An unknown queue (add, delete) or node (grow) is a 404, as RabbitMQ's;
// its other refusals (a classic queue, a node not running, the last
// member, no majority) are 503 service_unavailable with the reason. Ours,
// not RabbitMQ's: with ?report=true, grow and shrink answer 200 with what
// they did to each queue ([{"vhost", "name", "size", "result"}], result
// "ok" or "error: ..."), which ctl grow and shrink print. It reports
// whether the path was one of these.
func (h *Handler) quorumReplicas(rq *request) (bool, error) {
	s := rq.seg
	if len(s) != 6 || s[1] != "quorum" {
		return false, nil
	}
	switch {
	case s[2] == "replicas" && s[3] == "on" && (s[5] == "grow" || s[5] == "shrink"):
		return true, h.replicasOnNode(rq, s[4], s[5] == "grow")
	case s[4] == "replicas" && (s[5] == "add" || s[5] == "delete"):
		return true, h.queueReplica(rq, s[2], s[3], s[5] == "add")
	}
	return false, nil
}

// replicaMethod checks a replicas request's method (POST to add, DELETE
// to remove) and that its user is an administrator.
func replicaMethod(rq *request, post bool) error {
	method, allow := http.MethodDelete, "DELETE, OPTIONS"
	if post {
		method, allow = http.MethodPost, "POST, OPTIONS"
	}
	if rq.r.Method != method {
		return methodNotAllowed(rq, allow)
	}
	return needAdmin(rq)
}

// memberID is the id of the member named name (false: none is).
func (h *Handler) memberID(ctx context.Context, name string) (uint64, bool, error) {
	if h.members == nil {
		return 0, false, nil
	}
	st, err := h.members(ctx)
	if err != nil {
		return 0, false, &apiError{http.StatusServiceUnavailable, "cluster_unavailable", err.Error()}
	}
	for _, m := range st.Members {
		if m.Name == name {
			return m.ID, true, nil
		}
	}
	return 0, false, nil
}

// queueReplica is replicas/add (add) and replicas/delete of one queue.
func (h *Handler) queueReplica(rq *request, vhost, name string, add bool) error {
	if err := replicaMethod(rq, add); err != nil {
		return err
	}
	if v := h.srv.VHost(vhost); v == nil || v.Queue(name) == nil {
		return errNotFound()
	}
	m, err := rq.body()
	if err != nil {
		return err
	}
	f := fields{m: m}
	node := f.string("node", "")
	if f.err != nil {
		return f.err
	}
	if node == "" {
		return errBadRequest("node is needed")
	}
	id, ok, err := h.memberID(rq.r.Context(), node)
	if err != nil {
		return err
	}
	switch {
	case !ok && add:
		err = &apiError{http.StatusServiceUnavailable, "service_unavailable", "node '" + node + "' is not a running member of the cluster"}
	case !ok:
		err = nil // not a member of anything: RabbitMQ's delete is idempotent
	case add:
		err = h.srv.AddQuorumMember(rq.r.Context(), vhost, name, id)
	default:
		err = h.srv.DeleteQuorumMember(rq.r.Context(), vhost, name, id)
	}
	if err != nil {
		return shapeRefusal(err)
	}
	if add {
		rq.w.WriteHeader(http.StatusNoContent)
	} else {
		rq.w.WriteHeader(http.StatusAccepted) // RabbitMQ's: "inherently asynchronous"
	}
	return nil
}

// shapeRefusal is the reply to a refused shape change.
func shapeRefusal(err error) error {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, broker.ErrQueueNotFound):
		return errNotFound()
	}
	return &apiError{http.StatusServiceUnavailable, "service_unavailable", err.Error()}
}

// replicasOnNode is grow (grow) and shrink of every matching queue.
func (h *Handler) replicasOnNode(rq *request, node string, grow bool) error {
	if err := replicaMethod(rq, grow); err != nil {
		return err
	}
	id, ok, err := h.memberID(rq.r.Context(), node)
	if err != nil {
		return err
	}
	var changes []broker.MemberChange
	if grow {
		m, err := rq.body()
		if err != nil {
			return err
		}
		f := fields{m: m}
		vp, qp, strategy := f.string("vhost_pattern", ""), f.string("queue_pattern", ""), f.string("strategy", "")
		if f.err != nil {
			return f.err
		}
		for _, k := range []string{"vhost_pattern", "queue_pattern", "strategy"} {
			if _, given := m[k]; !given {
				return errBadRequest("key_missing: " + k) // RabbitMQ's with_decode
			}
		}
		if !ok {
			return errNotFound() // RabbitMQ: a node not running does not exist
		}
		changes, err = h.srv.GrowQuorumQueues(rq.r.Context(), id, vp, qp, strategy)
		switch {
		case errors.Is(err, broker.ErrNodeNotRunning):
			return errNotFound()
		case errors.Is(err, broker.ErrNotInCluster):
			return shapeRefusal(err)
		case err != nil:
			return errBadRequest(err.Error())
		}
	} else if ok {
		if changes, err = h.srv.ShrinkQuorumQueues(rq.r.Context(), id); err != nil {
			return shapeRefusal(err)
		}
	}
	if rq.r.URL.Query().Get("report") == "true" {
		items := []item{}
		for _, c := range changes {
			result := "ok"
			if c.Err != nil {
				result = "error: " + c.Err.Error()
			}
			items = append(items, item{"vhost": c.VHost, "name": c.Queue, "size": c.Size, "result": result})
		}
		writeJSON(rq.w, items)
		return nil
	}
	if grow {
		rq.w.WriteHeader(http.StatusNoContent)
	} else {
		rq.w.WriteHeader(http.StatusAccepted)
	}
	return nil
}
