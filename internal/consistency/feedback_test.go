package consistency

import (
	"bytes"
	"context"
	"database/sql"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"

	"github.com/shouwang/shouwang/internal/region"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/sinks/postgres"
)

// TestFeedbackLists fills a provincial database with discrepancies in every state
// and checks that each department's workbook lists exactly its open ones, per county,
// with the names a department needs and the columns for its answer.
func TestFeedbackLists(t *testing.T) {
	ctx := context.Background()
	p, pdb := testenv.PostgresDatabase(t)
	if _, err := postgres.MigrateDSN(ctx, p.ConnString(pdb), nil); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("pgx", p.ConnString(pdb))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	regions, err := region.Default()
	if err != nil {
		t.Fatal(err)
	}
	// Two villages in 513423 (盐源县) and one in 510104 (锦江区).
	var v1, v2, v3 region.Region
	for _, v := range regions.Villages() {
		switch {
		case strings.HasPrefix(v.Code, "513423") && v1.Code == "":
			v1 = v
		case strings.HasPrefix(v.Code, "513423") && v2.Code == "" && v.Code[:9] != v1.Code[:9]:
			v2 = v
		case strings.HasPrefix(v.Code, "510104") && v3.Code == "":
			v3 = v
		}
	}
	if v1.Code == "" || v2.Code == "" || v3.Code == "" {
		t.Fatal("test villages not found in the region table")
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(`INSERT INTO fpjc.household (key, version, household_no, region_code, head_name) VALUES
		('H1', 1, 'H1', $1, '张三'), ('H2', 1, 'H2', $2, '李四'), ('H3', 1, 'H3', $3, '王五')`, v1.Code, v2.Code, v3.Code)
	exec(`INSERT INTO fpjc.person (key, version, person_no, household_no, region_code, id_no, name) VALUES
		('P1', 1, 'P1', 'H1', $1, '513423199001011234', '张三'),
		('P2', 1, 'P2', 'H2', NULL, '51342319900202123X', '李小四')`, v1.Code)
	disc := func(id, dep, kind, subject, hh, regionCode, field, status string, deleted bool) {
		exec(`INSERT INTO fpjc.discrepancy (key, version, id, department, subject_kind, subject_key, household_no, region_code,
			field, registry_value, department_value, status, detected_at, deleted)
			VALUES ($1, 1, $1, $2, $3, $4, NULLIF($5, ''), NULLIF($6, ''), $7, '健康', '残疾', $8, '2026-12-01T08:00:00Z', $9)`,
			id, dep, kind, subject, hh, regionCode, field, status, deleted)
	}
	// canlian: P1 (region on the discrepancy), P2 (region and 户编号 only through the
	// registry), a corrected one and a deleted one (neither open).
	disc("d1", "canlian", "person", "513423199001011234", "H1", v1.Code, "health", "pending", false)
	disc("d2", "canlian", "person", "51342319900202123X", "", "", "disability_grade", "pending", false)
	disc("d3", "canlian", "person", "513423199001011234", "H1", v1.Code, "disability_type", "corrected", false)
	disc("d4", "canlian", "person", "513423199001011234", "H1", v1.Code, "health", "pending", true)
	// zhujian: a household subject in 锦江区, and one with no region anywhere.
	disc("d5", "zhujian", "household", "H3", "H3", "", "dangerous_house", "pending", false)
	disc("d6", "zhujian", "household", "H9", "H9", "", "dangerous_house", "pending", false)
	// minzheng: confirmed by the department but not yet corrected.
	disc("d7", "minzheng", "person", "513423199001011234", "H1", v1.Code, "dibao_status", "confirmed", false)

	mask := func(s string) (string, error) { return s[:6] + "********" + s[len(s)-4:], nil }
	lists, err := LoadFeedback(ctx, FeedbackOptions{DB: db, Regions: regions, Identity: mask})
	if err != nil {
		t.Fatal(err)
	}
	var deps []string
	for _, l := range lists {
		deps = append(deps, l.Department)
	}
	if !slices.Equal(deps, []string{"canlian", "zhujian"}) {
		t.Fatalf("departments %v, want [canlian zhujian] (minzheng's only discrepancy is confirmed, not pending)", deps)
	}
	can, zhu := lists[0], lists[1]
	if len(can.Rows) != 2 || can.Rows[0].ID != "d1" || can.Rows[1].ID != "d2" {
		t.Fatalf("canlian rows %+v, want d1 and d2", can.Rows)
	}
	r2 := can.Rows[1]
	if r2.RegionCode != v2.Code || r2.HouseholdNo != "H2" || r2.Name != "李小四" || r2.County != "513423" || r2.VillageName != v2.Name {
		t.Errorf("d2 was not completed from the registry: %+v", r2)
	}
	if r2.SubjectKey != "513423********123X" {
		t.Errorf("d2 subject %q: the identity function was not applied", r2.SubjectKey)
	}
	if zhu.Rows[0].ID != "d5" || zhu.Rows[0].Name != "王五" || zhu.Rows[0].County != "510104" || zhu.Rows[0].SubjectKey != "H3" {
		t.Errorf("zhujian household row %+v", zhu.Rows[0])
	}
	if zhu.Rows[1].ID != "d6" || zhu.Rows[1].County != noCounty {
		t.Errorf("a discrepancy with no region must be listed under %s: %+v", noCounty, zhu.Rows[1])
	}
	// Scope, department and status filters.
	scoped, err := LoadFeedback(ctx, FeedbackOptions{DB: db, Regions: regions, Scope: "513423", Statuses: []string{"pending", "confirmed"}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, l := range scoped {
		got[l.Department] = len(l.Rows)
	}
	if len(got) != 2 || got["canlian"] != 2 || got["minzheng"] != 1 {
		t.Errorf("in 513423, pending or confirmed: %v, want canlian 2, minzheng 1", got)
	}
	only, err := LoadFeedback(ctx, FeedbackOptions{DB: db, Regions: regions, Departments: []string{"zhujian"}})
	if err != nil || len(only) != 1 || only[0].Department != "zhujian" {
		t.Errorf("--department zhujian: %v, %v", only, err)
	}
	if _, err := LoadFeedback(ctx, FeedbackOptions{DB: db, Regions: regions, Statuses: []string{"open"}}); err == nil || !strings.Contains(err.Error(), "pending, confirmed") {
		t.Errorf("an unknown status must be refused naming the valid ones: %v", err)
	}

	// The workbook.
	var buf bytes.Buffer
	if err := can.WriteXLSX(&buf, time.Date(2026, 12, 8, 9, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	f, err := excelize.OpenReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	county := "盐源县513423"
	if c, ok := regions.Get("513423000000"); ok {
		county = c.Name + "513423"
	}
	if sheets := f.GetSheetList(); !slices.Equal(sheets, []string{"说明", "汇总", county}) {
		t.Fatalf("sheets %v", sheets)
	}
	about, _ := f.GetCellValue("说明", "A1")
	if about != "残联行业数据比对反馈清单" {
		t.Errorf("说明!A1 = %q", about)
	}
	if total, _ := f.GetCellValue("说明", "A3"); !strings.HasPrefix(total, "共 2 条差异（待核实 2 条）") {
		t.Errorf("说明!A3 = %q", total)
	}
	summary, err := f.GetRows("汇总")
	if err != nil {
		t.Fatal(err)
	}
	wantSummary := [][]string{
		{"县（市、区）代码", "县（市、区）", "残疾等级", "健康状况", "合计"},
		{"513423", strings.TrimSuffix(county, "513423"), "1", "1", "2"},
		{"合计", "", "1", "1", "2"},
	}
	if !slices.EqualFunc(summary, wantSummary, slices.Equal[[]string]) {
		t.Errorf("汇总 = %q, want %q", summary, wantSummary)
	}
	rows, err := f.GetRows(county)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || !slices.Equal(rows[0], feedbackHeaders) {
		t.Fatalf("county sheet rows %q", rows)
	}
	want := []string{"2", "d2", strings.TrimSuffix(county, "513423"), r2.TownshipName, v2.Name, "H2", "李小四", "513423********123X",
		"残疾等级", "健康", "残疾", "待核实", "2026-12-01T08:00:00Z"}
	if !slices.Equal(rows[2], want) {
		t.Errorf("county sheet row 2 = %q, want %q", rows[2], want)
	}
	dvs, err := f.GetDataValidations(county)
	if err != nil {
		t.Fatal(err)
	}
	if len(dvs) != 1 || dvs[0].Sqref != "N2:N3" || !strings.Contains(dvs[0].Formula1, "不属实") {
		t.Errorf("核实结果 drop-down: %+v", dvs)
	}
}

func TestSheetName(t *testing.T) {
	used := map[string]bool{}
	if got := sheetName("510104", "锦江区", used); got != "锦江区510104" {
		t.Errorf("got %q", got)
	}
	if got := sheetName("510104", "锦江区", used); got != "锦江区510104_2" {
		t.Errorf("a second sheet of the same name: got %q", got)
	}
	long := strings.Repeat("很长的名字", 10) + "[a]"
	got := sheetName("999999", long, used)
	if n := len([]rune(got)); n > 31 || strings.ContainsAny(got, "[]:*?/\\") {
		t.Errorf("got %q (%d characters)", got, n)
	}
}
