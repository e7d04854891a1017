package deploy

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"unicode"

	"gopkg.in/yaml.v3"
)

// repoRoot is the module root, seen from this package's directory.
const repoRoot = ".."

// announced are metrics named by alerts and the dashboard before the code that
// registers them has landed on this branch: the watchdogs (issue #10) export exactly
// these names. Once they are registered the entry is redundant (the test says so).
var announced = map[string]string{}

// external are series that Prometheus itself provides, not the workers.
var external = map[string]bool{"up": true}

var (
	reName     = regexp.MustCompile(`Name:\s*"(shouwang_[a-z0-9_]+)"`)
	reNSName   = regexp.MustCompile(`Namespace:\s*"([a-z0-9_]+)",\s*Subsystem:\s*"([a-z0-9_]+)",\s*Name:\s*"([a-z0-9_]+)"`)
	reHistName = regexp.MustCompile(`(?s)HistogramOpts\{\s*Name:\s*"(shouwang_[a-z0-9_]+)"`)
)

// registeredMetrics greps the module's non-test Go sources for the metric names they
// register (Opts{Name: "shouwang_…"} or Namespace/Subsystem/Name). Histograms also
// expose <name>_bucket, _sum and _count.
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "testdata", "vendor", "node_modules":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		src := string(b)
		for _, m := range reName.FindAllStringSubmatch(src, -1) {
			names[m[1]] = true
		}
		for _, m := range reNSName.FindAllStringSubmatch(src, -1) {
			names[m[1]+"_"+m[2]+"_"+m[3]] = true
		}
		for _, m := range reHistName.FindAllStringSubmatch(src, -1) {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				names[m[1]+suffix] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A sanity floor: if the patterns stop matching the code, every check below would
	// fail for the wrong reason.
	for _, must := range []string{"shouwang_dlq_records_total", "shouwang_capture_events_total", "shouwang_filedrop_files_total", "shouwang_sink_batch_seconds_bucket"} {
		if !names[must] {
			t.Fatalf("metric scan of the Go sources did not find %s: the registration patterns in deploy_test.go need updating", must)
		}
	}
	return names
}

var (
	reQuoted  = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	reBraces  = regexp.MustCompile(`\{[^{}]*\}`)
	reRange   = regexp.MustCompile(`\[[^\[\]]*\]`)
	reGroup   = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	reIdent   = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	reLabelVs = regexp.MustCompile(`label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)`)
)

var promqlWords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true,
	"without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"inf": true, "nan": true, "Inf": true, "NaN": true, "atan2": true,
}

// metricNames returns the metric names a PromQL expression selects: identifiers that
// are not functions, aggregations, keywords, label names, label values or durations.
// Grafana's $variables are removed first.
func metricNames(expr string) []string {
	s := reQuoted.ReplaceAllString(expr, `""`)
	s = regexp.MustCompile(`\$\{?[A-Za-z_]+\}?`).ReplaceAllString(s, "")
	s = reBraces.ReplaceAllString(s, "{}")
	s = reRange.ReplaceAllString(s, "[]")
	s = reGroup.ReplaceAllString(s, "")
	var out []string
	for _, loc := range reIdent.FindAllStringIndex(s, -1) {
		word := s[loc[0]:loc[1]]
		if loc[0] > 0 {
			if c := rune(s[loc[0]-1]); unicode.IsDigit(c) || c == '.' {
				continue // 1e9, 5m, 0.5
			}
		}
		rest := strings.TrimLeft(s[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") || promqlWords[word] {
			continue
		}
		out = append(out, word)
	}
	return out
}

func TestMetricNamesOfExpressions(t *testing.T) {
	for expr, want := range map[string]string{
		`up{job=~"shouwang.*"} == 0`: "up",
		`(time() - max by (source) (shouwang_a_seconds > 0)) > 6 * 3600 and on (source) max by (source) (shouwang_b) == 0`: "shouwang_a_seconds shouwang_b",
		`histogram_quantile(0.95, sum by (le) (rate(shouwang_c_bucket{instance=~"$instance"}[$__rate_interval])))`:         "shouwang_c_bucket",
		`60 * sum by (stage, reason) (rate(shouwang_dlq_records_total[10m])) > 1e3 or vector(0)`:                           "shouwang_dlq_records_total",
	} {
		if got := strings.Join(metricNames(expr), " "); got != want {
			t.Errorf("metricNames(%q) = %q, want %q", expr, got, want)
		}
	}
}

// checkMetrics fails for every metric an expression names that the code does not
// register.
func checkMetrics(t *testing.T, where string, expr string, known map[string]bool, used map[string]bool) {
	t.Helper()
	names := metricNames(expr)
	if len(names) == 0 {
		t.Errorf("%s: expression names no metric: %s", where, expr)
	}
	for _, n := range names {
		used[n] = true
		if known[n] || external[n] {
			continue
		}
		if _, ok := announced[n]; ok {
			continue
		}
		t.Errorf("%s: metric %s is not registered by any Go source (expression %s)", where, n, expr)
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	var rf ruleFile
	b, err := os.ReadFile("prometheus/shouwang.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatalf("prometheus/shouwang.rules.yml: %v", err)
	}
	if len(rf.Groups) == 0 {
		t.Fatal("prometheus/shouwang.rules.yml has no groups")
	}
	return rf
}

// TestAlertMetricsExist: every metric an alert expression names is registered by the
// code (or announced), so an alert cannot watch a series that never exists.
func TestAlertMetricsExist(t *testing.T) {
	known := registeredMetrics(t)
	used := map[string]bool{}
	rf := loadRules(t)
	for name := range recorded(rf) {
		known[name] = true // recording rules of the file; their own expressions are checked below
	}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			checkMetrics(t, "rule "+r.Alert+r.Record, r.Expr, known, used)
		}
	}
	reportAnnounced(t, known, used)
}

// recorded maps the rule file's recording rules to their expressions.
func recorded(rf ruleFile) map[string]string {
	m := map[string]string{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				m[r.Record] = r.Expr
			}
		}
	}
	return m
}

// sourceMetrics are the metrics an expression reads, through recording rules.
func sourceMetrics(expr string, rec map[string]string) []string {
	var out []string
	for _, n := range metricNames(expr) {
		if e, ok := rec[n]; ok {
			out = append(out, sourceMetrics(e, rec)...)
		} else {
			out = append(out, n)
		}
	}
	return out
}

func reportAnnounced(t *testing.T, known, used map[string]bool) {
	t.Helper()
	for n, why := range announced {
		if known[n] {
			t.Logf("%s is registered now: remove it from announced (%s)", n, why)
		} else if used[n] {
			t.Logf("%s is used before its code landed (%s)", n, why)
		}
	}
}

// githubAnchor is the anchor GitHub (and most Markdown renderers) give a heading.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '-':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}

func runbookAnchors(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	inCode := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inCode = !inCode
			continue
		}
		if !inCode && strings.HasPrefix(line, "#") {
			anchors[githubAnchor(strings.TrimLeft(line, "#"))] = true
		}
	}
	return anchors
}

func hasHan(s string) bool {
	for _, r := range s {
		if unicode.Is(unicode.Han, r) {
			return true
		}
	}
	return false
}

var (
	reTemplate = regexp.MustCompile(`\{\{[^}]*\}\}`)
	reWord     = regexp.MustCompile(`[A-Za-z]{2,}`)
)

// hasEnglish: at least three English words outside the {{ templates }}.
func hasEnglish(s string) bool {
	return len(reWord.FindAllString(reTemplate.ReplaceAllString(s, ""), -1)) >= 3
}

// TestAlertAnnotations: every alert has a severity, Chinese and English summary and
// description, a runbook entry that exists in docs/operations.md, and a promtool test.
func TestAlertAnnotations(t *testing.T) {
	anchors := runbookAnchors(t)
	tested := testedAlerts(t)
	seen := map[string]bool{}
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if seen[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			seen[r.Alert] = true
			switch r.Labels["severity"] {
			case "critical", "warning":
			default:
				t.Errorf("alert %s: severity %q, want critical or warning", r.Alert, r.Labels["severity"])
			}
			for _, k := range []string{"summary", "description"} {
				v := r.Annotations[k]
				if !hasHan(v) || !hasEnglish(v) {
					t.Errorf("alert %s: annotation %s must be in Chinese and English: %q", r.Alert, k, v)
				}
			}
			rb := r.Annotations["runbook"]
			anchor, ok := strings.CutPrefix(rb, "docs/operations.md#")
			if !ok || !anchors[anchor] {
				t.Errorf("alert %s: runbook %q is not docs/operations.md#<heading> of an existing heading", r.Alert, rb)
			} else if anchor != strings.ToLower(r.Alert) {
				t.Errorf("alert %s: runbook anchor %q, want #%s (the entry named after the alert)", r.Alert, anchor, strings.ToLower(r.Alert))
			}
			if !tested[r.Alert] {
				t.Errorf("alert %s has no promtool test in prometheus/tests/*.test.yml", r.Alert)
			}
		}
	}
}

// testedAlerts returns the alerts that some promtool test expects to fire.
func testedAlerts(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("prometheus/tests/*.test.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no promtool tests in prometheus/tests (%v)", err)
	}
	tested := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var tf struct {
			Tests []struct {
				AlertRuleTest []struct {
					Alertname string           `yaml:"alertname"`
					ExpAlerts []map[string]any `yaml:"exp_alerts"`
				} `yaml:"alert_rule_test"`
			} `yaml:"tests"`
		}
		if err := yaml.Unmarshal(b, &tf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, tc := range tf.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					tested[a.Alertname] = true
				}
			}
		}
	}
	return tested
}

// TestDashboardMetricsExist parses the Grafana dashboard and checks every query of
// every panel (and of the template variables) against the metrics the code registers.
func TestDashboardMetricsExist(t *testing.T) {
	b, err := os.ReadFile("grafana/shouwang-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID        string            `json:"uid"`
		Title      string            `json:"title"`
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Query      any    `json:"query"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana/shouwang-dashboard.json is not valid JSON: %v", err)
	}
	if dash.UID == "" || dash.Title == "" || len(dash.Panels) == 0 {
		t.Fatal("dashboard needs a uid, a title and panels")
	}
	hasDatasourceVar := false
	known := registeredMetrics(t)
	used := map[string]bool{}
	for _, v := range dash.Templating.List {
		if v.Type == "datasource" && v.Name == "datasource" {
			hasDatasourceVar = true
		}
		if m := reLabelVs.FindStringSubmatch(v.Definition); m != nil {
			checkMetrics(t, "variable "+v.Name, m[1], known, used)
		}
	}
	if !hasDatasourceVar {
		t.Error("dashboard has no datasource variable named datasource")
	}

	var walk func(where string, raw json.RawMessage)
	exprs := 0
	walk = func(where string, raw json.RawMessage) {
		var p struct {
			ID         int                   `json:"id"`
			Title      string                `json:"title"`
			Type       string                `json:"type"`
			Datasource *struct{ UID string } `json:"datasource"`
			Targets    []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
			Panels []json.RawMessage `json:"panels"`
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		where = where + "/" + p.Title
		if p.Type != "row" {
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %s: datasource must be the ${datasource} variable", where)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %s has no query", where)
			}
		}
		for _, tg := range p.Targets {
			exprs++
			checkMetrics(t, "panel "+where, tg.Expr, known, used)
		}
		for _, c := range p.Panels {
			walk(where, c)
		}
	}
	for _, p := range dash.Panels {
		walk("", p)
	}
	t.Logf("%d panel queries checked", exprs)

	// The dashboard shows every metric an alert watches.
	rf := loadRules(t)
	rec := recorded(rf)
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			for _, n := range sourceMetrics(r.Expr, rec) {
				if !used[n] {
					t.Errorf("alert %s watches %s, which no dashboard panel shows", r.Alert, n)
				}
			}
		}
	}
	reportAnnounced(t, known, used)
}

// TestDeployYAMLParses parses every YAML file under deploy/ (all documents of a
// multi-document file) with yaml.v3.
func TestDeployYAMLParses(t *testing.T) {
	var files []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".yml") || strings.HasSuffix(path, ".yaml")) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	for _, f := range files {
		docs := yamlDocs(t, f)
		if len(docs) == 0 {
			t.Errorf("%s: no YAML document", f)
		}
	}
	t.Logf("%d YAML files parsed", len(files))
}

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("%s: document %d: %v", path, len(docs)+1, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	return docs
}
