package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/shouwang/shouwang/internal/testenv"
)

// shippedRules is the alert rule file deployments load.
const shippedRules = "../../deploy/prometheus/shouwang.rules.yml"

// shortenFor returns the rule file src with every `for:` duration set to d and
// nothing else changed, so a test can see alerts fire without waiting 30 minutes. It
// fails when the file has no `for:` at all (the rewrite would prove nothing).
func shortenFor(t *testing.T, src []byte, d string) []byte {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		t.Fatalf("%s: %v", shippedRules, err)
	}
	n := 0
	var walk func(*yaml.Node)
	walk = func(node *yaml.Node) {
		if node.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(node.Content); i += 2 {
				if node.Content[i].Value == "for" && node.Content[i+1].Kind == yaml.ScalarNode {
					node.Content[i+1].Value = d
					n++
				}
			}
		}
		for _, c := range node.Content {
			walk(c)
		}
	}
	walk(&doc)
	if n == 0 {
		t.Fatalf("%s has no `for:` to shorten", shippedRules)
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPrometheusAlertFires runs the shipped alert rules in a real Prometheus that
// scrapes a running pipeline (binlog capture from a private MariaDB, the registry
// mapping, the provincial sink into a private PostgreSQL). Only the `for:` durations
// are shortened. After the snapshot has landed, Prometheus scrapes the worker and
// evaluates the rules, and ShouwangDLQGrowing is not firing; then a household with a
// village code outside the region table is inserted into the national database, the
// transform dead-letters it, and the alert fires for stage transform.
func TestPrometheusAlertFires(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole pipeline and Prometheus")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	src, err := os.ReadFile(shippedRules)
	if err != nil {
		t.Fatal(err)
	}
	rules := filepath.Join(t.TempDir(), "shouwang.rules.yml")
	if err := os.WriteFile(rules, shortenFor(t, src, "2s"), 0o644); err != nil {
		t.Fatal(err)
	}

	const households = 20
	env := newRegistryEnv(t, ctx, 11, households, "prom", 400, "")
	w, _ := startPipeline(t, ctx, "prometheus-alert.yaml", env.yaml)
	testenv.Eventually(t, 2*time.Minute, "the snapshot in the provincial database", func() (bool, string) {
		var n int
		err := env.pool.QueryRow(ctx, "SELECT count(*) FROM fpjc.household").Scan(&n)
		return err == nil && n == households, fmt.Sprintf("%d households, %v", n, err)
	})

	prom := testenv.NewPrometheus(t, testenv.PrometheusOptions{
		ScrapeTargets: []string{w.server.Addr()},
		RuleFiles:     []string{rules},
	})
	// The target is up and the rule group has been evaluated after a scrape: only then
	// does "not firing" mean something.
	var scraped time.Time
	testenv.Eventually(t, time.Minute, "Prometheus scraping the worker", func() (bool, string) {
		ts, err := prom.Targets(ctx)
		if err != nil || len(ts) != 1 {
			return false, fmt.Sprintf("targets %+v, %v", ts, err)
		}
		scraped = ts[0].LastScrape
		return ts[0].Health == "up", fmt.Sprintf("target %+v", ts[0])
	})
	testenv.Eventually(t, time.Minute, "the shipped rules evaluated after the first scrape", func() (bool, string) {
		gs, err := prom.RuleGroups(ctx)
		if err != nil || len(gs) == 0 {
			return false, fmt.Sprintf("groups %+v, %v", gs, err)
		}
		for _, g := range gs {
			for _, r := range g.Rules {
				if r.Health == "err" {
					t.Fatalf("rule %s of group %s does not evaluate: %s", r.Name, g.Name, r.LastError)
				}
			}
			if !g.LastEvaluation.After(scraped) {
				return false, fmt.Sprintf("group %s last evaluated %v, first scrape %v", g.Name, g.LastEvaluation, scraped)
			}
		}
		return true, ""
	})
	up, err := prom.Query(ctx, `up{job="shouwang"}`)
	if err != nil || len(up) != 1 || up[0].Float() != 1 {
		t.Fatalf("up{job=\"shouwang\"} = %+v, %v; want one series at 1", up, err)
	}
	// The worker's series are in Prometheus (the transform metrics among them).
	if s, err := prom.Query(ctx, `shouwang_transform_records_in_total`); err != nil || len(s) == 0 {
		ls, _ := prom.Query(ctx, `count by (__name__) ({job="shouwang", __name__=~"shouwang_transform_.*"})`)
		t.Fatalf("no shouwang_transform_records_in_total in Prometheus (%v); transform series: %+v", err, ls)
	}
	dlqGrowing := func() (firing bool, state string) {
		alerts, err := prom.Alerts(ctx)
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, a := range alerts {
			seen = append(seen, a.Labels["alertname"]+"{stage="+a.Labels["stage"]+"}:"+a.State)
			if a.Labels["alertname"] == "ShouwangDLQGrowing" && a.Labels["stage"] == "transform" &&
				a.Labels["severity"] == "critical" && a.State == "firing" {
				firing = true
			}
		}
		rec, err := prom.Query(ctx, `shouwang:dead_letters:increase10m`)
		return firing, fmt.Sprintf("alerts %v; shouwang:dead_letters:increase10m %+v (%v)", seen, rec, err)
	}
	// Several evaluations with the rules' 2s `for:` pass before the fault.
	for range 5 {
		if firing, state := dlqGrowing(); firing {
			t.Fatalf("ShouwangDLQGrowing fires before any dead letter: %s", state)
		}
		rec, err := prom.Query(ctx, `shouwang:dead_letters:increase10m{stage="transform"} > 0`)
		if err != nil || len(rec) != 0 {
			t.Fatalf("transform dead letters recorded before the fault: %+v, %v", rec, err)
		}
		time.Sleep(time.Second)
	}

	// The fault: a household in a village the region table does not know. The
	// registry mapping requires a valid region code and dead-letters the change.
	if err := env.m.Exec(ctx, "national", `INSERT INTO household (hh_no, county_name, township_name, village_name, village_code, household_type, head_name, size, updated_at)
		VALUES ('HBADREGION01', '无此县', '无此乡', '无此村', '519999999999', '脱贫户', '测试', 1, NOW())`); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 90*time.Second, "ShouwangDLQGrowing firing for stage transform", dlqGrowing)
	_, state := dlqGrowing()
	t.Logf("after the fault: %s", state)
	rec, err := prom.Query(ctx, `shouwang:dead_letters:increase10m{stage="transform", reason="mapping"}`)
	if err != nil || len(rec) != 1 || rec[0].Float() < 1 {
		t.Errorf("shouwang:dead_letters:increase10m{stage=\"transform\",reason=\"mapping\"} = %+v, %v; want one series at least 1", rec, err)
	}
}
