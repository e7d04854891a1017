package schemas

import (
	"embed"
	"strings"
)

//go:embed ddl/*.sql
var ddlFiles embed.FS

// NationalMySQLDDL creates the national front-end database (国办前置库) tables
// household, person, measure and push_log in MySQL/MariaDB. It is embedded so the
// generator, the capture tests and operators all create exactly the same schema.
var NationalMySQLDDL = mustDDL("ddl/national.mysql.sql")

// DepartmentsPGDDL creates the department source schemas (yibao, canlian, zhujian,
// minzheng, gongan, jiaoyu, yingji) and their tables in PostgreSQL.
var DepartmentsPGDDL = mustDDL("ddl/departments.pg.sql")

func mustDDL(name string) string {
	b, err := ddlFiles.ReadFile(name)
	if err != nil {
		panic("schemas: embedded DDL missing: " + name + ": " + err.Error())
	}
	return string(b)
}

// SplitSQL splits a DDL script into single statements on semicolons at line ends, dropping
// comment-only lines, because database/sql drivers run one statement per Exec unless
// multi-statement mode is enabled. The DDL files contain no semicolons inside literals.
func SplitSQL(script string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(script, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(t, ";") {
			s := strings.TrimSpace(cur.String())
			out = append(out, strings.TrimSuffix(s, ";"))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}
