package filedrop

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"
	"golang.org/x/text/encoding/simplifiedchinese"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/schemas"

	"github.com/prometheus/client_golang/prometheus"
)

// The tests of issue #12: a bad row never deletes or changes what was delivered
// before, values compare by meaning across formats, rows are bounded, and messages
// say what is wrong.

var typedHeader = []string{"身份证号", "姓名", "发证日期", "补贴", "人数"}

// typedRows is one delivery, written as a department's CSV would write it.
var typedRows = [][]string{
	{"510101199001011234", "张三", "2023/5/17", "1,234.50", "3"},
	{"510101199202022345", "李四", "2020-01-02", "2657.0", "2"},
	{"510101199303033456", "王五", "20190301", "0", "1"},
	{"510101199404044567", "钱七", "43466", "12.30", "4"},
}

// typedCanonical is what every format of typedRows must emit: key → name, date,
// subsidy, members.
var typedCanonical = map[string]string{
	"510101199001011234": "张三 2023-05-17 1234.5 3",
	"510101199202022345": "李四 2020-01-02 2657 2",
	"510101199303033456": "王五 2019-03-01 0 1",
	"510101199404044567": "钱七 2019-01-01 12.3 4",
}

func typedDataset(t *testing.T) DatasetOptions {
	ds := baseDataset(t)
	ds.Columns = map[string]string{"身份证号": "id_number", "姓名": "name", "发证日期": "issued_on", "补贴": "subsidy", "人数": "members"}
	ds.Types = map[string]ColumnType{"issued_on": TypeDate, "subsidy": TypeDecimal, "members": TypeInteger}
	ds.MaxFieldBytes = 64
	ds.MaxRowBytes = 256
	ds.MaxDeleteShare = 1
	ds.MaxBadRowShare = 0.9
	return ds
}

func csvText(header []string, rows [][]string) string {
	var b strings.Builder
	b.WriteString(strings.Join(header, ",") + "\r\n")
	for _, r := range rows {
		q := make([]string, len(r))
		for i, v := range r {
			q[i] = v
			if strings.ContainsAny(v, ",\"") {
				q[i] = `"` + strings.ReplaceAll(v, `"`, `""`) + `"`
			}
		}
		b.WriteString(strings.Join(q, ",") + "\r\n")
	}
	return b.String()
}

func gb18030(t *testing.T, s string) []byte {
	t.Helper()
	b, err := simplifiedchinese.GB18030.NewEncoder().String(s)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(b)
}

// canonical renders row changes as key → "name date subsidy members".
func canonical(t *testing.T, cs []capture.Change) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, c := range cs {
		if c.DeadLetter != nil {
			continue
		}
		a := c.Envelope.After
		out[c.Envelope.Key["id_number"].(string)] = fmt.Sprintf("%v %v %v %v", a["name"], a["issued_on"], a["subsidy"], a["members"])
	}
	return out
}

func rowChanges(cs []capture.Change) []string {
	var out []string
	for _, c := range cs {
		if c.DeadLetter == nil {
			out = append(out, fmt.Sprintf("%s %v", c.Envelope.Op, c.Envelope.Key["id_number"]))
		}
	}
	sort.Strings(out)
	return out
}

type dlqList []*schemas.DLQRecord

func (l dlqList) String() string {
	var b strings.Builder
	for _, d := range l {
		fmt.Fprintf(&b, "\n  %s", d.Reason)
	}
	return b.String()
}

func deadLetters(cs []capture.Change) dlqList {
	var out dlqList
	for _, c := range cs {
		if c.DeadLetter != nil {
			out = append(out, c.DeadLetter)
		}
	}
	return out
}

// typedXLSX writes typedRows as a department's Excel would: date cells, numbers
// with number formats.
func typedXLSX(t *testing.T, path string, serialDates bool) {
	t.Helper()
	f := excelize.NewFile()
	defer f.Close()
	date, amount, one := "yyyy-mm-dd", "#,##0.00", "0.0"
	sDate, _ := f.NewStyle(&excelize.Style{CustomNumFmt: &date})
	sAmount, _ := f.NewStyle(&excelize.Style{CustomNumFmt: &amount})
	sOne, _ := f.NewStyle(&excelize.Style{CustomNumFmt: &one})
	if err := f.SetSheetRow("Sheet1", "A1", &typedHeader); err != nil {
		t.Fatal(err)
	}
	vals := [][]any{
		{"510101199001011234", "张三", 45063, 1234.5, 3},
		{"510101199202022345", "李四", 43832, 2657, 2},
		{"510101199303033456", "王五", 43525, 0, 1},
		{"510101199404044567", "钱七", 43466, 12.3, 4},
	}
	for i, r := range vals {
		row := i + 2
		for c, v := range r {
			cell, _ := excelize.CoordinatesToCellName(c+1, row)
			if err := f.SetCellValue("Sheet1", cell, v); err != nil {
				t.Fatal(err)
			}
			switch {
			case c == 2 && !serialDates:
				f.SetCellStyle("Sheet1", cell, cell, sDate)
			case c == 3 && i == 1:
				f.SetCellStyle("Sheet1", cell, cell, sOne)
			case c == 3:
				f.SetCellStyle("Sheet1", cell, cell, sAmount)
			}
		}
	}
	if err := f.SaveAs(path); err != nil {
		t.Fatal(err)
	}
}

// The same month as CSV (UTF-8 and GB18030), XLSX with date cells, XLSX with General
// (serial) dates and XLS changes nothing after the first of them.
func TestSameDeliveryAcrossFormatsChangesNothing(t *testing.T) {
	h := newHarness(t, typedDataset(t))
	h.write("m.csv", []byte(csvText(typedHeader, typedRows)))
	cs := h.delivery()
	if got := canonical(t, cs); fmt.Sprint(got) != fmt.Sprint(typedCanonical) {
		t.Fatalf("first delivery emitted\n%v\nwant\n%v", got, typedCanonical)
	}
	typedXLSX(t, filepath.Join(h.ds.Inbox, "m.xlsx"), false)
	h.none()
	typedXLSX(t, filepath.Join(h.ds.Inbox, "m-serial.xlsx"), true)
	h.none()
	h.write("m.xls", fixture(t, "typed.xls"))
	h.none()
	h.write("m.gb18030.csv", gb18030(t, csvText(typedHeader, typedRows)+"\r\n"))
	h.none()
	for _, f := range []string{"m.xlsx", "m-serial.xlsx", "m.xls", "m.gb18030.csv"} {
		if _, err := os.Stat(filepath.Join(h.ds.Inbox, "archive", f)); err != nil {
			t.Errorf("%s was not accepted without changes: %v", f, err)
		}
	}
	if got := counter(t, h.metrics.Events.WithLabelValues(h.ds.Name, "u")); got != 0 {
		t.Fatalf("%v updates from spelling alone", got)
	}
	// A real change still is one.
	rows := append([][]string(nil), typedRows...)
	rows[1] = []string{"510101199202022345", "李四", "2020-01-03", "2,657", "2"}
	h.write("m2.csv", []byte(csvText(typedHeader, rows)))
	eq(t, rowChanges(h.delivery()), []string{"u 510101199202022345"})
}

// Declaring types for a dataset whose state was written without them re-normalises
// the stored rows: the first typed delivery does not update every row.
func TestTypesAddedLaterChangeNothing(t *testing.T) {
	ds := typedDataset(t)
	types := ds.Types
	ds.Types = nil
	h := newHarness(t, ds)
	h.write("m.csv", []byte(csvText(typedHeader, typedRows)))
	h.delivery()
	h.ds.Types = types
	h.open(nil)
	typedXLSX(t, filepath.Join(h.ds.Inbox, "m.xlsx"), false)
	h.none()
	if _, err := os.Stat(filepath.Join(h.ds.Inbox, "archive", "m.xlsx")); err != nil {
		t.Fatalf("typed delivery after an untyped one: %v", err)
	}
}

// badDelivery is a full delivery in which every key of typedRows but one arrives
// bad, for a different reason each, plus a new good row; 510101199404044567 is
// missing altogether.
type badCase struct {
	name    string
	n       int // dead letters expected
	content func(t *testing.T, h *harness) []byte
	// dlq are substrings of the dead letters' reasons, one per dead letter in order.
	dlq []string
}

func TestBadRowsNeverDelete(t *testing.T) {
	good := []string{"510101199505055678", "赵六", "2024-02-29", "88", "2"}
	long := strings.Repeat("长", 30) // 90 bytes: over the test's 64-byte field limit
	csvBad := func(enc func(t *testing.T, s string) []byte) func(t *testing.T, h *harness) []byte {
		return func(t *testing.T, h *harness) []byte {
			text := csvText(typedHeader, [][]string{
				{"510101199001011234", "张三", "2023-02-30", "1234.5", "3"}, // bad date
				{"510101199202022345", long, "2020-01-02", "2657", "2"},   // field too long
				good,
			})
			text += "510101199303033456,王,五,2019-03-01,0,1\r\n"     // unquoted delimiter: 6 fields
			text += "510101199001011234,张三,2023-05-17,1234.5,9\r\n" // repeats the first key, other values
			text += "510101199505055679,bad\"quote,2024-01-01,1,1\r\n"
			return enc(t, text)
		}
	}
	utf8 := func(t *testing.T, s string) []byte { return []byte(s) }
	for _, tc := range []badCase{
		{"bad.csv", 5, csvBad(utf8), []string{`line 2: column "发证日期" (field issued_on): "2023-02-30" is not a date`,
			`column "姓名" (field name): value of 90 bytes is longer than the field limit of 64 bytes`,
			"line 5: has 6 fields, header has 5", "line 7: CSV syntax: bare \" in non-quoted-field",
			`duplicate key column "身份证号" (field id_number) = 5101**********1234`, `line 6 repeats the key of the bad row on line 2`}},
		{"bad.gb18030.csv", 5, csvBad(gb18030), []string{`"2023-02-30" is not a date`, "longer than the field limit", "has 6 fields",
			"CSV syntax", "duplicate key", "line 6 repeats the key of the bad row on line 2"}},
		{"bad-encoding.csv", 2, func(t *testing.T, h *harness) []byte {
			return []byte(csvText(typedHeader, [][]string{good, {"510101199001011234", "\xff\xfe", "2023-05-17", "1234.5", "3"}}) +
				"510101199202022345,李四,2020-01-02,2657,2," + strings.Repeat("x", 300) + "\r\n" +
				csvText(nil, [][]string{{"510101199303033456", "王五", "2019-03-01", "0", "1"}})[2:])
		}, []string{`line 3: column "姓名" (field name): invalid UTF-8 byte sequence`, "bytes long, more than the row limit of 256 bytes"}},
		{"bad.xlsx", 4, func(t *testing.T, h *harness) []byte {
			p := filepath.Join(t.TempDir(), "bad.xlsx")
			writeXLSX(t, p, [][]any{
				{"身份证号", "姓名", "发证日期", "补贴", "人数"},
				{"510101199001011234", "张三", "2023-02-30", 1234.5, 3},
				{"510101199202022345", long, "2020-01-02", 2657, 2},
				{"510101199303033456", "王五", "2019-03-01", 0, 1, "多余"},
				{"510101199001011234", "张三", "2023-05-17", 1234.5, 9},
				{good[0], good[1], good[2], good[3], good[4]},
			}, "")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}, []string{"is not a date", "longer than the field limit", "has values in 6 columns, header has 5", "duplicate key", "line 5 repeats the key of the bad row on line 2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, typedDataset(t))
			h.write("m1.csv", []byte(csvText(typedHeader, typedRows)))
			h.delivery()
			h.write(tc.name, tc.content(t, h))
			cs := h.delivery()
			// Only the new row and the truly absent row change; every bad key keeps its
			// previous version (no u, no d).
			eq(t, rowChanges(cs), []string{"c 510101199505055678", "d 510101199404044567"})
			dl := deadLetters(cs)
			if len(dl) != tc.n {
				t.Fatalf("%d dead letters, want %d: %v", len(dl), len(tc.dlq), dl)
			}
			all := ""
			for _, d := range dl {
				all += d.Reason + "\n"
				if !strings.Contains(d.Reason, "file "+tc.name+" line ") {
					t.Errorf("dead letter reason %q does not name the file and line", d.Reason)
				}
				if len(d.Payload) == 0 || len(d.Payload) > 2*256 {
					t.Errorf("dead letter payload of %d bytes: %q", len(d.Payload), d.Payload)
				}
			}
			for _, w := range tc.dlq {
				if !strings.Contains(all, w) {
					t.Errorf("dead letters lack %q:\n%s", w, all)
				}
			}
			rep := readReport(t, filepath.Join(h.ds.Inbox, "archive", tc.name))
			if !strings.Contains(rep, "verdict: accepted") || !strings.Contains(rep, "previous versions kept for bad rows") {
				t.Errorf("report of the accepted delivery:\n%s", rep)
			}
			if got := counter(t, h.metrics.Kept.WithLabelValues(h.ds.Name)); got < 2 {
				t.Errorf("kept metric = %v", got)
			}
			// The first delivery again (re-spelt, so not byte-identical): the kept rows
			// compare unchanged, the deleted row comes back, the new row goes.
			h.write("m3.csv", []byte(strings.ReplaceAll(csvText(typedHeader, typedRows), "\r\n", "\n")))
			eq(t, rowChanges(h.delivery()), []string{"c 510101199404044567", "d 510101199505055678"})
		})
	}
}

// The XLS fixture of bad rows: the same guarantees for legacy workbooks.
func TestBadRowsNeverDeleteXLS(t *testing.T) {
	ds := typedDataset(t)
	ds.MaxBadRowShare = 1 // every data row of the fixture is bad on purpose
	h := newHarness(t, ds)
	h.write("m1.xls", fixture(t, "typed.xls"))
	if got := canonical(t, h.delivery()); fmt.Sprint(got) != fmt.Sprint(typedCanonical) {
		t.Fatalf("XLS delivery emitted %v", got)
	}
	h.write("m2.xls", fixture(t, "typed-bad.xls"))
	cs := h.delivery()
	// Every row is bad or unchanged, and the key-less row makes deletes uncertain.
	eq(t, rowChanges(cs), nil)
	all := ""
	for _, d := range deadLetters(cs) {
		all += d.Reason + "\n"
	}
	for _, w := range []string{`"2023-02-30" is not a date`, "longer than the field limit", "has values in 6 columns",
		"duplicate key", "lines 5 and 6", `column "身份证号" (field id_number): key value empty`} {
		if !strings.Contains(all, w) {
			t.Errorf("dead letters lack %q:\n%s", w, all)
		}
	}
	h.write("m3.xls", fixture(t, "typed.xls"))
	h.none() // byte-identical to m1.xls: a re-delivery
	h.write("m3.csv", []byte(csvText(typedHeader, typedRows)))
	h.none() // every kept row compares unchanged
	if _, err := os.Stat(filepath.Join(h.ds.Inbox, "archive", "m3.csv")); err != nil {
		t.Fatalf("clean delivery after the bad one: %v", err)
	}
}

// A bad row whose key cannot be read may be any of the missing rows: the delivery's
// deletes are withheld until a delivery without such rows.
func TestUnkeyedBadRowWithholdsDeletes(t *testing.T) {
	h := newHarness(t, typedDataset(t))
	h.write("m1.csv", []byte(csvText(typedHeader, typedRows)))
	h.delivery()
	rows := [][]string{typedRows[0], typedRows[1], {"", "王五", "2019-03-01", "0", "1"}, {"合计", "", "", "3904.8", "10"}}
	h.write("m2.csv", []byte(csvText(typedHeader, rows)))
	cs := h.delivery()
	eq(t, rowChanges(cs), nil)
	if dl := deadLetters(cs); len(dl) != 1 || !strings.Contains(dl[0].Reason, "line 4: ") || !strings.Contains(dl[0].Reason, "key value empty") {
		t.Fatalf("dead letters %v", dl)
	}
	rep := readReport(t, filepath.Join(h.ds.Inbox, "archive", "m2.csv"))
	for _, w := range []string{"deletes withheld: 2 previous rows", "totals rows skipped", "1 bad rows have no readable key"} {
		if !strings.Contains(rep, w) {
			t.Errorf("report lacks %q:\n%s", w, rep)
		}
	}
	if got := counter(t, h.metrics.DeletesWithheld.WithLabelValues(h.ds.Name)); got != 2 {
		t.Fatalf("withheld metric = %v", got)
	}
	// A clean delivery applies them.
	h.write("m3.csv", []byte(csvText(typedHeader, typedRows[:2])))
	eq(t, rowChanges(h.delivery()), []string{"d 510101199303033456", "d 510101199404044567"})
}

func TestCandidateKeys(t *testing.T) {
	ds := typedDataset(t)
	ds.Key = []string{"members"} // last column
	m, probs := newMapper(&ds, typedHeader)
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	for _, tc := range []struct {
		fields []string
		want   []string
	}{
		{[]string{"1", "a", "2023-01-01", "5", "7"}, []string{"7"}},
		{[]string{"1", "a", "b", "2023-01-01", "5", "7"}, []string{"5", "7"}}, // extra field before the key
		{[]string{"1", "2023-01-01", "5", "07"}, []string{"7"}},               // one lost: counted from the end
		{[]string{"1", "a", "2023-01-01", "5", ""}, nil},                      // empty key
		{[]string{"1", "a", "2023-01-01", "5", "x7"}, nil},                    // not an integer
		{[]string{"1", "a", "2023-01-01", "5", "\xff"}, nil},                  // bad bytes
		{[]string{"1", "a", "2023-01-01", "5", "7", "8", "9"}, []string{"7", "9"}},
	} {
		var got []string
		for _, k := range m.candidateKeys(tc.fields) {
			got = append(got, string(k))
		}
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%q: candidates %v, want %v", tc.fields, got, tc.want)
		}
	}
}

// Two rows of one key: identical ones are one row; different ones are both set
// aside, named by the department's header, and the previous version stays.
func TestDuplicateKeys(t *testing.T) {
	ds := baseDataset(t)
	ds.Columns = map[string]string{"结算流水号": "settlement_no", "身份证号": "id_number", "金额": "amount"}
	ds.Key = []string{"settlement_no"}
	ds.Types = map[string]ColumnType{"amount": TypeDecimal}
	h := newHarness(t, ds)
	h.write("s1.csv", []byte("结算流水号,身份证号,金额\nJS001,510101199001011234,10\nJS002,510101199202022345,20\n"))
	h.delivery()
	h.write("s2.csv", []byte("结算流水号,身份证号,金额\nJS001,510101199001011234,11\nJS002,510101199202022345,20\nJS001,510101199001011234,12\nJS003,510101199303033456,30\nJS003,510101199303033456,30.00\n"))
	cs := h.delivery()
	var ops []string
	for _, c := range cs {
		if c.DeadLetter != nil {
			ops = append(ops, "dlq")
			continue
		}
		ops = append(ops, fmt.Sprintf("%s %v", c.Envelope.Op, c.Envelope.Key["settlement_no"]))
	}
	eq(t, ops, []string{"dlq", "dlq", "c JS003"})
	for _, d := range deadLetters(cs) {
		if !strings.Contains(d.Reason, `duplicate key column "结算流水号" (field settlement_no) = JS*01`) || !strings.Contains(d.Reason, "different values") {
			t.Errorf("reason %q", d.Reason)
		}
		var row map[string]any
		if err := json.Unmarshal(d.Payload, &row); err != nil || row["settlement_no"] != "JS001" {
			t.Errorf("payload %s: %v", d.Payload, err)
		}
	}
	rep := readReport(t, filepath.Join(h.ds.Inbox, "archive", "s2.csv"))
	if !strings.Contains(rep, "identical duplicate rows ignored: 1") || !strings.Contains(rep, "line 6: the same row as line 5") {
		t.Errorf("report:\n%s", rep)
	}
	// JS001 kept 10: a delivery with 10 changes nothing for it.
	h.write("s3.csv", []byte("结算流水号,身份证号,金额\nJS001,510101199001011234,10.0\nJS002,510101199202022345,20\nJS003,510101199303033456,30\n"))
	h.none()
}

// A CSV that switches from UTF-8 to GB18030 part-way is rejected as such, naming
// the line; stray bad bytes in a UTF-8 file stay a bad row.
func TestMixedEncoding(t *testing.T) {
	h := newHarness(t, baseDataset(t))
	var b bytes.Buffer
	b.WriteString("身份证号,姓名,残疾等级\n")
	for i := 0; i < 3; i++ {
		fmt.Fprintf(&b, "51010119900101%04d,张三%d,一级\n", i, i)
	}
	for i := 3; i < 6; i++ {
		b.Write(gb18030(t, fmt.Sprintf("51010119900101%04d,李四%d,二级\n", i, i)))
	}
	h.write("mixed.csv", b.Bytes())
	h.none()
	rep := readReport(t, filepath.Join(h.ds.Inbox, "rejected", "mixed.csv"))
	for _, w := range []string{"mixed encoding", "switches from utf-8 to gb18030 at line 5", "3 are GB18030"} {
		if !strings.Contains(rep, w) {
			t.Errorf("report lacks %q:\n%s", w, rep)
		}
	}
	if strings.Contains(rep, "header") {
		t.Errorf("report blames the header:\n%s", rep)
	}
	// The other way round: a GB18030 file with UTF-8 lines.
	var g bytes.Buffer
	g.Write(gb18030(t, "身份证号,姓名,残疾等级\n510101199001010001,王五,一级\n"))
	g.WriteString("510101199001010002,赵六六,二级\n")
	h.write("mixed2.csv", g.Bytes())
	h.none()
	rep = readReport(t, filepath.Join(h.ds.Inbox, "rejected", "mixed2.csv"))
	if !strings.Contains(rep, "switches from gb18030 to utf-8 at line 3") {
		t.Errorf("report:\n%s", rep)
	}
}

// Files that are no table say what they are, distinct from a damaged spreadsheet;
// a CSV that only has a spreadsheet's name is read as CSV.
func TestWhatTheFileReallyIs(t *testing.T) {
	h := newHarness(t, baseDataset(t))
	real := filepath.Join(t.TempDir(), "real.xlsx")
	writeXLSX(t, real, [][]any{{"身份证号", "姓名", "残疾等级"}, {"510101199001011234", "张三", "一级"}}, "")
	xb, err := os.ReadFile(real)
	if err != nil {
		t.Fatal(err)
	}
	var docx bytes.Buffer
	zw := zip.NewWriter(&docx)
	w, _ := zw.Create("word/document.xml")
	w.Write([]byte("<w:document/>"))
	zw.Close()
	for _, tc := range []struct {
		name    string
		content []byte
		want    string
	}{
		{"cut.xlsx", xb[:len(xb)/2], "corrupt or truncated XLSX: the ZIP archive inside cannot be read"},
		{"letter.xlsx", docx.Bytes(), "not a spreadsheet: the file is a Word document (.docx)"},
		{"table.xls", []byte("\xEF\xBB\xBF<!DOCTYPE html><html><table><tr><td>身份证号</td></tr></table>"), "not a spreadsheet: the file is an HTML page"},
		{"scan.xlsx", []byte("%PDF-1.7\n..."), "not a spreadsheet or CSV file: it is a PDF document"},
		{"photo.xls", []byte("\x89PNG\r\n\x1a\n...."), "it is a PNG image"},
		{"blob.xlsx", []byte{1, 2, 0, 4, 5}, "binary data of an unknown kind"},
		{"empty.xlsx", nil, "empty file (0 bytes)"},
	} {
		h.write(tc.name, tc.content)
		h.none()
		rep := readReport(t, filepath.Join(h.ds.Inbox, "rejected", tc.name))
		if !strings.Contains(rep, tc.want) {
			t.Errorf("%s: report lacks %q:\n%s", tc.name, tc.want, rep)
		}
	}
	h.write("renamed.xlsx", []byte("身份证号,姓名,残疾等级\n510101199001011234,张三,一级\n"))
	if cs := h.delivery(); len(cs) != 1 || cs[0].Envelope.Op != schemas.OpCreate {
		t.Fatalf("CSV named .xlsx: %v", summary(cs))
	}
	h.write("legacy.xlsx", fixture(t, "full1.xls"))
	h.none()
	rep := readReport(t, filepath.Join(h.ds.Inbox, "rejected", "legacy.xlsx"))
	if !strings.Contains(rep, `unknown column: map it`) {
		t.Errorf("an XLS named .xlsx is read as XLS (its extra columns are then unknown):\n%s", rep)
	}
}

// An endless line is cut at the row limit: memory stays bounded, the row is a dead
// letter naming its length, and the rest of the file is read as usual.
func TestHugeLineIsBounded(t *testing.T) {
	ds := baseDataset(t)
	ds.MaxRowBytes = 1024
	ds.MaxFieldBytes = 512
	ds.MaxBadRowShare = 0.9
	h := newHarness(t, ds)
	var b bytes.Buffer
	b.WriteString("身份证号,姓名,残疾等级\n510101199001010001,a,一级\n")
	b.WriteString("510101199001010002,\"")
	b.WriteString(strings.Repeat("名", 1<<20)) // 3 MiB inside an open quote
	b.WriteString("\",二级\n510101199001010003,c,三级\n")
	h.write("huge.csv", b.Bytes())
	cs := h.delivery()
	eq(t, rowChanges(cs), []string{"c 510101199001010001", "c 510101199001010003"})
	dl := deadLetters(cs)
	if len(dl) != 1 || !strings.Contains(dl[0].Reason, "line 3 is 3145756 bytes long, more than the row limit of 1024 bytes (limits.max_row_bytes)") {
		t.Fatalf("dead letters %v", dl)
	}
	if len(dl[0].Payload) > 1100 {
		t.Fatalf("dead letter payload of %d bytes", len(dl[0].Payload))
	}
}

// TestNoFullIDAtRest checks that dead-letter records and reports mask ID numbers and
// phones by default, and keep them only when the deployment opts in (pii.dlq: raw).
func TestNoFullIDAtRest(t *testing.T) {
	const id, phone = "11010519491231002X", "13800138000"
	file := csvUTF8BOM("身份证号,姓名,残疾等级",
		"510101199001010011,a,一级",
		"510101199001010029,c,三级,"+phone, // one field too many
		id+",b,二级",
		id+",b,三级", // a conflicting duplicate: the report names the key
		"510101199001010037,d,一级", "510101199001010045,e,一级", "510101199001010053,f,一级")
	for _, raw := range []bool{false, true} {
		t.Run(fmt.Sprintf("raw=%v", raw), func(t *testing.T) {
			ds := baseDataset(t)
			h := &harness{t: t, ds: ds, clock: &fakeClock{t: time.Unix(1_700_000_000, 0)}}
			var err error
			if h.metrics, err = NewMetrics(prometheus.NewRegistry()); err != nil {
				t.Fatal(err)
			}
			if raw {
				h.scrub = func(s string) string { return s }
			}
			if err := os.MkdirAll(ds.Inbox, 0o755); err != nil {
				t.Fatal(err)
			}
			h.open(nil)
			h.write("d.csv", file)
			var dead []string
			for _, c := range h.delivery() {
				if c.DeadLetter != nil {
					dead = append(dead, c.DeadLetter.Reason+"|"+c.DeadLetter.Key+"|"+string(c.DeadLetter.Payload)+"|"+string(c.Key))
				}
			}
			if len(dead) != 3 {
				t.Fatalf("dead letters = %q, want 3", dead)
			}
			report := readReport(t, filepath.Join(ds.Inbox, "archive", "d.csv"))
			full := func(text string) bool { return strings.Contains(text, id) || strings.Contains(text, phone) }
			// Reports name keys masked whatever the setting: they are read by people.
			if full(report) || !strings.Contains(report, "1101**********002X") {
				t.Fatalf("report:\n%s", report)
			}
			// Dead letters keep the raw row only when the deployment opts in.
			for _, text := range dead {
				if full(text) != raw {
					t.Fatalf("raw=%v but full ID or phone present=%v in: %s", raw, full(text), text)
				}
				if !raw && !strings.Contains(text, "1101**********002X") && !strings.Contains(text, "138****8000") {
					t.Fatalf("masked ID missing from: %s", text)
				}
			}
		})
	}
}
