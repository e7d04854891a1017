package bus

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/segmentio/kafka-go"
)

// TopicSpec describes a topic as the config wants it. Zero Partitions or
// ReplicationFactor means "broker default".
type TopicSpec struct {
	Name              string
	Partitions        int
	ReplicationFactor int
	// Config holds topic-level settings, e.g. cleanup.policy=compact, retention.ms.
	Config map[string]string
}

// EnsureTopics creates the topics in specs that do not exist yet. Existing topics are
// left alone (a different partition count is logged, not changed: changing it would move
// keys between partitions and break per-key order). Errors name the topic.
func EnsureTopics(ctx context.Context, opts Options, specs ...TopicSpec) error {
	if len(specs) == 0 {
		return nil
	}
	c, err := newConn(opts)
	if err != nil {
		return err
	}
	tr := c.transport()
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(c.opts.Brokers...), Transport: tr}

	// A request naming a topic twice is rejected whole by the broker (Invalid
	// Request), so duplicates are dropped here; the first spec of a name wins.
	uniq := specs[:0:0]
	dup := map[string]bool{}
	for _, s := range specs {
		if !dup[s.Name] {
			dup[s.Name] = true
			uniq = append(uniq, s)
		}
	}
	specs = uniq
	req := &kafka.CreateTopicsRequest{}
	for i, s := range specs {
		if err := validTopicName(s.Name); err != nil {
			return fmt.Errorf("bus: ensure topics: spec %d: %w", i, err)
		}
		tc := kafka.TopicConfig{Topic: s.Name, NumPartitions: -1, ReplicationFactor: -1}
		if s.Partitions > 0 {
			tc.NumPartitions = s.Partitions
		}
		if s.ReplicationFactor > 0 {
			tc.ReplicationFactor = s.ReplicationFactor
		}
		keys := make([]string, 0, len(s.Config))
		for k := range s.Config {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: s.Config[k]})
		}
		req.Topics = append(req.Topics, tc)
	}
	resp, err := client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("bus: ensure topics %s: create request to %v: %w", names(specs), c.opts.Brokers, err)
	}
	var errs []error
	var existing []string
	for _, s := range specs {
		switch e := resp.Errors[s.Name]; {
		case e == nil:
			c.opts.Logger.Info("bus: created topic", "topic", s.Name, "partitions", s.Partitions, "replication_factor", s.ReplicationFactor)
		case errors.Is(e, kafka.TopicAlreadyExists):
			existing = append(existing, s.Name)
		default:
			errs = append(errs, fmt.Errorf("bus: create topic %q (partitions %d, replication %d, config %v): %w",
				s.Name, s.Partitions, s.ReplicationFactor, s.Config, e))
		}
	}
	if len(existing) > 0 {
		meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: existing})
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("bus: ensure topics: read metadata of existing %v: %w", existing, err))...)
		}
		want := map[string]int{}
		for _, s := range specs {
			want[s.Name] = s.Partitions
		}
		for _, t := range meta.Topics {
			if t.Error != nil {
				errs = append(errs, fmt.Errorf("bus: ensure topics: metadata of %q: %w", t.Name, t.Error))
				continue
			}
			if w := want[t.Name]; w > 0 && len(t.Partitions) != w {
				c.opts.Logger.Warn("bus: topic exists with a different partition count; left unchanged",
					"topic", t.Name, "partitions", len(t.Partitions), "configured", w)
			}
		}
	}
	return errors.Join(errs...)
}

// validTopicName applies Kafka's own rules before asking the broker, so a bad name in
// the config is reported with the name instead of an opaque broker error.
func validTopicName(name string) error {
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("topic name %q is not allowed", name)
	}
	if len(name) > 249 {
		return fmt.Errorf("topic name %q is longer than 249 characters", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("topic name %q: character %q is not allowed (use a-z, 0-9, '.', '_', '-')", name, r)
		}
	}
	return nil
}

func names(specs []TopicSpec) []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.Name
	}
	return out
}

// Partitions returns the number of partitions of topic, or an error naming it when the
// topic does not exist.
func Partitions(ctx context.Context, opts Options, topic string) (int, error) {
	var n int
	err := withTopic(ctx, opts, topic, "metadata", func(_ *kafka.Client, t kafka.Topic) error {
		n = len(t.Partitions)
		return nil
	})
	return n, err
}

// TopicSize is the number of messages a topic holds now (end minus start offset, summed
// over its partitions), or an error naming it when the topic does not exist. Each call
// reads fresh metadata, so a topic created a moment ago is seen.
func TopicSize(ctx context.Context, opts Options, topic string) (int64, error) {
	var n int64
	err := withTopic(ctx, opts, topic, "size", func(client *kafka.Client, t kafka.Topic) error {
		var reqs []kafka.OffsetRequest
		for _, p := range t.Partitions {
			reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
		}
		offs, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
		if err != nil {
			return err
		}
		for _, po := range offs.Topics[topic] {
			if po.Error != nil {
				return fmt.Errorf("partition %d: %w", po.Partition, po.Error)
			}
			n += po.LastOffset - po.FirstOffset
		}
		return nil
	})
	return n, err
}

// withTopic reads fresh metadata of topic (a transport of its own, no cache) and calls
// fn with a client and the topic; errors name the topic and what was asked.
func withTopic(ctx context.Context, opts Options, topic, what string, fn func(*kafka.Client, kafka.Topic) error) error {
	c, err := newConn(opts)
	if err != nil {
		return err
	}
	tr := c.transport()
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(c.opts.Brokers...), Transport: tr}
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return fmt.Errorf("bus: %s of topic %q: %w", what, topic, err)
	}
	for _, t := range meta.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return fmt.Errorf("bus: %s of topic %q: %w", what, topic, t.Error)
		}
		if err := fn(client, t); err != nil {
			return fmt.Errorf("bus: %s of topic %q: %w", what, topic, err)
		}
		return nil
	}
	return fmt.Errorf("bus: %s of topic %q: %w", what, topic, kafka.UnknownTopicOrPartition)
}
