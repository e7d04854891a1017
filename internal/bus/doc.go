// Package bus is Shouwang's only door to Kafka: producing with acks=all, consuming in
// consumer groups with explicit commits, consuming partitions seeked to offsets kept
// elsewhere (PostgreSQL), creating topics from config and, for tests and the demo, an
// embedded in-memory broker.
//
// It wraps github.com/segmentio/kafka-go. kafka-go has no idempotent or transactional
// producer, so every guarantee here is at-least-once: a Produce that returns nil means
// every message was acknowledged by all in-sync replicas; a Produce that returns an
// error may still have written some messages, and consumers must be idempotent
// (canonical events carry a monotonic version per key for exactly that reason).
//
// Metrics are registered on the prometheus.Registerer given in Options.Registerer and
// nowhere else: the package never touches prometheus.DefaultRegisterer, so tests and
// several workers in one process do not collide.
package bus
