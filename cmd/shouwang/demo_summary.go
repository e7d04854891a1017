package main

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/width"

	"github.com/shouwang/shouwang/internal/consistency"
	"github.com/shouwang/shouwang/internal/region"
	"github.com/shouwang/shouwang/sinks/postgres"
)

// pushEntityLabels are the Chinese names of the national tables a weekly push reloads.
var pushEntityLabels = map[string]string{"household": "户", "person": "人员", "measure": "帮扶措施"}

// printSummary prints the week in Chinese (本周摘要): the push's true changes and the
// department deliveries, the open warnings by county and department, the open quality
// issues by rule, the pending discrepancies by department (all counted in the
// provincial database, each breakdown checked against its total) and the totals checks.
func (d *demo) printSummary(ctx context.Context) error {
	db, regions, err := d.provincial()
	if err != nil {
		return err
	}
	defer db.Close()
	var b strings.Builder
	b.WriteString("\n      ════ 本周摘要 Weekly summary ════\n")

	// What changed this week: the national push (ground truth of the generator) and the
	// department deliveries.
	if d.pushed != nil {
		var rows, changes int64
		for _, n := range d.pushed.Rows {
			rows += n
		}
		for _, n := range d.pushed.Changes {
			changes += n
		}
		fmt.Fprintf(&b, "\n      一、本周变化 What changed this week\n")
		fmt.Fprintf(&b, "        国办每周重推（第 1 周）：重写 %d 行，真实变化 %d 条\n", rows, changes)
		t := [][]string{{"实体 entity", "新增 c", "修改 u", "删除 d", "合计"}}
		for _, e := range pushEntities(d.pushed.Changes) {
			c, u, del := d.pushed.Changes[e+"/c"], d.pushed.Changes[e+"/u"], d.pushed.Changes[e+"/d"]
			t = append(t, []string{label(pushEntityLabels, e) + " " + e, itoa(c), itoa(u), itoa(del), itoa(c + u + del)})
		}
		writeTable(&b, "          ", t)
	}
	deliveries, err := d.deliveries(ctx, db)
	if err != nil {
		return err
	}
	fmt.Fprintf(&b, "        部门数据交付（交换库表 + 文件）：\n")
	writeTable(&b, "          ", deliveries)

	// Department screening warnings awaiting verification.
	open, byWarning, err := countGroups(ctx, db, "warning", "status = 'open'", "substr(region_code, 1, 6)", "department")
	if err != nil {
		return err
	}
	fmt.Fprintf(&b, "\n      二、部门预警 Department warnings：待核实 %d 条\n", open)
	shown, rest, restN := top(byWarning[0], summaryCounties)
	t := [][]string{{fmt.Sprintf("按县 by county（%d 个县）", len(byWarning[0])), "条数"}}
	for _, c := range shown {
		t = append(t, []string{c.key + " " + countyName(regions, c.key), itoa(c.n)})
	}
	if rest > 0 {
		t = append(t, []string{fmt.Sprintf("其余 %d 个县 other counties", rest), itoa(restN)})
	}
	writeTable(&b, "        ", t)
	writeTable(&b, "        ", departmentRows("按部门 by department", byWarning[1]))

	// Supervision rules' open quality issues.
	issues, byRule, err := countGroups(ctx, db, "quality_issue", "status = 'open'", "rule_id")
	if err != nil {
		return err
	}
	qrules, _, err := d.w.monitorRules()
	if err != nil {
		return err
	}
	fmt.Fprintf(&b, "\n      三、质量问题 Quality issues：未关闭 %d 条\n", issues)
	t = [][]string{{"按规则 by rule", "条数", "规则 rule"}}
	for _, c := range byRule[0] {
		t = append(t, []string{c.key, itoa(c.n), qrules.Title(c.key)})
	}
	writeTable(&b, "        ", t)

	// Department comparisons awaiting the department's answer.
	pending, byDept, err := countGroups(ctx, db, "discrepancy", "status = 'pending'", "department")
	if err != nil {
		return err
	}
	fmt.Fprintf(&b, "\n      四、行业数据比对 Department discrepancies：待核实 %d 条\n", pending)
	writeTable(&b, "        ", departmentRows("按部门 by department", byDept[0]))

	// Regional totals.
	fmt.Fprintf(&b, "\n      五、地区总数核查 Regional totals\n")
	t = [][]string{{"核查 checker", "源端 ↔ 目标端", "指标", "结果"}}
	for _, rep := range d.totals {
		matched := 0
		for _, ind := range rep.Indicators {
			if !ind.Mismatch {
				matched++
			}
		}
		t = append(t, []string{rep.Checker, rep.Source + " ↔ " + rep.Sink,
			fmt.Sprintf("%d/%d 项一致", matched, len(rep.Indicators)), matchLabel(rep.Match)})
	}
	writeTable(&b, "        ", t)
	if d.reconciled() {
		fmt.Fprintf(&b, "        总数核对：一致 totals reconciled\n")
	} else {
		fmt.Fprintf(&b, "        总数核对：不一致 totals DO NOT reconcile (%d of %d checkers ran)\n", len(d.totals), len(d.cfg.Checkers))
	}
	d.printf("%s", b.String())
	return nil
}

func matchLabel(ok bool) string {
	if ok {
		return "一致"
	}
	return "不一致"
}

// deliveries lists per department what it delivered: exchange-table rows (the
// generator's), files archived by capture, and the department facts the provincial
// database holds.
func (d *demo) deliveries(ctx context.Context, db *sql.DB) ([][]string, error) {
	tableRows := map[string]int64{}
	for table, n := range d.summary.DeptRows {
		dept, _, _ := strings.Cut(table, ".")
		tableRows[dept] += n
	}
	files := map[string]int{}
	for _, s := range d.cfg.Sources {
		if s.FileDrop == nil {
			continue
		}
		for _, ds := range s.FileDrop.Datasets {
			files[ds.Department] += countFiles(filepath.Join(d.cfg.ResolvePath(ds.Inbox), "archive"))
		}
	}
	_, facts, err := countGroups(ctx, db, "department_fact", "true", "department")
	if err != nil {
		return nil, err
	}
	factsOf := map[string]int64{}
	for _, c := range facts[0] {
		factsOf[c.key] = c.n
	}
	depts := map[string]bool{}
	for k := range tableRows {
		depts[k] = true
	}
	for k := range files {
		depts[k] = true
	}
	for k := range factsOf {
		depts[k] = true
	}
	t := [][]string{{"部门 department", "交换库行数", "文件份数", "省级库部门事实"}}
	for _, k := range sortedKeys(depts) {
		t = append(t, []string{departmentLabel(k), itoa(tableRows[k]), strconv.Itoa(files[k]), itoa(factsOf[k])})
	}
	return t, nil
}

// pushEntities lists the entities of "entity/op" change keys, household first.
func pushEntities(changes map[string]int64) []string {
	order := map[string]int{"household": 0, "person": 1, "measure": 2}
	seen := map[string]bool{}
	var out []string
	for k := range changes {
		e, _, _ := strings.Cut(k, "/")
		if !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		oi, iok := order[out[i]]
		oj, jok := order[out[j]]
		if iok != jok {
			return iok
		}
		if oi != oj {
			return oi < oj
		}
		return out[i] < out[j]
	})
	return out
}

// summaryCounties is how many counties the summary lists by name (the most warnings
// first); the others are added up on one line.
const summaryCounties = 10

// top returns the first n groups, and how many groups and rows the others hold.
func top(groups []keyCount, n int) (shown []keyCount, rest int, restN int64) {
	if len(groups) <= n {
		return groups, 0, 0
	}
	for _, g := range groups[n:] {
		restN += g.n
	}
	return groups[:n], len(groups) - n, restN
}

type keyCount struct {
	key string
	n   int64
}

// countGroups counts the live rows of a provincial table that satisfy where, and
// groups them by each expression (by descending count); it fails when a grouping does
// not add up to the count.
func countGroups(ctx context.Context, db *sql.DB, table, where string, groupBy ...string) (int64, [][]keyCount, error) {
	from := ` FROM ` + postgres.Schema + `.` + table + ` WHERE ` + where + ` AND NOT deleted`
	var total int64
	if err := db.QueryRowContext(ctx, `SELECT count(*)`+from).Scan(&total); err != nil {
		return 0, nil, fmt.Errorf("count %s: %w", table, err)
	}
	out := make([][]keyCount, len(groupBy))
	for i, expr := range groupBy {
		groups, err := queryGroups(ctx, db, `SELECT coalesce(`+expr+`, ''), count(*)`+from+` GROUP BY 1`)
		if err != nil {
			return 0, nil, fmt.Errorf("%s by %s: %w", table, expr, err)
		}
		var sum int64
		for _, g := range groups {
			sum += g.n
		}
		if sum != total {
			return 0, nil, fmt.Errorf("%s by %s: the groups add up to %d, the table holds %d", table, expr, sum, total)
		}
		out[i] = groups
	}
	return total, out, nil
}

func queryGroups(ctx context.Context, db *sql.DB, query string) ([]keyCount, error) {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []keyCount
	for rows.Next() {
		var c keyCount
		if err := rows.Scan(&c.key, &c.n); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].n != out[j].n {
			return out[i].n > out[j].n
		}
		return out[i].key < out[j].key
	})
	return out, rows.Err()
}

func departmentRows(head string, counts []keyCount) [][]string {
	t := [][]string{{head, "条数"}}
	for _, c := range counts {
		t = append(t, []string{departmentLabel(c.key), itoa(c.n)})
	}
	return t
}

// departmentLabel is "医保 yibao" for a department code.
func departmentLabel(code string) string {
	if code == "" {
		return "未知部门"
	}
	return label(consistency.DepartmentLabels, code) + " " + code
}

func label(labels map[string]string, code string) string {
	if l, ok := labels[code]; ok {
		return l
	}
	return code
}

// countyName names a 6-digit county code (未知区划 when the region table lacks it).
func countyName(regions *region.Table, county string) string {
	if len(county) == 6 {
		if r, ok := regions.Ancestor(county+"000000", region.County); ok {
			return r.Name
		}
	}
	return "未知区划"
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// writeTable writes rows as aligned columns (by display width: a CJK character takes
// two columns); columns whose cells are all numbers (apart from the header) are right
// aligned.
func writeTable(b *strings.Builder, indent string, rows [][]string) {
	if len(rows) == 0 {
		return
	}
	cols := len(rows[0])
	widths := make([]int, cols)
	numeric := make([]bool, cols)
	for c := range numeric {
		numeric[c] = len(rows) > 1
	}
	for i, r := range rows {
		for c, cell := range r {
			widths[c] = max(widths[c], displayWidth(cell))
			if _, err := strconv.ParseInt(cell, 10, 64); i > 0 && err != nil {
				numeric[c] = false
			}
		}
	}
	for _, r := range rows {
		b.WriteString(indent)
		for c, cell := range r {
			pad := strings.Repeat(" ", widths[c]-displayWidth(cell))
			if c > 0 {
				b.WriteString("  ")
			}
			switch {
			case numeric[c]:
				b.WriteString(pad + cell)
			case c == len(r)-1:
				b.WriteString(cell)
			default:
				b.WriteString(cell + pad)
			}
		}
		b.WriteString("\n")
	}
}

// displayWidth is the number of terminal columns s takes.
func displayWidth(s string) int {
	n := 0
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		s = s[size:]
		switch width.LookupRune(r).Kind() {
		case width.EastAsianWide, width.EastAsianFullwidth:
			n += 2
		default:
			n++
		}
	}
	return n
}
