package bus

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// busMetrics are the counters every producer and consumer updates. Label "topic" is
// bounded by configuration (topics are created from config), never by data.
//
//	shouwang_bus_produced_messages_total{topic}  messages acknowledged (acks=all)
//	shouwang_bus_produced_bytes_total{topic}     key+value+header bytes acknowledged
//	shouwang_bus_produce_errors_total{topic}     messages whose produce failed permanently
//	shouwang_bus_produce_retries_total           Produce-level retries after retryable errors
//	shouwang_bus_consumed_messages_total{topic}  messages handed to the application
//	shouwang_bus_committed_messages_total{topic} messages whose offsets were committed
type busMetrics struct {
	produced      *prometheus.CounterVec
	producedBytes *prometheus.CounterVec
	produceErrors *prometheus.CounterVec
	retries       prometheus.Counter
	consumed      *prometheus.CounterVec
	committed     *prometheus.CounterVec
}

func newBusMetrics(reg prometheus.Registerer) *busMetrics {
	m := &busMetrics{
		produced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shouwang_bus_produced_messages_total",
			Help: "Messages acknowledged by all in-sync replicas, per topic.",
		}, []string{"topic"}),
		producedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shouwang_bus_produced_bytes_total",
			Help: "Key, value and header bytes acknowledged, per topic.",
		}, []string{"topic"}),
		produceErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shouwang_bus_produce_errors_total",
			Help: "Messages whose produce failed after all retries, per topic.",
		}, []string{"topic"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shouwang_bus_produce_retries_total",
			Help: "Produce calls retried after a retryable error.",
		}),
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shouwang_bus_consumed_messages_total",
			Help: "Messages fetched and handed to the application, per topic.",
		}, []string{"topic"}),
		committed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shouwang_bus_committed_messages_total",
			Help: "Messages whose offsets were committed to the consumer group, per topic.",
		}, []string{"topic"}),
	}
	if reg == nil {
		return m
	}
	m.produced = register(reg, m.produced)
	m.producedBytes = register(reg, m.producedBytes)
	m.produceErrors = register(reg, m.produceErrors)
	m.retries = register(reg, m.retries)
	m.consumed = register(reg, m.consumed)
	m.committed = register(reg, m.committed)
	return m
}

// register registers c, or returns the collector already registered under the same
// name, so that several producers in one process share one series per topic.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		// A different collector with the same name: a programming error we must not hide.
		panic("bus: register metric: " + err.Error())
	}
	return c
}
