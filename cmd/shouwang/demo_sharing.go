package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shouwang/shouwang/internal/ident"
	"github.com/shouwang/shouwang/sinks/sharing"
)

// demoToken and demoSigningKey are the demo's credentials for its stand-in sharing
// platform (deploy/config/demo.yaml reads them from the environment the demo sets).
const (
	demoToken      = "demo-token"
	demoSigningKey = "demo-signing-key-0123456789"
)

// demoPlatform stands in for the provincial data-sharing platform in the demo: it
// checks the bearer token and the HMAC-SM3 signature of every request, applies each
// idempotency key once, and counts what it received. It is the demo's counterpart, not
// a test double of Shouwang's own code.
type demoPlatform struct {
	srv *http.Server
	url string

	mu        sync.Mutex
	requests  int
	refused   int // bad token or signature
	batches   map[string]bool
	byEntity  map[string]int
	unmasked  int // ID numbers that arrived in clear
	lastEvent time.Time
}

func startDemoPlatform() (*demoPlatform, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &demoPlatform{batches: map[string]bool{}, byEntity: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/fpjc/base-data", p.handle)
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	p.url = "http://" + ln.Addr().String() + "/api/fpjc/base-data"
	go p.srv.Serve(ln) //nolint:errcheck // ends with Close
	return p, nil
}

func (p *demoPlatform) close() {
	if p != nil {
		p.srv.Close()
	}
}

func (p *demoPlatform) handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 32<<20))
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests++
	p.lastEvent = time.Now()
	key := r.Header.Get("Idempotency-Key")
	if err != nil || r.Header.Get("Authorization") != "Bearer "+demoToken ||
		r.Header.Get("X-Shouwang-Signature") != sharing.Sign([]byte(demoSigningKey), r.URL.Path, r.Header.Get("X-Shouwang-Timestamp"), key, body) {
		p.refused++
		http.Error(w, "token or signature does not verify", http.StatusUnauthorized)
		return
	}
	if p.batches[key] {
		w.Write([]byte(`{}`)) // a repeat of an applied batch: accepted, not applied again
		return
	}
	var b sharing.Batch
	if err := json.Unmarshal(body, &b); err != nil {
		http.Error(w, "not a batch: "+err.Error(), http.StatusBadRequest)
		return
	}
	p.batches[key] = true
	for _, it := range b.Records {
		p.byEntity[it.Entity]++
		for _, f := range []string{"id_no", "head_id_no"} {
			if s, _ := it.Data[f].(string); s != "" && ident.Normalize(s) == s && !strings.Contains(s, "*") {
				p.unmasked++
			}
		}
	}
	w.Write([]byte(`{}`))
}

// showExchange waits until the exchange table has stopped changing and counts it.
func (d *demo) showExchange(ctx context.Context, dsn, name string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	var last string
	var since time.Time
	var summary string
	err = d.waitFor(ctx, "exchange table", 3*time.Minute, func() (bool, string) {
		var s sql.NullString
		// Before the sink created the table, the query fails: keep waiting.
		_ = db.QueryRowContext(ctx, `SELECT string_agg(entity || '/' || op || '=' || n, ' ' ORDER BY entity, op) FROM (SELECT entity, op, count(*) n FROM `+
			sharing.ExchangeTable+` GROUP BY entity, op) x`).Scan(&s)
		if s.String != last {
			last, since = s.String, time.Now()
		}
		summary = s.String
		return s.Valid && time.Since(since) > 2*time.Second, "exchange table: " + s.String
	})
	if err != nil {
		return err
	}
	d.printf("      exchange table %s of sink %s (sharing platform database): %s\n", sharing.ExchangeTable, name, summary)
	return nil
}

// settled waits until the platform has been quiet for a while after receiving
// something, and describes what it received.
func (d *demo) waitSharing(ctx context.Context) error {
	if d.platform == nil {
		return nil
	}
	p := d.platform
	err := d.waitFor(ctx, "sharing platform", 3*time.Minute, func() (bool, string) {
		p.mu.Lock()
		defer p.mu.Unlock()
		n := 0
		for _, c := range p.byEntity {
			n += c
		}
		return n > 0 && time.Since(p.lastEvent) > 3*time.Second, fmt.Sprintf("sharing platform: %d base-data records received", n)
	})
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var parts []string
	total := 0
	ents := make([]string, 0, len(p.byEntity))
	for e := range p.byEntity {
		ents = append(ents, e)
	}
	sort.Strings(ents)
	for _, e := range ents {
		parts = append(parts, fmt.Sprintf("%s=%d", e, p.byEntity[e]))
		total += p.byEntity[e]
	}
	d.printf("      sharing platform (the demo's stand-in at %s): %d records in %d batches (%s); %d requests, %d refused for token or signature; %d ID numbers in clear\n",
		p.url, total, len(p.batches), strings.Join(parts, " "), p.requests, p.refused, p.unmasked)
	for _, sw := range d.sinks {
		if s, ok := sw.(*sharing.Worker); ok {
			b, acc, rej := s.Receipts()
			d.printf("      push receipts of sink %s: %d batches, %d records accepted, %d rejected\n", s.Name(), b, acc, rej)
		}
	}
	for _, sw := range d.sinks {
		x, ok := sw.(*sharing.ExchangeWorker)
		if !ok {
			continue
		}
		sc, _ := d.cfg.SinkByName(x.Name())
		if err := d.showExchange(ctx, sc.DSN, x.Name()); err != nil {
			return err
		}
	}
	if p.refused > 0 || p.unmasked > 0 {
		return errors.New("the sharing platform refused a signature or received a full ID number")
	}
	return nil
}
