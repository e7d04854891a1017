package config

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// DialTimeout bounds each reachability probe of CheckConnectivity.
const DialTimeout = 3 * time.Second

// target is one endpoint to probe, with the key that configured it.
type target struct {
	path string
	ep   endpoint
}

// targets lists every network endpoint the configuration names, in file order.
// Unparseable DSNs are skipped: Validate reports them.
func (c *Config) targets() []target {
	var out []target
	for i, b := range c.Kafka.Brokers {
		out = append(out, target{fmt.Sprintf("kafka.brokers[%d]", i), endpoint{network: "tcp", addr: b}})
	}
	addMySQL := func(path, dsn string) {
		if e, _, err := mysqlEndpoint(dsn); err == nil && dsn != "" {
			out = append(out, target{path, e})
		}
	}
	addPG := func(path, dsn string) {
		if eps, _, err := pgEndpoints(dsn); err == nil && dsn != "" {
			for _, e := range eps {
				out = append(out, target{path, e})
			}
		}
	}
	for i := range c.Sources {
		s := &c.Sources[i]
		p := fmt.Sprintf("sources[%d]", i)
		switch {
		case s.MySQL != nil:
			addMySQL(p+".mysql.dsn", s.MySQL.DSN)
		case s.Postgres != nil:
			addPG(p+".postgres.dsn", s.Postgres.DSN)
		case s.Poll != nil && s.Poll.Driver == "mysql":
			addMySQL(p+".poll.dsn", s.Poll.DSN)
		case s.Poll != nil:
			addPG(p+".poll.dsn", s.Poll.DSN)
		}
		if s.Poll != nil {
			addPG(p+".poll.state_dsn", s.Poll.StateDSN)
		}
	}
	if c.State.Positions == "postgres" {
		addPG("state.positions_dsn", c.State.PositionsDSN)
	}
	for i := range c.Sinks {
		s := &c.Sinks[i]
		p := fmt.Sprintf("sinks[%d]", i)
		switch {
		case s.Kind == SinkSharingHTTP:
			if e, err := httpEndpoint(s.URL); err == nil {
				out = append(out, target{p + ".url", e})
			}
		case s.Kind == SinkSharingDB && s.Driver == "mysql":
			addMySQL(p+".dsn", s.DSN)
		default:
			addPG(p+".dsn", s.DSN)
		}
	}
	if c.Gen.MySQLDSN != "" {
		addMySQL("gen.mysql_dsn", c.Gen.MySQLDSN)
	}
	if c.Gen.PGDSN != "" {
		addPG("gen.pg_dsn", c.Gen.PGDSN)
	}
	return out
}

// CheckConnectivity dials every broker, DSN and URL of the configuration (TCP or Unix
// socket only: no login, no query) and returns one error per unreachable endpoint,
// naming the config key and the address with the password masked, e.g.
//
//	sources[0].mysql.dsn: cannot reach 10.2.3.4:3306 (user root, password ***): connection refused
//
// An empty result means every endpoint accepted a connection. Probes run in parallel,
// each bounded by DialTimeout and ctx.
func (c *Config) CheckConnectivity(ctx context.Context) []error {
	ts := c.targets()
	errs := make([]error, len(ts))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, t := range ts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, DialTimeout)
			defer cancel()
			var d net.Dialer
			conn, err := d.DialContext(dctx, t.ep.network, t.ep.addr)
			if err != nil {
				errs[i] = fmt.Errorf("%s: cannot reach %s: %s", t.path, t.ep.describe(), dialReason(err))
				return
			}
			_ = conn.Close()
		}()
	}
	wg.Wait()
	var out []error
	for _, e := range errs {
		if e != nil {
			out = append(out, e)
		}
	}
	return out
}

// dialReason reduces a dial error to its cause ("connection refused", "i/o timeout",
// "no such host"), since the address is already in the message.
func dialReason(err error) string {
	var dns *net.DNSError
	if errors.As(err, &dns) {
		if dns.IsNotFound {
			return "no such host " + dns.Name
		}
		return dns.Err
	}
	if errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err) {
		return "timed out after " + DialTimeout.String()
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err.Error()
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}
