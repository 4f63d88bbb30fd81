package management

import (
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
)

// xKey names an exchange for its rates: its vhost, for dropping the
// samples of deleted exchanges at a listing of the vhost, and itself.
type xKey struct {
	vhost string
	x     *broker.Exchange
}

// exchangeStats is an exchange's message_stats as RabbitMQ 3.10 shows
// them, its counters sampled for their rates: none until something was
// published to it, publish_out once something was routed on.
func (h *Handler) exchangeStats(vhost string, x *broker.Exchange) item {
	in, out := x.PublishStats()
	vals := map[string]uint64{"publish_in": in, "publish_out": out}
	rates := h.xRates.sample(time.Now(), h.srv.StatsInterval(), xKey{vhost, x}, vals)
	if in == 0 {
		return nil
	}
	ms := item{"publish_in": in, "publish_in_details": rate(rates["publish_in"])}
	if out > 0 {
		ms["publish_out"], ms["publish_out_details"] = out, rate(rates["publish_out"])
	}
	return ms
}

// forgetExchanges drops the samples of vhost's exchanges that are not in
// xs (deleted).
func (h *Handler) forgetExchanges(vhost string, xs []*broker.Exchange) {
	keep := make(map[*broker.Exchange]bool, len(xs))
	for _, x := range xs {
		keep[x] = true
	}
	h.xRates.prune(func(k xKey) bool { return k.vhost == vhost && !keep[k.x] })
}
