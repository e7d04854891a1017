// Package sharing pushes base data (防返贫基础数据) to the provincial government
// data-sharing platform over HTTP.
//
// Protocol (agreed with the platform; docs/operations.md): one POST per batch of JSON
//
//	{"batch_id": "…", "records": [{"id": "person:P1:7", "entity": "person", "key": "P1",
//	  "version": 7, "op": "upsert", "data": {…}}, …]}
//
// with the headers Authorization: Bearer <token>, Idempotency-Key: <batch_id>,
// X-Shouwang-Timestamp (Unix milliseconds) and X-Shouwang-Signature, the lower-case hex
// HMAC-SM3 (GB/T 32905, key = the signing key) of
//
//	POST \n <path> \n <timestamp> \n <idempotency key> \n <hex SM3 of the body>
//
// A 2xx answer accepts the batch; its body may list per-record results
// {"results": [{"id": "…", "status": "accepted" | "rejected", "reason": "…"}]}, and a
// rejected record is marked failed with its reason while the others count as
// delivered. 408, 425, 429, 5xx, timeouts and broken connections are retried with the
// same idempotency key (so the platform applies a batch once however often it arrives),
// with exponential backoff that honours Retry-After, behind a circuit breaker. 400,
// 409, 413 and 422 refuse the batch's contents: it is split in halves, each with its own idempotency
// key, until the refused records stand alone and are marked failed with the answer's
// body as reason, without blocking the others. Any other 4xx (401, 403, 404, …) is the
// sink's configuration, not the records': the sink stops with the batch pending.
package sharing

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/emmansun/gmsm/sm3"

	"github.com/shouwang/shouwang/internal/bus"
)

// Item is one base-data record of a batch.
type Item struct {
	ID      string         `json:"id"`
	Entity  string         `json:"entity"`
	Key     string         `json:"key"`
	Version int64          `json:"version"`
	Op      string         `json:"op"` // upsert or delete
	Data    map[string]any `json:"data,omitempty"`
}

// Batch is what one request carries.
type Batch struct {
	ID      string `json:"batch_id"`
	Records []Item `json:"records"`
}

// Outcome is the platform's answer for one record.
type Outcome struct {
	ID     string
	Batch  string // the idempotency key of the request that settled it
	OK     bool
	Reason string // why the platform refused it
}

// ClientOptions configures a Client.
type ClientOptions struct {
	URL        string
	Token      string // bearer token ("" sends none)
	SigningKey []byte // HMAC-SM3 key ("" sends no signature)
	Timeout    time.Duration
	// RetryInitial, RetryMax bound the backoff; MaxElapsed is how long one request is
	// retried before Send gives up (the worker then stops and is restarted, resending
	// the same batch).
	RetryInitial, RetryMax, MaxElapsed time.Duration
	// BreakerFailures consecutive failed attempts open the circuit for BreakerCooldown
	// (defaults 5, 30s); then one probe request decides.
	BreakerFailures int
	BreakerCooldown time.Duration
	Logger          *slog.Logger
	Now             func() time.Time
	// OnAttempt is told each attempt's result ("ok", "retry", "refused") and
	// OnBreaker each change of the circuit (true: open), for metrics.
	OnAttempt func(result string)
	OnBreaker func(open bool)
}

// Client sends batches.
type Client struct {
	o    ClientOptions
	http *http.Client
	path string

	mu        sync.Mutex
	failures  int
	openUntil time.Time
}

// NewClient checks the options.
func NewClient(o ClientOptions) (*Client, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("sharing: url %q: want http(s)://host/path", o.URL)
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.RetryInitial <= 0 {
		o.RetryInitial = 500 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 30 * time.Second
	}
	if o.MaxElapsed <= 0 {
		o.MaxElapsed = 5 * time.Minute
	}
	if o.BreakerFailures <= 0 {
		o.BreakerFailures = 5
	}
	if o.BreakerCooldown <= 0 {
		o.BreakerCooldown = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return &Client{o: o, http: &http.Client{Timeout: o.Timeout}, path: path}, nil
}

// Sign is the X-Shouwang-Signature of a request (exported for the platform's side and
// for tests).
func Sign(key []byte, path, timestamp, idempotencyKey string, body []byte) string {
	sum := sm3.Sum(body)
	m := hmac.New(sm3.New, key)
	fmt.Fprintf(m, "POST\n%s\n%s\n%s\n%s", path, timestamp, idempotencyKey, hex.EncodeToString(sum[:]))
	return hex.EncodeToString(m.Sum(nil))
}

// errRefused is a 400, 409, 413 or 422 answer: the batch's contents are refused.
type errRefused struct {
	status int
	body   string
}

func (e *errRefused) Error() string { return fmt.Sprintf("HTTP %d: %s", e.status, e.body) }

// errRetry is a retryable answer, with the wait the platform asked for.
type errRetry struct {
	err   error
	after time.Duration
}

func (e *errRetry) Error() string { return e.err.Error() }

// Send delivers b and returns one outcome per record. An error means the batch's fate
// is unknown (retries exhausted, or ctx ended): send the same batch again.
func (c *Client) Send(ctx context.Context, b Batch) ([]Outcome, error) {
	results, err := c.sendRetrying(ctx, b)
	var ref *errRefused
	switch {
	case err == nil:
		return results, nil
	case errors.As(err, &ref):
		if len(b.Records) == 1 {
			return []Outcome{{ID: b.Records[0].ID, Batch: b.ID, Reason: ref.Error()}}, nil
		}
		// Find the refused records: halves, each its own request and key.
		mid := len(b.Records) / 2
		var out []Outcome
		for i, part := range [][]Item{b.Records[:mid], b.Records[mid:]} {
			o, err := c.Send(ctx, Batch{ID: b.ID + "/" + strconv.Itoa(i), Records: part})
			if err != nil {
				return nil, err
			}
			out = append(out, o...)
		}
		return out, nil
	default:
		return nil, err
	}
}

// sendRetrying posts one batch until it is answered for good.
func (c *Client) sendRetrying(ctx context.Context, b Batch) ([]Outcome, error) {
	body, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("sharing: encode batch %s: %w", b.ID, err)
	}
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval, bo.MaxElapsedTime = c.o.RetryInitial, c.o.RetryMax, 0
	start := c.o.Now()
	for attempt := 1; ; attempt++ {
		if wait := c.breakerWait(); wait > 0 {
			c.o.Logger.Warn("sharing: circuit open; waiting before the next attempt", "batch", b.ID, "wait", wait)
			if err := sleep(ctx, wait); err != nil {
				return nil, err
			}
		}
		out, err := c.post(ctx, b, body)
		var rt *errRetry
		switch {
		case err == nil:
			c.success()
			c.attempt("ok")
			return out, nil
		case errors.As(err, new(*errRefused)):
			c.success() // the platform answers: the circuit stays closed
			c.attempt("refused")
			return nil, err
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.As(err, &rt):
			c.failure()
			c.attempt("retry")
			bus.BatchFailing(ctx) // a rebalance may abandon this batch rather than wait for the platform
			// Give up only after an attempt made once MaxElapsed has passed: a
			// Retry-After longer than the time left is still waited for, capped at
			// MaxElapsed itself, so a short remaining budget never makes the sink call
			// again sooner than asked (one batch may take up to about 2×MaxElapsed).
			if c.o.Now().Sub(start) >= c.o.MaxElapsed {
				return nil, fmt.Errorf("sharing: batch %s not delivered after %d attempts in %s: %w", b.ID, attempt, c.o.MaxElapsed, rt.err)
			}
			wait := bo.NextBackOff()
			if rt.after > wait {
				wait = min(rt.after, c.o.MaxElapsed)
			}
			c.o.Logger.Warn("sharing: push failed; retrying with the same idempotency key", "batch", b.ID, "attempt", attempt, "retry_in", wait, "err", rt.err)
			if err := sleep(ctx, wait); err != nil {
				return nil, err
			}
		default:
			return nil, err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (c *Client) attempt(result string) {
	if c.o.OnAttempt != nil {
		c.o.OnAttempt(result)
	}
}

// breakerWait is how long the open circuit still holds requests back.
func (c *Client) breakerWait() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.openUntil.IsZero() {
		return 0
	}
	return c.openUntil.Sub(c.o.Now())
}

func (c *Client) failure() {
	c.mu.Lock()
	c.failures++
	open := c.failures >= c.o.BreakerFailures
	wasOpen := !c.openUntil.IsZero()
	if open {
		c.openUntil = c.o.Now().Add(c.o.BreakerCooldown) // a failed probe opens it again
	}
	c.mu.Unlock()
	if open && !wasOpen {
		c.o.Logger.Error("sharing: circuit opened after consecutive failures", "failures", c.o.BreakerFailures, "cooldown", c.o.BreakerCooldown)
		if c.o.OnBreaker != nil {
			c.o.OnBreaker(true)
		}
	}
}

func (c *Client) success() {
	c.mu.Lock()
	wasOpen := !c.openUntil.IsZero()
	c.failures, c.openUntil = 0, time.Time{}
	c.mu.Unlock()
	if wasOpen {
		c.o.Logger.Info("sharing: circuit closed")
		if c.o.OnBreaker != nil {
			c.o.OnBreaker(false)
		}
	}
}

// post makes one attempt.
func (c *Client) post(ctx context.Context, b Batch, body []byte) ([]Outcome, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.o.URL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	ts := strconv.FormatInt(c.o.Now().UnixMilli(), 10)
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Idempotency-Key", b.ID)
	req.Header.Set("X-Shouwang-Timestamp", ts)
	if c.o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.o.Token)
	}
	if len(c.o.SigningKey) > 0 {
		req.Header.Set("X-Shouwang-Signature", Sign(c.o.SigningKey, c.path, ts, b.ID, body))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &errRetry{err: err} // timeouts, resets, refused connections
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, &errRetry{err: fmt.Errorf("read the answer: %w", err)}
	}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return outcomes(b, answer), nil
	case resp.StatusCode == 408 || resp.StatusCode == 425 || resp.StatusCode == 429 || resp.StatusCode >= 500:
		return nil, &errRetry{err: fmt.Errorf("HTTP %d: %s", resp.StatusCode, truncate(answer)), after: retryAfter(resp.Header.Get("Retry-After"), c.o.Now())}
	case resp.StatusCode == 400 || resp.StatusCode == 409 || resp.StatusCode == 413 || resp.StatusCode == 422:
		return nil, &errRefused{status: resp.StatusCode, body: truncate(answer)}
	default:
		// 401, 403, 404, 405, …: the sink's configuration or credentials, not the
		// records. Stop (the batch stays pending) rather than dead-letter every record.
		return nil, fmt.Errorf("sharing: batch %s: HTTP %d: %s (check the sink's url, auth_token and signing_key)", b.ID, resp.StatusCode, truncate(answer))
	}
}

// outcomes reads per-record results from a 2xx answer; records it does not mention
// (or an answer without results) are accepted.
func outcomes(b Batch, answer []byte) []Outcome {
	var parsed struct {
		Results []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
			Reason string `json:"reason"`
		} `json:"results"`
	}
	_ = json.Unmarshal(answer, &parsed) // an answer without results accepts the batch
	refused := map[string]string{}
	for _, r := range parsed.Results {
		if r.Status == "rejected" {
			refused[r.ID] = r.Reason
			if r.Reason == "" {
				refused[r.ID] = "rejected by the sharing platform (no reason given)"
			}
		}
	}
	out := make([]Outcome, len(b.Records))
	for i, it := range b.Records {
		reason, bad := refused[it.ID]
		out[i] = Outcome{ID: it.ID, Batch: b.ID, OK: !bad, Reason: reason}
	}
	return out
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

func truncate(b []byte) string {
	const max = 512
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}
