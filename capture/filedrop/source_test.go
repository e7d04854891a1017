package filedrop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/xuri/excelize/v2"
	"golang.org/x/text/encoding/simplifiedchinese"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/schemas"
)

// fakeClock lets tests decide when a file has settled.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type harness struct {
	t       *testing.T
	ds      DatasetOptions
	clock   *fakeClock
	metrics *Metrics
	src     *Source
	scrub   func(string) string // Config.Scrub (nil: the default mask)
}

func baseDataset(t *testing.T) DatasetOptions {
	dir := t.TempDir()
	return DatasetOptions{
		Name:       "disabled_persons",
		Department: "canlian",
		Inbox:      filepath.Join(dir, "inbox"),
		StateDir:   filepath.Join(dir, "state"),
		Delivery:   DeliveryFull,
		Key:        []string{"id_number"},
		Columns: map[string]string{
			"身份证号": "id_number",
			"姓名":   "name",
			"残疾等级": "level",
		},
		MaxDeleteShare: 0.5,
	}
}

func newHarness(t *testing.T, ds DatasetOptions) *harness {
	t.Helper()
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, ds: ds, clock: &fakeClock{t: time.Unix(1_700_000_000, 0)}, metrics: m}
	if err := os.MkdirAll(ds.Inbox, 0o755); err != nil {
		t.Fatal(err)
	}
	h.open(nil)
	return h
}

func (h *harness) open(last capture.Position) {
	h.t.Helper()
	if h.src != nil {
		h.src.Close()
	}
	s, err := New(Config{System: "canlian", TopicPrefix: "sc", Dataset: h.ds, PollInterval: 2 * time.Millisecond, Logger: slog.New(slog.DiscardHandler), Metrics: h.metrics, Now: h.clock.now, Scrub: h.scrub})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := s.Open(context.Background(), last); err != nil {
		h.t.Fatal(err)
	}
	h.src = s
	h.t.Cleanup(func() { s.Close() })
}

func (h *harness) write(name string, content []byte) string {
	h.t.Helper()
	p := filepath.Join(h.ds.Inbox, name)
	if err := os.WriteFile(p, content, 0o644); err != nil {
		h.t.Fatal(err)
	}
	return p
}

// delivery reads changes until the delivery's last one, acks it and returns them all.
func (h *harness) delivery() []capture.Change {
	h.t.Helper()
	var out []capture.Change
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		cs, err := h.src.ReadN(ctx, 2)
		if err != nil {
			h.t.Fatalf("ReadN after %d changes: %v", len(out), err)
		}
		out = append(out, cs...)
		last := cs[len(cs)-1].Position
		p, err := parsePosition(last, h.ds.Name)
		if err != nil {
			h.t.Fatal(err)
		}
		if p.End {
			if err := h.src.Ack(ctx, last); err != nil {
				h.t.Fatal(err)
			}
			return out
		}
	}
}

// none asserts that ReadN has nothing to give (it blocks until the short deadline),
// and keeps asking until every settled file left the inbox (archived, rejected or
// held), so that a loaded machine cannot end the wait in the middle of a file.
func (h *harness) none() {
	h.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		cs, err := h.src.ReadN(ctx, 10)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			h.t.Fatalf("ReadN = %d changes, err %v; want nothing", len(cs), err)
		}
		if !h.pending() || time.Now().After(deadline) {
			return
		}
	}
}

// pending reports whether a delivery file that could be read is still in the inbox.
func (h *harness) pending() bool {
	es, _ := os.ReadDir(h.ds.Inbox)
	for _, e := range es {
		n := e.Name()
		if !e.Type().IsRegular() || strings.HasSuffix(n, ".done") {
			continue
		}
		if h.ds.RequireDoneMarker {
			if _, err := os.Stat(filepath.Join(h.ds.Inbox, n+".done")); err != nil {
				continue
			}
		}
		if h.ds.SettleAge > 0 {
			continue // the test drives settling with its clock
		}
		return true
	}
	return false
}

func csvUTF8BOM(lines ...string) []byte {
	return append([]byte("\xEF\xBB\xBF"), []byte(strings.Join(lines, "\r\n")+"\r\n")...)
}

// summary renders changes compactly: op key before.level→after.level.
func summary(cs []capture.Change) []string {
	var out []string
	for _, c := range cs {
		e := c.Envelope
		if c.DeadLetter != nil {
			out = append(out, fmt.Sprintf("dlq line %d", e.Source.Line))
			continue
		}
		s := fmt.Sprintf("%s %v", e.Op, e.Key["id_number"])
		if e.Before != nil {
			s += fmt.Sprintf(" before=%v/%v", e.Before["name"], e.Before["level"])
		}
		if e.After != nil {
			s += fmt.Sprintf(" after=%v/%v", e.After["name"], e.After["level"])
		}
		out = append(out, s)
	}
	return out
}

func eq(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestFullDeliveryDiffAndRedelivery(t *testing.T) {
	h := newHarness(t, baseDataset(t))
	h.write("2024-01.csv", csvUTF8BOM("身份证号,姓名,残疾等级",
		"510101199001011234,张三,一级",
		"510101199202022345,李四,二级",
		"510101199303033456,王五,三级"))
	cs := h.delivery()
	eq(t, summary(cs), []string{
		"c 510101199001011234 after=张三/一级",
		"c 510101199202022345 after=李四/二级",
		"c 510101199303033456 after=王五/三级",
	})
	e := cs[0].Envelope
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	if e.Source.Kind != "filedrop" || e.Source.File != "2024-01.csv" || e.Source.Line != 2 || e.Schema.Name != "disabled_persons" || e.Source.DB != "canlian" {
		t.Fatalf("envelope source/schema = %+v %+v", e.Source, e.Schema)
	}
	if cs[0].Topic != "sc.raw.canlian.disabled_persons" || string(cs[0].Key) != `{"id_number":"510101199001011234"}` {
		t.Fatalf("topic %q key %s", cs[0].Topic, cs[0].Key)
	}
	if _, err := os.Stat(filepath.Join(h.ds.Inbox, "archive", "2024-01.csv")); err != nil {
		t.Fatalf("file not archived after the final ack: %v", err)
	}

	// Second month: 李四 changes level, 王五 is gone, 赵六 is new (columns reordered).
	h.write("2024-02.csv", csvUTF8BOM("姓名,身份证号,残疾等级",
		"张三,510101199001011234,一级",
		"李四,510101199202022345,一级",
		"赵六,510101199404044567,四级"))
	cs = h.delivery()
	eq(t, summary(cs), []string{
		"u 510101199202022345 before=李四/二级 after=李四/一级",
		"d 510101199303033456 before=王五/三级",
		"c 510101199404044567 after=赵六/四级",
	})
	if cs[0].Envelope.Source.Line != 3 {
		t.Fatalf("update line = %d, want 3", cs[0].Envelope.Source.Line)
	}

	// The identical file delivered again emits nothing and is archived.
	h.write("2024-02-again.csv", csvUTF8BOM("姓名,身份证号,残疾等级",
		"张三,510101199001011234,一级",
		"李四,510101199202022345,一级",
		"赵六,510101199404044567,四级"))
	h.none()
	if _, err := os.Stat(filepath.Join(h.ds.Inbox, "archive", "2024-02-again.csv")); err != nil {
		t.Fatalf("duplicate not archived: %v", err)
	}
	if got := counter(t, h.metrics.Files.WithLabelValues(h.ds.Name, "duplicate")); got != 1 {
		t.Fatalf("duplicate files metric = %v", got)
	}
	if got := counter(t, h.metrics.Events.WithLabelValues(h.ds.Name, "c")); got != 4 {
		t.Fatalf("create events metric = %v, want 4", got)
	}
}

func TestGB18030SemicolonCSV(t *testing.T) {
	h := newHarness(t, baseDataset(t))
	text := "身份证号;姓名;残疾等级\r\n510101199001011234;欧阳𠀀;一级\r\n"
	gb, err := simplifiedchinese.GB18030.NewEncoder().String(text)
	if err != nil {
		t.Fatal(err)
	}
	h.write("gb.csv", []byte(gb))
	eq(t, summary(h.delivery()), []string{"c 510101199001011234 after=欧阳𠀀/一级"})
}

func writeXLSX(t *testing.T, path string, rows [][]any, merge string) {
	t.Helper()
	f := excelize.NewFile()
	defer f.Close()
	for i, r := range rows {
		cell, _ := excelize.CoordinatesToCellName(1, i+1)
		if err := f.SetSheetRow("Sheet1", cell, &r); err != nil {
			t.Fatal(err)
		}
	}
	if merge != "" {
		a, b, _ := strings.Cut(merge, ":")
		if err := f.MergeCell("Sheet1", a, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.SaveAs(path); err != nil {
		t.Fatal(err)
	}
}

func TestXLSX(t *testing.T) {
	h := newHarness(t, baseDataset(t))
	writeXLSX(t, filepath.Join(h.ds.Inbox, "m1.xlsx"), [][]any{
		{"身份证号", "姓名", "残疾等级"},
		{"510101199001011234", "张三", "一级"},
		{},
		{"510101199202022345", "李四"},
	}, "")
	cs := h.delivery()
	eq(t, summary(cs), []string{
		"c 510101199001011234 after=张三/一级",
		"c 510101199202022345 after=李四/<nil>",
	})
	if cs[1].Envelope.Source.Line != 4 {
		t.Fatalf("xlsx line = %d, want 4", cs[1].Envelope.Source.Line)
	}

	writeXLSX(t, filepath.Join(h.ds.Inbox, "merged.xlsx"), [][]any{
		{"身份证号", "姓名", "残疾等级"},
		{"510101199001011234", "张三", "二级"},
	}, "B1:C1")
	h.none()
	rep := readReport(t, filepath.Join(h.ds.Inbox, "rejected", "merged.xlsx"))
	if !strings.Contains(rep, "merged header cells B1:C1") {
		t.Fatalf("report:\n%s", rep)
	}

	h.write("corrupt.xlsx", []byte("PK\x03\x04 this is not a zip"))
	h.none()
	rep = readReport(t, filepath.Join(h.ds.Inbox, "rejected", "corrupt.xlsx"))
	if !strings.Contains(rep, "corrupt or truncated") {
		t.Fatalf("report:\n%s", rep)
	}
	h.write("old.xls", []byte{0xD0, 0xCF, 0x11, 0xE0})
	h.none()
	rep = readReport(t, filepath.Join(h.ds.Inbox, "rejected", "old.xls"))
	if !strings.Contains(rep, "corrupt XLS: not an OLE2 compound file") {
		t.Fatalf("report:\n%s", rep)
	}
}

func readReport(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path + ".report.txt")
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("set-aside file: %v", err)
	}
	return string(b)
}

func TestPartialFileWaitsUntilSettled(t *testing.T) {
	ds := baseDataset(t)
	ds.SettleAge = time.Minute
	h := newHarness(t, ds)
	p := h.write("slow.csv", []byte("身份证号,姓名,残疾等级\n510101199001011234,张三,一级\n"))
	h.none()
	h.clock.add(30 * time.Second)
	// Still being written: the size change restarts the settle time.
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("510101199202022345,李四,二级\n")
	f.Close()
	h.none()
	h.clock.add(45 * time.Second)
	h.none()
	h.clock.add(30 * time.Second)
	if got := len(h.delivery()); got != 2 {
		t.Fatalf("settled file gave %d changes, want 2", got)
	}
}

func TestDoneMarker(t *testing.T) {
	ds := baseDataset(t)
	ds.RequireDoneMarker = true
	h := newHarness(t, ds)
	h.write("a.csv", []byte("身份证号,姓名,残疾等级\n510101199001011234,张三,一级\n"))
	h.none()
	h.write("a.csv.done", nil)
	if got := len(h.delivery()); got != 1 {
		t.Fatalf("got %d changes", got)
	}
	if _, err := os.Stat(filepath.Join(h.ds.Inbox, "archive", "a.csv.done")); err != nil {
		t.Fatalf("marker not archived: %v", err)
	}
}

func TestBadRowsGoToDLQAndTheRestFlows(t *testing.T) {
	ds := baseDataset(t)
	ds.MaxBadRowShare = 0.9
	h := newHarness(t, ds)
	h.write("m1.csv", csvUTF8BOM("身份证号,姓名,残疾等级",
		"510101199001011234,张三,一级",
		"510101199202022345,李四,二级"))
	h.delivery()
	h.write("m2.csv", append(csvUTF8BOM("身份证号,姓名,残疾等级",
		"510101199001011234,张三,二级",
		"510101199505055678,钱七",
		",无名,一级"),
		[]byte("510101199202022345,\xff\xfe,三级\r\n510101199606066789,孙八,一级\r\n")...))
	cs := h.delivery()
	eq(t, summary(cs), []string{
		"dlq line 3",
		"dlq line 4",
		"dlq line 5",
		"u 510101199001011234 before=张三/一级 after=张三/二级",
		"c 510101199606066789 after=孙八/一级",
	})
	// 李四's row had a bad byte sequence: it is kept, not deleted.
	rec, ok := cs[0].DeadLetter, cs[0].DeadLetter != nil
	if !ok || cs[0].DeadLetterReason != "bad_row" || cs[0].Topic != "sc.dlq.capture" || !strings.Contains(rec.Reason, "m2.csv line 3: has 2 fields, header has 3") {
		t.Fatalf("dead letter = %+v %v topic %s", rec, ok, cs[0].Topic)
	}
	rec = cs[2].DeadLetter
	if !strings.Contains(rec.Reason, `column "姓名" (field name): invalid UTF-8`) {
		t.Fatalf("dead letter reason = %q", rec.Reason)
	}
	if cs[3].DeadLetter != nil {
		t.Fatal("a row change is not a dead letter")
	}
	if got := counter(t, h.metrics.BadRows.WithLabelValues(h.ds.Name)); got != 3 {
		t.Fatalf("bad rows metric = %v", got)
	}
}

func TestRejectedFiles(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		want          []string
	}{
		{"sniffed-pipe-ok-but-not-here.csv", "身份证号|姓名|残疾等级\n1|a|b\n", []string{"wrong delimiter", "delimiter ','"}},
		{"empty.csv", "", []string{"empty file"}},
		{"wrong-delim.csv", "身份证号 姓名 残疾等级\n1 a b\n", []string{"verdict: rejected", "single column", "wrong delimiter"}},
		{"missing-key.csv", "姓名,残疾等级\n张三,一级\n", []string{`line 1, column "身份证号" (field id_number): required column missing`}},
		{"unknown.csv", "身份证号,姓名,残疾等级,备注\n1,a,b,c\n", []string{`column "备注": unknown column`}},
		{"dups.csv", "身份证号,姓名,残疾等级\n510101199001011234,a,1\n2,b,2\n510101199001011234,c,3\n", []string{"2 of 3 rows are bad", "2 of them rows repeating a key", `line 4: duplicate key column "身份证号" (field id_number) = 5101**********1234: lines 2 and 4 give it different values`}},
		{"mostly-bad.csv", "身份证号,姓名,残疾等级\n1,a\n2,b\n3,c,d\n", []string{"2 of 3 rows are bad"}},
		{"broken-quote.csv", "身份证号,姓名,残疾等级\n1,\"a,b\n" + strings.Repeat("2,x,y\n", 20), []string{"quoted field not closed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ds := baseDataset(t)
			if strings.Contains(tc.name, "pipe") {
				ds.Delimiter = ','
			}
			h := newHarness(t, ds)
			h.write(tc.name, []byte(tc.content))
			h.none()
			rep := readReport(t, filepath.Join(h.ds.Inbox, "rejected", tc.name))
			for _, w := range tc.want {
				if !strings.Contains(rep, w) {
					t.Errorf("report lacks %q:\n%s", w, rep)
				}
			}
			if strings.Contains(rep, "510101199001011234") {
				t.Errorf("report shows a full ID number:\n%s", rep)
			}
			if _, err := os.Stat(filepath.Join(h.ds.Inbox, tc.name)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("rejected file still in the inbox")
			}
		})
	}
}

// A department with nothing to report sends a header-only file: accepted and silent
// when there was nothing before, held by the breaker when it would delete everything.
func TestHeaderOnlyDelivery(t *testing.T) {
	h := newHarness(t, baseDataset(t))
	h.write("none.csv", csvUTF8BOM("身份证号,姓名,残疾等级"))
	h.none()
	if _, err := os.Stat(filepath.Join(h.ds.Inbox, "archive", "none.csv")); err != nil {
		t.Fatalf("header-only first delivery not archived: %v", err)
	}
	h.write("one.csv", csvUTF8BOM("身份证号,姓名,残疾等级", "510101199001010001,p1,一级"))
	if cs := h.delivery(); len(cs) != 1 || cs[0].Envelope.Op != schemas.OpCreate {
		t.Fatalf("delivery after the empty one: %d changes", len(cs))
	}
	// Not byte-identical to none.csv (no BOM): an identical file would be a re-delivery.
	h.write("none-again.csv", []byte("身份证号,姓名,残疾等级\n"))
	h.none()
	if _, err := os.Stat(filepath.Join(h.ds.Inbox, "held", "none-again.csv")); err != nil {
		t.Fatalf("header-only delivery deleting every row not held: %v", err)
	}
}

func TestMassDeleteHoldAndRelease(t *testing.T) {
	h := newHarness(t, baseDataset(t))
	var lines []string
	for i := 0; i < 10; i++ {
		lines = append(lines, fmt.Sprintf("5101011990010100%02d,p%d,一级", i, i))
	}
	h.write("full.csv", csvUTF8BOM(append([]string{"身份证号,姓名,残疾等级"}, lines...)...))
	h.delivery()
	h.write("truncated.csv", csvUTF8BOM(append([]string{"身份证号,姓名,残疾等级"}, lines[:3]...)...))
	h.none()
	rep := readReport(t, filepath.Join(h.ds.Inbox, "held", "truncated.csv"))
	if !strings.Contains(rep, "would delete 7 of 10 previous rows") || !strings.Contains(rep, "verdict: held") {
		t.Fatalf("report:\n%s", rep)
	}
	if got := counter(t, h.metrics.Files.WithLabelValues(h.ds.Name, "held")); got != 1 {
		t.Fatalf("held metric = %v", got)
	}
	if err := Release(h.ds, "truncated.csv"); err != nil {
		t.Fatal(err)
	}
	cs := h.delivery()
	if len(cs) != 7 || cs[0].Envelope.Op != schemas.OpDelete || cs[0].Envelope.Before["name"] != "p3" {
		t.Fatalf("released delivery = %v", summary(cs))
	}
}

func TestIncrementalWithOpColumn(t *testing.T) {
	ds := baseDataset(t)
	ds.Delivery = DeliveryIncremental
	ds.OpColumn = "操作"
	h := newHarness(t, ds)
	h.write("i1.csv", []byte("身份证号,姓名,残疾等级,操作\n1001,a,一级,I\n1002,b,二级,\n"))
	eq(t, summary(h.delivery()), []string{"c 1001 after=a/一级", "c 1002 after=b/二级"})
	h.write("i2.csv", []byte("身份证号,姓名,残疾等级,操作\n1002,b,三级,U\n1001,a,一级,删除\n1003,c,一级,I\n"))
	eq(t, summary(h.delivery()), []string{
		"d 1001 before=a/一级",
		"u 1002 before=b/二级 after=b/三级",
		"c 1003 after=c/一级",
	})
	// Rows not mentioned in an incremental delivery stay.
	h.write("i3.csv", []byte("身份证号,姓名,残疾等级,操作\n1002,b,三级,U\n1004,d,一级,I\n"))
	eq(t, summary(h.delivery()), []string{"c 1004 after=d/一级"})
}

func TestRestartMidFile(t *testing.T) {
	ds := baseDataset(t)
	h := newHarness(t, ds)
	var lines []string
	for i := 0; i < 7; i++ {
		lines = append(lines, fmt.Sprintf("5101011990010100%02d,p%d,一级", i, i))
	}
	h.write("m.csv", csvUTF8BOM(append([]string{"身份证号,姓名,残疾等级"}, append(lines, "bad,row")...)...))
	ctx := context.Background()
	first, err := h.src.ReadN(ctx, 3)
	if err != nil || len(first) != 3 {
		t.Fatalf("ReadN = %d, %v", len(first), err)
	}
	// Only the second change was acknowledged by Kafka when the process died.
	acked := first[1].Position
	if err := h.src.Ack(ctx, acked); err != nil {
		t.Fatal(err)
	}
	h.open(acked)
	rest := h.delivery()
	seen := map[string]int{}
	for _, c := range append(first, rest...) {
		seen[string(c.Position)]++
	}
	if len(seen) != 8 || len(rest) != 6 {
		t.Fatalf("after restart: %d distinct positions, %d re-read; want 8 and 6", len(seen), len(rest))
	}
	var ids []string
	for _, c := range append(first[:2], rest...) {
		if c.DeadLetter == nil {
			ids = append(ids, c.Envelope.Key["id_number"].(string))
		}
	}
	sort.Strings(ids)
	if len(ids) != 7 || ids[0] != "510101199001010000" || ids[6] != "510101199001010006" {
		t.Fatalf("ids = %v", ids)
	}
	// A crash after the final ack but before the new process starts: the delivery was
	// committed, so nothing is re-emitted.
	h.open(rest[len(rest)-1].Position)
	h.none()
}

// counter reads one counter's value.
func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
