package bus

import (
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// NewAdminClient is a franz-go client for the operator tools (consumer group
// offsets, watermarks, reading single records, redriving): kafka-go has no admin API
// for committed group offsets or offsets by time, so these use kgo/kadm. It connects
// with the same brokers, TLS and SASL as the workers; extra options are appended.
func NewAdminClient(opts Options, extra ...kgo.Opt) (*kgo.Client, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("bus: invalid kafka options: %w", err)
	}
	opts = opts.withDefaults()
	kopts := []kgo.Opt{kgo.SeedBrokers(opts.Brokers...), kgo.ClientID(opts.ClientID + "-ops"), kgo.DialTimeout(opts.DialTimeout)}
	t, err := opts.tlsConfig()
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	if t != nil {
		kopts = append(kopts, kgo.DialTLSConfig(t))
	}
	var m sasl.Mechanism
	switch strings.ToLower(opts.SASLMechanism) {
	case SASLNone:
	case SASLPlain:
		m = plain.Auth{User: opts.Username, Pass: opts.Password}.AsMechanism()
	case SASLScramSHA256:
		m = scram.Auth{User: opts.Username, Pass: opts.Password}.AsSha256Mechanism()
	case SASLScramSHA512:
		m = scram.Auth{User: opts.Username, Pass: opts.Password}.AsSha512Mechanism()
	default:
		return nil, fmt.Errorf("bus: sasl.mechanism: %q is not one of plain, scram-sha-256, scram-sha-512", opts.SASLMechanism)
	}
	if m != nil {
		kopts = append(kopts, kgo.SASL(m))
	}
	c, err := kgo.NewClient(append(kopts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("bus: admin client: %w", err)
	}
	return c, nil
}
