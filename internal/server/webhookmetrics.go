package server

import "github.com/prometheus/client_golang/prometheus"

// WebhookMetrics exports the expiry notices' outcomes; it implements
// webhook.Observer:
//
//	pkid_webhook_deliveries_total{outcome="delivered|retry|failed|cancelled"}
//	    attempts and cancellations made by this node (retry: an attempt
//	    failed and another is scheduled; failed: the last attempt failed)
//	pkid_webhook_deliveries_pending
//	    notices waiting to be sent, in the whole database (every node
//	    reports the same figure: aggregate with max, not sum)
//
// Alert on increase(pkid_webhook_deliveries_total{outcome="failed"}[1h]) > 0.
type WebhookMetrics struct {
	deliveries *prometheus.CounterVec
	pending    prometheus.Gauge
}

// RegisterWebhooks registers the webhook instruments on m's registry and
// returns them.
func (m *Metrics) RegisterWebhooks() *WebhookMetrics {
	w := &WebhookMetrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pkid_webhook_deliveries_total",
			Help: "Expiry notice attempts and cancellations by outcome (delivered, retry, failed, cancelled), on this node.",
		}, []string{"outcome"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pkid_webhook_deliveries_pending",
			Help: "Expiry notices waiting to be sent, in the whole database.",
		}),
	}
	for _, o := range []string{"delivered", "retry", "failed", "cancelled"} {
		w.deliveries.WithLabelValues(o) // exported as 0 from the start
	}
	m.Registry.MustRegister(w.deliveries, w.pending)
	return w
}

// WebhookDelivery implements webhook.Observer.
func (w *WebhookMetrics) WebhookDelivery(outcome string) { w.deliveries.WithLabelValues(outcome).Inc() }

// WebhookPending implements webhook.Observer.
func (w *WebhookMetrics) WebhookPending(n int) { w.pending.Set(float64(n)) }
