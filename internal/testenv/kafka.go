package testenv

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// KafkaOption configures StartKafka.
type KafkaOption func(*kafkaConfig)

type kafkaConfig struct {
	brokers    int
	autoCreate bool
	partitions int
	seeds      []kfake.Opt
	extra      []kfake.Opt
}

// WithBrokers sets the number of in-process brokers (default 1). kfake does not
// replicate, so more brokers only spread partition leadership.
func WithBrokers(n int) KafkaOption { return func(c *kafkaConfig) { c.brokers = n } }

// WithAutoTopicCreation lets metadata requests create missing topics, like a broker with
// auto.create.topics.enable=true. Off by default so that code which forgets to create
// its topics fails in tests as it would against the production cluster.
func WithAutoTopicCreation() KafkaOption { return func(c *kafkaConfig) { c.autoCreate = true } }

// WithDefaultPartitions sets the partition count of auto-created topics and of topics
// created with -1 partitions (kfake's default is 10).
func WithDefaultPartitions(n int) KafkaOption { return func(c *kafkaConfig) { c.partitions = n } }

// WithTopics creates topics with the given partition count when the cluster starts.
func WithTopics(partitions int32, topics ...string) KafkaOption {
	return func(c *kafkaConfig) { c.seeds = append(c.seeds, kfake.SeedTopics(partitions, topics...)) }
}

// WithKfakeOptions passes raw kfake options (ports, data dir, SASL, ...) through.
func WithKfakeOptions(opts ...kfake.Opt) KafkaOption {
	return func(c *kafkaConfig) { c.extra = append(c.extra, opts...) }
}

// KafkaCluster is an in-process Kafka-protocol cluster (kfake) listening on 127.0.0.1. It is
// not durable and has no transactions; production uses a real cluster.
type KafkaCluster struct {
	cluster *kfake.Cluster
	once    sync.Once
}

// StartKafka starts a kfake cluster on random loopback ports.
func StartKafka(opts ...KafkaOption) (*KafkaCluster, error) {
	cfg := kafkaConfig{brokers: 1}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.brokers < 1 {
		return nil, fmt.Errorf("testenv: StartKafka: WithBrokers(%d): need at least one broker", cfg.brokers)
	}
	// Consumer groups may use session timeouts down to a second, so that tests that
	// kill a worker see its partitions move without kfake's default 6 s floor.
	kopts := []kfake.Opt{kfake.NumBrokers(cfg.brokers), kfake.GroupMinSessionTimeout(time.Second)}
	if cfg.autoCreate {
		kopts = append(kopts, kfake.AllowAutoTopicCreation())
	}
	if cfg.partitions > 0 {
		kopts = append(kopts, kfake.DefaultNumPartitions(cfg.partitions))
	}
	kopts = append(kopts, cfg.seeds...)
	kopts = append(kopts, cfg.extra...)
	c, err := kfake.NewCluster(kopts...)
	if err != nil {
		return nil, fmt.Errorf("testenv: start kfake cluster with %d broker(s): %w", cfg.brokers, err)
	}
	return &KafkaCluster{cluster: c}, nil
}

// Brokers are the seed broker addresses (host:port) for Kafka clients.
func (k *KafkaCluster) Brokers() []string { return k.cluster.ListenAddrs() }

// Cluster exposes the kfake cluster, e.g. to inject failures with ControlKey.
func (k *KafkaCluster) Cluster() *kfake.Cluster { return k.cluster }

// CreateTopics creates topics with the given partition count (replication factor 1).
// A topic that already exists is not an error.
func (k *KafkaCluster) CreateTopics(ctx context.Context, partitions int32, topics ...string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers()...))
	if err != nil {
		return fmt.Errorf("testenv: kafka admin client for %v: %w", k.Brokers(), err)
	}
	defer cl.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	for _, name := range topics {
		t := kmsg.NewCreateTopicsRequestTopic()
		t.Topic = name
		t.NumPartitions = partitions
		t.ReplicationFactor = 1
		req.Topics = append(req.Topics, t)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("testenv: create topics %v: %w", topics, err)
	}
	for _, t := range resp.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("testenv: create topic %q with %d partitions: %w", t.Topic, partitions, err)
		}
	}
	return nil
}

// Close stops the cluster; all data is lost. It is safe to call more than once.
func (k *KafkaCluster) Close() {
	k.once.Do(k.cluster.Close)
}
