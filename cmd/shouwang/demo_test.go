package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shouwang/shouwang/internal/testenv"
)

// TestDemoEndToEnd runs `shouwang demo` as `make demo` does (smaller), against the
// machine's MariaDB and PostgreSQL binaries, so the README's first command is proven
// at every commit.
func TestDemoEndToEnd(t *testing.T) {
	skipDemo(t)
	var out bytes.Buffer
	code := runDemo([]string{"--once", "--households", "300"}, &out) // its own temp dir, removed at the end
	text := out.String()
	t.Log(text)
	if code != 0 {
		t.Fatalf("demo exited %d", code)
	}
	if !strings.Contains(text, "The demo reached the end of today's pipeline") {
		t.Fatal("demo did not reach its end")
	}
	// The not-for-production warning is the embedded broker's banner on stderr, once;
	// the summary does not repeat it.
	if strings.Contains(strings.ToLower(text), "not for production") {
		t.Error("the demo summary repeats the not-for-production warning of the banner")
	}
	// Every generated row reached the bus: compare the generator's totals with the
	// snapshot events counted from Kafka.
	persons := regexp.MustCompile(`(\d+) households, (\d+) persons`).FindStringSubmatch(text)
	if persons == nil {
		t.Fatal("no generator totals in the output")
	}
	want := map[string]string{"household": persons[1], "person": persons[2]}
	for table, n := range want {
		re := regexp.MustCompile(`demo\.raw\.national\.` + table + `\s+(\d+) events\s+r=(\d+)`)
		m := re.FindStringSubmatch(text)
		if m == nil || m[2] != n {
			t.Errorf("national.%s: bus shows %v, generator wrote %s", table, m, n)
		}
	}
	if regexp.MustCompile(`(rejected|held) [1-9]`).MatchString(text) {
		t.Error("a generated department file was rejected or held")
	}
	// The weekly reload is collapsed into exactly the true changes of the ground truth.
	truth := regexp.MustCompile(`(\d+) really changed`).FindStringSubmatch(text)
	emitted := regexp.MustCompile(`capture emitted (\d+) events for it`).FindStringSubmatch(text)
	if truth == nil || emitted == nil || truth[1] != emitted[1] || truth[1] == "0" {
		t.Errorf("push: true changes %v, emitted %v: want equal and non-zero", truth, emitted)
	}
	m := regexp.MustCompile(`demo\.dlq\.capture\s+(\d+) events`).FindStringSubmatch(text)
	if m == nil {
		t.Fatal("DLQ topic not shown")
	}
	if n, _ := strconv.Atoi(m[1]); n != 0 {
		t.Errorf("%d dead letters from clean generated data", n)
	}
	// The provincial database holds every generated household and person plus the
	// push's creates; the push's deletes are soft (the row stays, not live).
	pushed := func(what string) int {
		m := regexp.MustCompile(what + `=(\d+)`).FindStringSubmatch(text)
		if m == nil {
			return 0
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	for table, gen := range want {
		m := regexp.MustCompile(`fpjc\.` + table + `\s+(\d+) rows \((\d+) live\)`).FindStringSubmatch(text)
		if m == nil {
			t.Errorf("fpjc.%s not shown", table)
			continue
		}
		g, _ := strconv.Atoi(gen)
		rows, _ := strconv.Atoi(m[1])
		live, _ := strconv.Atoi(m[2])
		if wantRows := g + pushed(table+"/c"); rows != wantRows || live != wantRows-pushed(table+"/d") {
			t.Errorf("fpjc.%s: %d rows, %d live; want %d rows, %d live", table, rows, live, wantRows, wantRows-pushed(table+"/d"))
		}
	}
	for _, table := range []string{"warning", "quality_issue", "discrepancy"} {
		m := regexp.MustCompile(`fpjc\.` + table + `\s+(\d+) rows`).FindStringSubmatch(text)
		if m == nil || m[1] == "0" {
			t.Errorf("fpjc.%s: %v, want rows", table, m)
		}
	}
	// Every pending discrepancy is in a department's feedback workbook.
	if m := regexp.MustCompile(`(\d+) pending discrepancies listed for (\d+) departments \(the provincial database holds (\d+)\)`).FindStringSubmatch(text); m == nil || m[1] != m[3] || m[1] == "0" {
		t.Errorf("feedback lists %v: want every pending discrepancy listed, and some", m)
	}
	if !regexp.MustCompile(`all at the end of their topics; 0 dead letters`).MatchString(text) {
		t.Error("the sink did not finish with 0 dead letters")
	}
	// The sharing platform received the base data once per batch, signed and masked,
	// and the sink's receipts account for every record it received.
	got := regexp.MustCompile(`: (\d+) records in (\d+) batches \(household=(\d+) person=(\d+)\); \d+ requests, 0 refused for token or signature; 0 ID numbers in clear`).FindStringSubmatch(text)
	receipts := regexp.MustCompile(`push receipts of sink \w+: (\d+) batches, (\d+) records accepted, 0 rejected`).FindStringSubmatch(text)
	if got == nil || receipts == nil || got[1] != receipts[2] || got[2] != receipts[1] {
		t.Errorf("sharing platform %v, receipts %v: want every pushed record received once and receipted", got, receipts)
	}
	// The exchange table holds one row per household and person of the provincial
	// database (deletes as delete rows).
	ex := regexp.MustCompile(`exchange table fpjc_base_data of sink \w+ \(sharing platform database\): household/upsert=(\d+)(?: person/delete=(\d+))? person/upsert=(\d+)`).FindStringSubmatch(text)
	hh := regexp.MustCompile(`fpjc\.household\s+(\d+) rows`).FindStringSubmatch(text)
	pp := regexp.MustCompile(`fpjc\.person\s+(\d+) rows \((\d+) live\)`).FindStringSubmatch(text)
	if ex == nil || hh == nil || pp == nil || ex[1] != hh[1] || ex[3] != pp[2] {
		t.Errorf("exchange table %v against provincial households %v and persons %v", ex, hh, pp)
	}
	if got != nil {
		h, _ := strconv.Atoi(got[3])
		p, _ := strconv.Atoi(got[4])
		gh, _ := strconv.Atoi(persons[1])
		gp, _ := strconv.Atoi(persons[2])
		if h < gh || p < gp { // every household and person at least once
			t.Errorf("sharing platform received %d households and %d persons of %d and %d", h, p, gh, gp)
		}
	}
	// The regional totals check reconciles both checkers, every indicator, and counts
	// what the provincial database holds.
	for _, c := range []string{"national_vs_provincial", "national_vs_sharing"} {
		if !strings.Contains(text, c+": 国办前置库 national ↔ ") {
			t.Errorf("checker %s did not run", c)
		}
	}
	if n := strings.Count(text, "一致 match"); n != 14 || strings.Contains(text, "MISMATCH") {
		t.Errorf("%d indicator totals match (want 7 per checker), or one mismatches", n)
	}
	if m := regexp.MustCompile(`户数\s+(\d+) ↔ (\d+)\s+一致`).FindStringSubmatch(text); m == nil || hh == nil || m[2] != hh[1] {
		t.Errorf("checked households %v, provincial households %v", m, hh)
	}
	checkDemoSummary(t, text, truth)
}

func skipDemo(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end demo skipped with -short")
	}
	if os.Getenv("CI") == "" && os.Getenv("SHOUWANG_REQUIRE_SERVERS") == "" {
		if _, err := os.Stat("/usr/sbin/mariadbd"); err != nil {
			t.Skip("mariadbd not installed (CI fails instead of skipping)")
		}
	}
}

// TestDemoRunsUntilSignal: without --once the demo keeps the pipeline running after
// the summary, metrics served, until SIGINT; then it stops every server it started
// (their ports close), removes its temporary directory and exits 0.
func TestDemoRunsUntilSignal(t *testing.T) {
	skipDemo(t)
	out := &testenv.SyncBuffer{}
	done := make(chan int, 1)
	go func() { done <- runDemo([]string{"--households", "100"}, out) }()
	const running = "press Ctrl-C to stop"
	deadline := time.After(5 * time.Minute)
	for !strings.Contains(out.String(), running) {
		select {
		case code := <-done:
			t.Fatalf("demo exited %d before its summary:\n%s", code, out.String())
		case <-deadline:
			t.Fatalf("no %q after 5 minutes:\n%s", running, out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	text := out.String()
	find := func(re string) string {
		m := regexp.MustCompile(re).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("no %s in the output:\n%s", re, text)
		}
		return m[1]
	}
	dir := find(`work directory (\S+)`)
	metrics := find(`metrics at http://(\S+)/metrics\)`)
	addrs := map[string]string{
		"metrics":    metrics,
		"MariaDB":    find(`MariaDB (\S+) \(`),
		"PostgreSQL": find(`PostgreSQL .* (127\.0\.0\.1:\d+), sharing platform`),
		"platform":   find(`sharing platform stand-in http://([^/\s]+)`),
		"Kafka":      find(`Kafka \(in-memory\) ([^;\s]+);`),
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("work directory while running: %v", err)
	}
	// Still running a while after the summary: metrics served, servers listening.
	time.Sleep(2 * time.Second)
	select {
	case code := <-done:
		t.Fatalf("demo exited %d without a signal", code)
	default:
	}
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatalf("metrics after the summary: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "shouwang_") {
		t.Fatalf("metrics after the summary: %s, %d bytes", resp.Status, len(body))
	}
	for what, addr := range addrs {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatalf("%s at %s not listening while the demo runs: %v", what, addr, err)
		}
		c.Close()
	}

	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("demo exited %d on SIGINT, want 0", code)
		}
	case <-time.After(time.Minute):
		t.Fatal("demo still running a minute after SIGINT")
	}
	if !strings.Contains(out.String(), "stopping every worker and server the demo started, then removing "+dir) {
		t.Errorf("no stopping line after SIGINT:\n%s", out.String()[len(text):])
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("work directory %s after SIGINT: %v, want removed", dir, err)
	}
	for what, addr := range addrs {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still listening at %s after SIGINT", what, addr)
		}
	}
}

// checkDemoSummary checks the Chinese summary (本周摘要) against what the earlier steps
// printed: each total equals the provincial table's status count, each breakdown adds
// up to its total, and the totals checks reconcile.
func checkDemoSummary(t *testing.T, text string, truth []string) {
	t.Helper()
	_, summary, ok := strings.Cut(text, "本周摘要 Weekly summary")
	if !ok {
		t.Fatal("no summary (本周摘要)")
	}
	section := func(from, to string) string {
		_, s, _ := strings.Cut(summary, from)
		if to != "" {
			s, _, _ = strings.Cut(s, to)
		}
		if s == "" {
			t.Errorf("summary section %q missing", from)
		}
		return s
	}
	atoi := func(s string) int { n, _ := strconv.Atoi(s); return n }
	// sum adds the last number of the lines matching re in s.
	sum := func(s, re string) (n, lines int) {
		for _, m := range regexp.MustCompile(`(?m)`+re+`\s+(\d+)\s*$`).FindAllStringSubmatch(s, -1) {
			n += atoi(m[len(m)-1])
			lines++
		}
		return n, lines
	}
	statusCount := func(table, status string) int {
		m := regexp.MustCompile(`fpjc\.` + table + `\s+\d+ rows \(\d+ live\)\s+[^;]*\b` + status + `=(\d+)`).FindStringSubmatch(text)
		if m == nil {
			t.Errorf("fpjc.%s: no %s count", table, status)
			return -1
		}
		return atoi(m[1])
	}

	week := section("一、本周变化", "二、")
	if truth != nil && !strings.Contains(week, "真实变化 "+truth[1]+" 条") {
		t.Errorf("summary does not give the push's %s true changes:\n%s", truth[1], week)
	}
	if n, lines := sum(week, `^\s+\S+ (household|person|measure)\s+\d+\s+\d+\s+\d+`); truth == nil || strconv.Itoa(n) != truth[1] || lines == 0 {
		t.Errorf("push changes by entity add up to %d (%d entities), want %v", n, lines, truth)
	}
	for _, m := range regexp.MustCompile(`(?m)^\s+\S+ (household|person|measure)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$`).FindAllStringSubmatch(week, -1) {
		if atoi(m[2])+atoi(m[3])+atoi(m[4]) != atoi(m[5]) {
			t.Errorf("push changes of %s: c+u+d is not the row's total %s", m[1], m[5])
		}
	}
	if n, lines := sum(week, `^\s+\S+ (yibao|canlian|zhujian|minzheng|gongan|jiaoyu|yingji)\s+\d+\s+\d+`); n == 0 || lines != 7 {
		t.Errorf("department deliveries: %d facts from %d departments, want 7 departments and facts", n, lines)
	}

	warnings := section("二、部门预警", "三、")
	total := regexp.MustCompile(`待核实 (\d+) 条`).FindStringSubmatch(warnings)
	if total == nil || atoi(total[1]) != statusCount("warning", "open") || total[1] == "0" {
		t.Errorf("summary warnings %v, fpjc.warning open=%d: want equal and non-zero", total, statusCount("warning", "open"))
	} else {
		byCounty, byDept, _ := strings.Cut(warnings, "按部门")
		n, lines := sum(byCounty, `^\s+51\d{4} \S+`)
		rest, _ := sum(byCounty, `^\s+其余 \d+ 个县 other counties`)
		if n+rest != atoi(total[1]) || lines == 0 || lines > summaryCounties || strings.Contains(byCounty, "未知区划") {
			t.Errorf("warnings by named county (%d counties) and the others add up to %d+%d, want %s:\n%s", lines, n, rest, total[1], byCounty)
		}
		if n, _ := sum(byDept, `^\s+\p{Han}+ [a-z]+`); n != atoi(total[1]) {
			t.Errorf("warnings by department add up to %d, want %s:\n%s", n, total[1], byDept)
		}
	}

	issues := section("三、质量问题", "四、")
	total = regexp.MustCompile(`未关闭 (\d+) 条`).FindStringSubmatch(issues)
	if total == nil || atoi(total[1]) != statusCount("quality_issue", "open") || total[1] == "0" {
		t.Errorf("summary quality issues %v, fpjc.quality_issue open=%d: want equal and non-zero", total, statusCount("quality_issue", "open"))
	} else {
		// Every rule line carries the rule's title after its count.
		n := 0
		for _, m := range regexp.MustCompile(`(?m)^\s+Q-\d+\s+(\d+)  \S`).FindAllStringSubmatch(issues, -1) {
			n += atoi(m[1])
		}
		if n != atoi(total[1]) {
			t.Errorf("quality issues by titled rule add up to %d, want %s:\n%s", n, total[1], issues)
		}
	}

	disc := section("四、行业数据比对", "五、")
	total = regexp.MustCompile(`待核实 (\d+) 条`).FindStringSubmatch(disc)
	if total == nil || atoi(total[1]) != statusCount("discrepancy", "pending") || total[1] == "0" {
		t.Errorf("summary discrepancies %v, fpjc.discrepancy pending=%d: want equal and non-zero", total, statusCount("discrepancy", "pending"))
	} else if n, _ := sum(disc, `^\s+\p{Han}+ [a-z]+`); n != atoi(total[1]) {
		t.Errorf("discrepancies by department add up to %d, want %s:\n%s", n, total[1], disc)
	}

	totals := section("五、地区总数核查", "")
	for _, c := range []string{"national_vs_provincial", "national_vs_sharing"} {
		if !regexp.MustCompile(`(?m)^\s+` + c + `\s.*7/7 项一致\s+一致$`).MatchString(totals) {
			t.Errorf("summary: checker %s not 7/7 一致:\n%s", c, totals)
		}
	}
	if !strings.Contains(totals, "总数核对：一致") {
		t.Errorf("summary totals line is not 一致:\n%s", totals)
	}
}

// TestDemoProgressCollapses: off a terminal, identical progress lines are printed
// once and a burst of changing ones leaves only its first and last line.
func TestDemoProgressCollapses(t *testing.T) {
	var buf bytes.Buffer
	d := &demo{errw: &buf}
	for i := 0; i < 50; i++ {
		d.status("national: 2540/2540 rows in Kafka")
	}
	for i := 1; i <= 100; i++ {
		d.status(fmt.Sprintf("reloading person: %d rows", i*100))
	}
	d.endStatus()
	want := "      national: 2540/2540 rows in Kafka\n      reloading person: 10000 rows\n"
	if buf.String() != want {
		t.Errorf("progress output:\n%q\nwant\n%q", buf.String(), want)
	}
	// A new step starts afresh: its first line shows at once.
	buf.Reset()
	d.status("reloading household: 501 rows")
	d.endStatus()
	if buf.String() != "      reloading household: 501 rows\n" {
		t.Errorf("after endStatus: %q", buf.String())
	}
}

// TestDemoSummaryTop: the summary names the first counties and adds up the others.
func TestDemoSummaryTop(t *testing.T) {
	groups := []keyCount{{"a", 5}, {"b", 4}, {"c", 2}, {"d", 1}}
	shown, rest, restN := top(groups, 2)
	if len(shown) != 2 || shown[1].key != "b" || rest != 2 || restN != 3 {
		t.Errorf("top 2 of %v: %v, %d others with %d", groups, shown, rest, restN)
	}
	if shown, rest, restN := top(groups, 4); len(shown) != 4 || rest != 0 || restN != 0 {
		t.Errorf("top 4 of %v: %v, %d others with %d", groups, shown, rest, restN)
	}
}
