package bus

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// SASL mechanism names accepted in Options.SASLMechanism.
const (
	SASLNone        = ""
	SASLPlain       = "plain"
	SASLScramSHA256 = "scram-sha-256"
	SASLScramSHA512 = "scram-sha-512"
)

// Partitioner names accepted in Options.Partitioner. The partitioner decides which
// partition a key lands in, so every producer writing one topic must use the same one
// or per-key ordering breaks. Changing it on a live topic moves keys between partitions.
const (
	// PartitionerMurmur2 is Kafka's own default (Java client, franz-go, librdkafka
	// "murmur2_random"); the default here so that any other producer tool agrees.
	PartitionerMurmur2 = "murmur2"
	// PartitionerFNV1a is kafka-go's kafka.Hash (also sarama's default). Use it only when
	// the topic is shared with kafka-go/sarama producers using their defaults.
	PartitionerFNV1a = "fnv1a"
)

// Defaults applied by Options.withDefaults. kafka-go's own defaults (1 s batch timeout,
// 100-message batches, no acks) are far too slow and unsafe for the pipeline.
const (
	DefaultBatchSize       = 2000
	DefaultBatchTimeout    = 2 * time.Millisecond
	DefaultBatchBytes      = 1 << 20
	DefaultMaxAttempts     = 5
	DefaultRetryMaxElapsed = 30 * time.Second
	DefaultDialTimeout     = 10 * time.Second
	DefaultSessionTimeout  = 10 * time.Second
)

// heartbeatInterval is a third of the session timeout, at most a second.
func (o Options) heartbeatInterval() time.Duration {
	return min(time.Second, o.SessionTimeout/3)
}

// rebalanceTimeout is how long a rebalance waits for the live members to rejoin: at
// least 10 s whatever the session timeout, so that a short session (quick failover
// of a killed worker) does not drop a member that is busy committing a batch.
func (o Options) rebalanceTimeout() time.Duration {
	return max(10*time.Second, o.SessionTimeout)
}

// groupErrorLogger passes kafka-go's consumer group errors to the debug log (joins
// retried during rebalances are routine), except a session timeout the brokers refuse,
// which would otherwise leave the worker retrying its join, silently, for ever.
func (o Options) groupErrorLogger(group string) kafka.Logger {
	return kafka.LoggerFunc(func(f string, a ...any) {
		msg := "kafka-go: " + fmt.Sprintf(f, a...)
		if strings.Contains(msg, "Invalid Session Timeout") {
			o.Logger.Error("bus: the brokers refuse the consumer group's session timeout: set kafka.session_timeout within their group.min.session.timeout.ms and group.max.session.timeout.ms (Kafka's defaults: 6s and 30m)",
				"group", group, "session_timeout", o.SessionTimeout, "err", msg)
			return
		}
		o.Logger.Debug(msg, "group", group)
	})
}

// Options configures producers, consumers and topic administration. The zero value of
// every tuning field means "use the default"; Brokers is required.
type Options struct {
	// Brokers are host:port bootstrap addresses.
	Brokers []string
	// ClientID identifies this process in broker logs and quotas.
	ClientID string

	// TLS, when set, is used as is. Otherwise TLS is enabled when TLSEnabled is true or
	// any of CAFile, CertFile, KeyFile, InsecureSkipVerify is set.
	TLS                *tls.Config
	TLSEnabled         bool
	CAFile             string
	CertFile           string
	KeyFile            string
	InsecureSkipVerify bool

	// SASLMechanism is one of SASLNone, SASLPlain, SASLScramSHA256, SASLScramSHA512.
	SASLMechanism string
	Username      string
	Password      string

	// BatchSize, BatchBytes and BatchTimeout bound one produce request per partition.
	BatchSize    int
	BatchBytes   int64
	BatchTimeout time.Duration
	// MaxAttempts is how often kafka-go retries one batch internally (order-preserving
	// within the partition) before Produce sees the failure.
	MaxAttempts int
	// RetryMaxElapsed bounds Produce's own exponential-backoff retries of retryable
	// failures (metadata errors, broken connections, leader changes). Negative disables
	// those retries.
	RetryMaxElapsed time.Duration
	// Partitioner is PartitionerMurmur2 (default) or PartitionerFNV1a.
	Partitioner string
	// Compression is "", "none", "gzip", "snappy", "lz4" or "zstd".
	Compression string
	// DialTimeout bounds connecting (and the SASL/TLS handshake) to one broker.
	DialTimeout time.Duration
	// SessionTimeout is how long a consumer group waits for a silent member before it
	// rebalances the member's partitions to the others. Heartbeats go every
	// SessionTimeout/3, at most every second; a rebalance waits for live members at
	// least 10 s, or SessionTimeout when longer.
	SessionTimeout time.Duration

	// Registerer receives the bus metrics (see metrics.go). Nil means metrics are counted
	// but not exported.
	Registerer prometheus.Registerer
	// Logger receives connection and rebalance events; nil means slog.Default().
	Logger *slog.Logger
}

// withDefaults returns a copy with every zero tuning field set to its default.
func (o Options) withDefaults() Options {
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = DefaultBatchBytes
	}
	if o.BatchTimeout <= 0 {
		o.BatchTimeout = DefaultBatchTimeout
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.RetryMaxElapsed == 0 {
		o.RetryMaxElapsed = DefaultRetryMaxElapsed
	}
	if o.Partitioner == "" {
		o.Partitioner = PartitionerMurmur2
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.SessionTimeout <= 0 {
		o.SessionTimeout = DefaultSessionTimeout
	}
	if o.ClientID == "" {
		o.ClientID = "shouwang"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Validate reports every configuration problem at once, each naming its field so an
// operator can find it in the YAML (fields are named as in the kafka config section).
func (o Options) Validate() error {
	var errs []error
	if len(o.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: at least one host:port is required (or leave kafka unset to use the embedded demo broker)"))
	}
	for i, b := range o.Brokers {
		if strings.TrimSpace(b) == "" || !strings.Contains(b, ":") {
			errs = append(errs, fmt.Errorf("brokers[%d]: %q is not host:port", i, b))
		}
	}
	switch strings.ToLower(o.SASLMechanism) {
	case SASLNone:
		if o.Username != "" || o.Password != "" {
			errs = append(errs, errors.New("sasl.mechanism: username/password are set but no mechanism; set plain, scram-sha-256 or scram-sha-512"))
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if o.Username == "" {
			errs = append(errs, fmt.Errorf("sasl.username: required with mechanism %q", o.SASLMechanism))
		}
		if o.Password == "" {
			errs = append(errs, fmt.Errorf("sasl.password: required with mechanism %q", o.SASLMechanism))
		}
	default:
		errs = append(errs, fmt.Errorf("sasl.mechanism: %q is not one of plain, scram-sha-256, scram-sha-512", o.SASLMechanism))
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		errs = append(errs, errors.New("tls.cert_file/tls.key_file: give both for a client certificate, or neither"))
	}
	switch o.Partitioner {
	case "", PartitionerMurmur2, PartitionerFNV1a:
	default:
		errs = append(errs, fmt.Errorf("partitioner: %q is not murmur2 or fnv1a", o.Partitioner))
	}
	if _, err := compression(o.Compression); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func compression(name string) (kafka.Compression, error) {
	switch strings.ToLower(name) {
	case "", "none":
		return 0, nil
	case "gzip":
		return kafka.Gzip, nil
	case "snappy":
		return kafka.Snappy, nil
	case "lz4":
		return kafka.Lz4, nil
	case "zstd":
		return kafka.Zstd, nil
	}
	return 0, fmt.Errorf("compression: %q is not none, gzip, snappy, lz4 or zstd", name)
}

// tlsConfig builds the client TLS configuration, or nil when TLS is off.
func (o Options) tlsConfig() (*tls.Config, error) {
	if o.TLS != nil {
		return o.TLS, nil
	}
	if !o.TLSEnabled && o.CAFile == "" && o.CertFile == "" && o.KeyFile == "" && !o.InsecureSkipVerify {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.InsecureSkipVerify} //nolint:gosec // operator's explicit choice
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: read %s: %w", o.CAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file: %s holds no PEM certificate", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.cert_file/tls.key_file: load %s and %s: %w", o.CertFile, o.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// saslMechanism builds the SASL mechanism, or nil when SASL is off.
func (o Options) saslMechanism() (sasl.Mechanism, error) {
	switch strings.ToLower(o.SASLMechanism) {
	case SASLNone:
		return nil, nil
	case SASLPlain:
		return plain.Mechanism{Username: o.Username, Password: o.Password}, nil
	case SASLScramSHA256:
		return scram.Mechanism(scram.SHA256, o.Username, o.Password)
	case SASLScramSHA512:
		return scram.Mechanism(scram.SHA512, o.Username, o.Password)
	}
	return nil, fmt.Errorf("sasl.mechanism: %q is not one of plain, scram-sha-256, scram-sha-512", o.SASLMechanism)
}

// conn holds what every client type needs, built once from validated Options.
type conn struct {
	opts   Options
	tls    *tls.Config
	sasl   sasl.Mechanism
	dialer *kafka.Dialer
}

func newConn(opts Options) (*conn, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("bus: invalid kafka options: %w", err)
	}
	opts = opts.withDefaults()
	t, err := opts.tlsConfig()
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	m, err := opts.saslMechanism()
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	return &conn{
		opts: opts,
		tls:  t,
		sasl: m,
		dialer: &kafka.Dialer{
			ClientID:      opts.ClientID,
			Timeout:       opts.DialTimeout,
			DualStack:     true,
			TLS:           t,
			SASLMechanism: m,
		},
	}, nil
}

// transport builds a fresh kafka-go Transport; the owner must CloseIdleConnections.
func (c *conn) transport() *kafka.Transport {
	return &kafka.Transport{
		ClientID:    c.opts.ClientID,
		DialTimeout: c.opts.DialTimeout,
		TLS:         c.tls,
		SASL:        c.sasl,
	}
}

func (c *conn) balancer() kafka.Balancer {
	if c.opts.Partitioner == PartitionerFNV1a {
		return &kafka.Hash{}
	}
	return kafka.Murmur2Balancer{}
}
