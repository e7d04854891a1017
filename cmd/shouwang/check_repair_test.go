package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The closed loop: the whole pipeline (binlog capture, registry mapping, provincial
// sink) runs with a checker set to on_mismatch: resnapshot. Households lost from the
// provincial database and one whose category was changed there are found to the
// key, re-snapshotted from the national database through the signal topic, and
// re-verified as matching; a household only the provincial database has stays in the
// report (a source cannot re-read a row it does not have).
func TestCheckRepairsByResnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole pipeline")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env := newRegistryEnv(t, ctx, 7, 300, "rep", 300, `checkers:
  - name: nat_prov
    source: national
    sink: provincial
    level: county
    schedule: 24h
    on_mismatch: resnapshot
`)
	w, cfg := startPipeline(t, ctx, "repair.yaml", env.yaml)
	jobs, err := w.checkJobs()
	if err != nil || len(jobs) != 1 {
		t.Fatalf("check jobs %v, %v", jobs, err)
	}
	job := jobs[0]
	job.settle, job.repairWait = 300*time.Millisecond, time.Minute
	// Wait for the snapshot to land: the check matches.
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		rc, err := newCheckRun(cfg, job.cfg, "")
		if err == nil {
			rc.opts.Settle = -1
			rep, err := rc.run(ctx)
			rc.close()
			if err == nil && rep.Match && rep.Indicators[0].Sink > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the provincial database never matched the national one: %v", err)
		}
	}
	pool := env.pool
	var lost []string
	rows, err := pool.Query(ctx, "SELECT key FROM fpjc.household ORDER BY key LIMIT 3")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		lost = append(lost, k)
	}
	rows.Close()
	var changed string
	if err := pool.QueryRow(ctx, "SELECT key FROM fpjc.household WHERE monitoring_category IS NOT NULL ORDER BY key DESC LIMIT 1").Scan(&changed); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"DELETE FROM fpjc.person WHERE household_no = ANY($1)",
		"DELETE FROM fpjc.household WHERE key = ANY($1)",
	} {
		if _, err := pool.Exec(ctx, q, lost); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, "UPDATE fpjc.household SET monitoring_category = CASE WHEN monitoring_category = 1 THEN 2 ELSE 1 END WHERE key = $1", changed); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO fpjc.household (key, version, household_no, region_code) SELECT 'HEXTRA', 1, 'HEXTRA', region_code FROM fpjc.household WHERE key = $1`, changed); err != nil {
		t.Fatal(err)
	}

	rep := job.once(ctx)
	if rep == nil {
		t.Fatal("the check failed")
	}
	var left []string
	for ind, diffs := range rep.DifferingKeys() {
		for _, d := range diffs {
			left = append(left, ind+":"+d.Kind+":"+d.Key)
		}
	}
	if strings.Join(left, " ") != "households:extra:HEXTRA" {
		t.Errorf("after the repair %v differ, want only households:extra:HEXTRA", left)
	}
	var back int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM fpjc.household WHERE key = ANY($1) AND NOT deleted", lost).Scan(&back); err != nil || back != len(lost) {
		t.Errorf("%d of the %d lost households are back (%v)", back, len(lost), err)
	}
	if got := testutil.ToFloat64(job.m.repaired.WithLabelValues("nat_prov", "unrepaired")); got != 1 {
		t.Errorf("unrepaired keys metric %v, want 1 (HEXTRA)", got)
	}
	if got := testutil.ToFloat64(job.m.repaired.WithLabelValues("nat_prov", "repaired")); got < float64(len(lost)+1) {
		t.Errorf("repaired keys metric %v, want at least %d", got, len(lost)+1)
	}
	if got := testutil.ToFloat64(job.m.mismatched.WithLabelValues("nat_prov", "county")); got != 1 {
		t.Errorf("mismatched regions gauge %v, want 1 (HEXTRA's county)", got)
	}
	if _, err := os.Stat(job.reportPath()); err != nil {
		t.Errorf("no saved report: %v", err)
	}
}
