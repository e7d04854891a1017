package consistency

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/xuri/excelize/v2"

	"github.com/shouwang/shouwang/internal/region"
)

// DepartmentLabels are the Chinese names of the department codes
// (schemas.DepartmentFact.Department).
var DepartmentLabels = map[string]string{
	"yibao": "医保", "weijian": "卫健", "jiaoyu": "教育", "zhujian": "住建", "minzheng": "民政",
	"canlian": "残联", "yingji": "应急", "nongye": "农业农村", "gongan": "公安", "renshe": "人社", "shuili": "水利",
}

// fieldLabels are the Chinese names of the compared fields (schemas.Discrepancy.Field).
var fieldLabels = map[string]string{
	"health": "健康状况", "disability_grade": "残疾等级", "disability_type": "残疾类别",
	"dibao_status": "低保", "tekun_status": "特困供养", "dangerous_house": "住房安全",
	"deceased": "死亡", "medical_insurance": "基本医疗保险参保",
}

// statusLabels are the Chinese names of discrepancy statuses.
var statusLabels = map[string]string{"pending": "待核实", "confirmed": "部门已确认", "corrected": "已更正", "rejected": "不属实"}

// FeedbackOptions selects the open discrepancies (行业数据比对) to send back to the
// departments.
type FeedbackOptions struct {
	// DB is the provincial database (schema fpjc).
	DB *sql.DB
	// Regions names counties, townships and villages.
	Regions *region.Table
	// Scope is a region code prefix (2, 4, 6, 9 or 12 digits); "" is everywhere.
	Scope string
	// Departments are the department codes exported; every one when empty.
	Departments []string
	// Statuses are the discrepancy statuses exported (default: pending).
	Statuses []string
	// Identity rewrites ID numbers before they are written (e.g. reveals SM4 tokens or
	// masks); nil writes them as stored.
	Identity func(string) (string, error)
	// Progress, when set, reports each step.
	Progress func(format string, args ...any)
}

// FeedbackRow is one open discrepancy with the names a department needs to find the
// subject.
type FeedbackRow struct {
	ID              string `json:"id"`
	Department      string `json:"department"`
	SubjectKind     string `json:"subject_kind"`
	SubjectKey      string `json:"subject_key"`
	Name            string `json:"name,omitempty"`
	HouseholdNo     string `json:"household_no,omitempty"`
	RegionCode      string `json:"region_code,omitempty"`
	County          string `json:"county,omitempty"`
	CountyName      string `json:"county_name,omitempty"`
	TownshipName    string `json:"township_name,omitempty"`
	VillageName     string `json:"village_name,omitempty"`
	Field           string `json:"field"`
	RegistryValue   string `json:"registry_value"`
	DepartmentValue string `json:"department_value"`
	Status          string `json:"status"`
	DetectedAt      string `json:"detected_at"`
}

// DepartmentFeedback is one department's list, ordered by county, township, village
// and subject.
type DepartmentFeedback struct {
	Department string
	Rows       []FeedbackRow
}

// Label is the department's Chinese name (its code when unknown).
func (d *DepartmentFeedback) Label() string {
	if l, ok := DepartmentLabels[d.Department]; ok {
		return l
	}
	return d.Department
}

// noCounty groups discrepancies whose subject has no known region.
const noCounty = "未知区划"

// LoadFeedback reads the open discrepancies of the provincial database, one list per
// department (ordered by department code). The subject's name and region come from
// the discrepancy or else from the registry person or household it concerns.
func LoadFeedback(ctx context.Context, o FeedbackOptions) ([]*DepartmentFeedback, error) {
	statuses := o.Statuses
	if len(statuses) == 0 {
		statuses = []string{"pending"}
	}
	for _, s := range statuses {
		if _, ok := statusLabels[s]; !ok {
			return nil, fmt.Errorf("status %q: use pending, confirmed, corrected or rejected", s)
		}
	}
	args := []any{statuses, o.Scope + "%"}
	depWhere := ""
	if len(o.Departments) > 0 {
		args = append(args, o.Departments)
		depWhere = " AND d.department = ANY($3)"
	}
	progress := o.Progress
	if progress == nil {
		progress = func(string, ...any) {}
	}
	progress("reading open discrepancies (status %s) in %s", strings.Join(statuses, ", "), scopeLabel(o.Scope))
	// A person subject is found by ID number, a household by 户编号; the region is the
	// discrepancy's own, else the person's household's, else the person's.
	q := `SELECT d.id, d.department, d.subject_kind, d.subject_key,
		COALESCE(p.name, h.head_name, ''),
		COALESCE(NULLIF(d.household_no, ''), p.household_no, ''),
		COALESCE(NULLIF(d.region_code, ''), h.region_code, p.region_code, ''),
		COALESCE(d.field, ''), COALESCE(d.registry_value, ''), COALESCE(d.department_value, ''),
		d.status, COALESCE(d.detected_at, '')
	FROM fpjc.discrepancy d
	LEFT JOIN LATERAL (SELECT p.name, p.household_no, p.region_code FROM fpjc.person p
		WHERE d.subject_kind = 'person' AND p.id_no = d.subject_key AND NOT p.deleted
		ORDER BY p.version DESC LIMIT 1) p ON true
	LEFT JOIN fpjc.household h ON h.key = COALESCE(NULLIF(d.household_no, ''), p.household_no) AND NOT h.deleted
	WHERE NOT d.deleted AND d.status = ANY($1)` + depWhere + `
		AND COALESCE(NULLIF(d.region_code, ''), h.region_code, p.region_code, '') LIKE $2`
	rows, err := o.DB.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read fpjc.discrepancy: %w", err)
	}
	defer rows.Close()
	by := map[string]*DepartmentFeedback{}
	n := 0
	for rows.Next() {
		var r FeedbackRow
		if err := rows.Scan(&r.ID, &r.Department, &r.SubjectKind, &r.SubjectKey, &r.Name, &r.HouseholdNo, &r.RegionCode,
			&r.Field, &r.RegistryValue, &r.DepartmentValue, &r.Status, &r.DetectedAt); err != nil {
			return nil, fmt.Errorf("read fpjc.discrepancy: %w", err)
		}
		if o.Identity != nil && r.SubjectKind == "person" {
			if r.SubjectKey, err = o.Identity(r.SubjectKey); err != nil {
				return nil, fmt.Errorf("discrepancy %s: subject: %w", r.ID, err)
			}
		}
		o.name(&r)
		d := by[r.Department]
		if d == nil {
			d = &DepartmentFeedback{Department: r.Department}
			by[r.Department] = d
		}
		d.Rows = append(d.Rows, r)
		n++
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read fpjc.discrepancy: %w", err)
	}
	out := make([]*DepartmentFeedback, 0, len(by))
	for _, d := range by {
		// by county (未知区划 last: it sorts after the digits), then region and subject
		slices.SortFunc(d.Rows, func(a, b FeedbackRow) int {
			if c := strings.Compare(a.County, b.County); c != 0 {
				return c
			}
			if c := strings.Compare(a.RegionCode, b.RegionCode); c != 0 {
				return c
			}
			if c := strings.Compare(a.SubjectKey, b.SubjectKey); c != 0 {
				return c
			}
			return strings.Compare(a.ID, b.ID)
		})
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b *DepartmentFeedback) int { return strings.Compare(a.Department, b.Department) })
	progress("%d open discrepancies for %d departments", n, len(out))
	return out, nil
}

func scopeLabel(scope string) string {
	if scope == "" {
		return "every region"
	}
	return "region " + scope
}

// name fills the county code and the county, township and village names.
func (o FeedbackOptions) name(r *FeedbackRow) {
	r.County = noCounty
	if len(r.RegionCode) != 12 || o.Regions == nil {
		return
	}
	if c, ok := o.Regions.Ancestor(r.RegionCode, region.County); ok {
		r.County, r.CountyName = c.Code[:6], c.Name
	}
	if t, ok := o.Regions.Ancestor(r.RegionCode, region.Township); ok {
		r.TownshipName = t.Name
	}
	if v, ok := o.Regions.Get(r.RegionCode); ok && v.Level == region.Village {
		r.VillageName = v.Name
	}
}

// Counties are the department's counties in order, with their discrepancy counts.
func (d *DepartmentFeedback) Counties() (codes []string, counts map[string]int) {
	counts = map[string]int{}
	for _, r := range d.Rows {
		if counts[r.County] == 0 {
			codes = append(codes, r.County)
		}
		counts[r.County]++
	}
	slices.Sort(codes)
	return codes, counts
}

// feedbackHeaders are the columns of a county sheet; the last two are for the
// department's answer.
var feedbackHeaders = []string{"序号", "比对编号", "县（市、区）", "乡（镇）", "村（社区）", "户编号", "姓名",
	"证件号码/户编号", "比对项", "系统登记值", "部门数据值", "状态", "发现时间", "核实结果", "核实说明"}

// verdicts are the answers a department may give (a drop-down list in 核实结果).
var verdicts = []string{"属实（系统登记有误）", "不属实（部门数据有误）", "已更正"}

// WriteXLSX writes the department's feedback workbook: 说明 (how to answer), 汇总
// (discrepancies per county and compared field) and one sheet per county listing
// every discrepancy, with 核实结果 (a drop-down list) and 核实说明 left for the
// department to fill in.
func (d *DepartmentFeedback) WriteXLSX(w io.Writer, generated time.Time) error {
	f, bold, write, err := newWorkbook()
	if err != nil {
		return err
	}
	defer f.Close()
	const about, summary = "说明", "汇总"
	if err := f.SetSheetName("Sheet1", about); err != nil {
		return err
	}
	lines := []string{
		d.Label() + "行业数据比对反馈清单",
		"生成时间：" + generated.Format("2006-01-02 15:04"),
		fmt.Sprintf("共 %d 条差异（%s）：部门数据与防返贫监测帮扶信息平台登记信息不一致。", len(d.Rows), d.byStatus()),
		"请逐条核实，在各县工作表的“核实结果”列选择：" + strings.Join(verdicts, "、") + "，并在“核实说明”列写明依据。",
		"“比对编号”是差异的唯一编号，请勿修改，回传时据此对应。",
		"本表含个人信息，仅限核实使用，请按数据安全管理规定传递和保管。",
	}
	for i, l := range lines {
		if err := write(about, i+1, l); err != nil {
			return err
		}
	}
	if err := f.SetCellStyle(about, "A1", "A1", bold); err != nil {
		return err
	}
	if err := f.SetColWidth(about, "A", "A", 100); err != nil {
		return err
	}
	if _, err := f.NewSheet(summary); err != nil {
		return err
	}
	codes, counts := d.Counties()
	fields := map[string]bool{}
	for _, r := range d.Rows {
		fields[r.Field] = true
	}
	fieldOrder := make([]string, 0, len(fields))
	for k := range fields {
		fieldOrder = append(fieldOrder, k)
	}
	slices.Sort(fieldOrder)
	head := []any{"县（市、区）代码", "县（市、区）"}
	for _, fl := range fieldOrder {
		head = append(head, fieldLabel(fl))
	}
	head = append(head, "合计")
	if err := write(summary, 1, head...); err != nil {
		return err
	}
	perField := map[string]map[string]int{}
	names := map[string]string{}
	for _, r := range d.Rows {
		if perField[r.County] == nil {
			perField[r.County] = map[string]int{}
		}
		perField[r.County][r.Field]++
		names[r.County] = r.CountyName
	}
	total := map[string]int{}
	for i, c := range codes {
		row := []any{c, names[c]}
		for _, fl := range fieldOrder {
			row = append(row, perField[c][fl])
			total[fl] += perField[c][fl]
		}
		row = append(row, counts[c])
		if err := write(summary, i+2, row...); err != nil {
			return err
		}
	}
	last := []any{"合计", ""}
	for _, fl := range fieldOrder {
		last = append(last, total[fl])
	}
	last = append(last, len(d.Rows))
	if err := write(summary, len(codes)+2, last...); err != nil {
		return err
	}
	if err := f.SetRowStyle(summary, 1, 1, bold); err != nil {
		return err
	}
	if err := f.SetRowStyle(summary, len(codes)+2, len(codes)+2, bold); err != nil {
		return err
	}
	if err := f.SetColWidth(summary, "A", "Z", 16); err != nil {
		return err
	}
	used := map[string]bool{about: true, summary: true}
	rowsOf := map[string][]FeedbackRow{}
	for _, r := range d.Rows {
		rowsOf[r.County] = append(rowsOf[r.County], r)
	}
	for _, c := range codes {
		sheet := sheetName(c, names[c], used)
		if _, err := f.NewSheet(sheet); err != nil {
			return err
		}
		hv := make([]any, len(feedbackHeaders))
		for i, h := range feedbackHeaders {
			hv[i] = h
		}
		if err := write(sheet, 1, hv...); err != nil {
			return err
		}
		if err := f.SetRowStyle(sheet, 1, 1, bold); err != nil {
			return err
		}
		rs := rowsOf[c]
		for i, r := range rs {
			// ID numbers and 户编号 are written as text: as numbers, 18 digits lose precision
			if err := write(sheet, i+2, i+1, r.ID, r.CountyName, r.TownshipName, r.VillageName, r.HouseholdNo, r.Name,
				r.SubjectKey, fieldLabel(r.Field), r.RegistryValue, r.DepartmentValue, statusLabel(r.Status), r.DetectedAt, "", ""); err != nil {
				return err
			}
		}
		if err := f.SetColWidth(sheet, "A", "O", 16); err != nil {
			return err
		}
		if err := f.SetColWidth(sheet, "B", "B", 36); err != nil {
			return err
		}
		if err := f.SetColWidth(sheet, "H", "H", 22); err != nil {
			return err
		}
		dv := excelize.NewDataValidation(true)
		dv.Sqref = fmt.Sprintf("N2:N%d", len(rs)+1)
		if err := dv.SetDropList(verdicts); err != nil {
			return err
		}
		if err := f.AddDataValidation(sheet, dv); err != nil {
			return err
		}
		if err := f.AutoFilter(sheet, fmt.Sprintf("A1:O%d", len(rs)+1), nil); err != nil {
			return err
		}
		if err := f.SetPanes(sheet, &excelize.Panes{Freeze: true, YSplit: 1, TopLeftCell: "A2", ActivePane: "bottomLeft"}); err != nil {
			return err
		}
	}
	f.SetActiveSheet(1)
	if err := f.Write(w); err != nil {
		return fmt.Errorf("write the workbook: %w", err)
	}
	return nil
}

// byStatus counts the rows by status, in Chinese ("待核实 3 条、部门已确认 1 条").
func (d *DepartmentFeedback) byStatus() string {
	n := map[string]int{}
	for _, r := range d.Rows {
		n[r.Status]++
	}
	var parts []string
	for _, st := range []string{"pending", "confirmed", "corrected", "rejected"} {
		if n[st] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d 条", statusLabel(st), n[st]))
		}
	}
	return strings.Join(parts, "、")
}

// sheetName is a county's sheet name: its name and code, within Excel's 31
// characters and without the characters Excel forbids, unique in the workbook.
func sheetName(code, name string, used map[string]bool) string {
	s := code
	if name != "" {
		s = name + code
	}
	s = strings.Map(func(r rune) rune {
		if strings.ContainsRune(`[]:*?/\`, r) {
			return '_'
		}
		return r
	}, s)
	if r := []rune(s); len(r) > 31 {
		s = string(r[:31])
	}
	base := s
	for i := 2; used[s]; i++ {
		suffix := fmt.Sprintf("_%d", i)
		r := []rune(base)
		if len(r)+len(suffix) > 31 {
			r = r[:31-len(suffix)]
		}
		s = string(r) + suffix
	}
	used[s] = true
	return s
}

func fieldLabel(f string) string {
	if l, ok := fieldLabels[f]; ok {
		return l
	}
	return f
}

func statusLabel(s string) string {
	if l, ok := statusLabels[s]; ok {
		return l
	}
	return s
}
