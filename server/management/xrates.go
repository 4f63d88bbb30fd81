package management

import (
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
)

// xKey names an exchange for its rates: its vhost, whose deletion ends
// the sample as the exchange's own does, and itself.
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

// forgetExchanges drops the samples of deleted exchanges and of the
// exchanges of deleted vhosts, whichever vhost is being listed: a sample
// holds its exchange, and so its vhost, in memory.
func (h *Handler) forgetExchanges() {
	h.xRates.prune(func(k xKey) bool { return k.x.Deleted() || h.srv.VHost(k.vhost) == nil })
}
