package bus

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// EmbeddedBanner is printed to stderr whenever the embedded broker starts, so nobody
// mistakes a demo for a deployment.
const EmbeddedBanner = "EMBEDDED IN-MEMORY KAFKA (kfake): NOT FOR PRODUCTION — data is lost when the process exits"

// EmbeddedOptions configures StartEmbedded.
type EmbeddedOptions struct {
	// Partitions is the default partition count of topics created without one (kfake's
	// own default is 10). Zero keeps kfake's default.
	Partitions int
	// DataDir, when set, makes kfake persist to that directory. It is still a single
	// unreplicated in-process broker: not for production.
	DataDir string
	// Topics are created at start with Partitions partitions.
	Topics []string
	// Port is the listening port; zero picks a free one.
	Port int
	// AllowAutoTopicCreation lets metadata requests create topics (off by default, like
	// the producer: a typo should fail).
	AllowAutoTopicCreation bool
}

// Embedded is an in-process Kafka-protocol broker (kfake) for tests and `shouwang demo`
// when no brokers are configured.
type Embedded struct {
	c    *kfake.Cluster
	once sync.Once
}

// StartEmbedded starts kfake and announces loudly that it is not production Kafka. The
// broker lives until Close or until ctx is done.
func StartEmbedded(ctx context.Context, o EmbeddedOptions) (*Embedded, error) {
	// kafka.session_timeout may go down to a second (kfake's own floor is 6s).
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(time.Second)}
	if o.Port > 0 {
		opts = append(opts, kfake.Ports(o.Port))
	}
	if o.Partitions > 0 {
		opts = append(opts, kfake.DefaultNumPartitions(o.Partitions))
	}
	if len(o.Topics) > 0 {
		opts = append(opts, kfake.SeedTopics(int32(o.Partitions), o.Topics...))
	}
	if o.DataDir != "" {
		opts = append(opts, kfake.DataDir(o.DataDir))
	}
	if o.AllowAutoTopicCreation {
		opts = append(opts, kfake.AllowAutoTopicCreation())
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("bus: start embedded kafka (port %d, data dir %q): %w", o.Port, o.DataDir, err)
	}
	e := &Embedded{c: c}
	banner := EmbeddedBanner
	if o.DataDir != "" {
		banner = "EMBEDDED KAFKA (kfake): NOT FOR PRODUCTION — single unreplicated in-process broker persisting to " + o.DataDir
	}
	fmt.Fprintf(os.Stderr, "\n%s\n%s\n%s\n\n", bar, banner, bar)
	// The banner above is the one warning; the log line (info, so the demo's default
	// warn level does not repeat it) keeps the addresses for -v and JSON logs.
	slog.Info(banner, "brokers", c.ListenAddrs(), "data_dir", o.DataDir)
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, e.Close)
		_ = stop // Close is idempotent; leaving the AfterFunc registered is harmless
	}
	return e, nil
}

const bar = "################################################################################"

// Brokers are the host:port addresses to put in Options.Brokers.
func (e *Embedded) Brokers() []string { return e.c.ListenAddrs() }

// Cluster exposes the kfake cluster for tests that need its controls.
func (e *Embedded) Cluster() *kfake.Cluster { return e.c }

// Close stops the broker; with no DataDir all data is gone. Idempotent.
func (e *Embedded) Close() { e.once.Do(e.c.Close) }
