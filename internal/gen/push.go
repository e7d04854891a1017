package gen

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/shouwang/shouwang/internal/region"
	"math/rand/v2"
)

// Push modes: how the weekly whole-table reload reaches the front-end tables.
const (
	// PushTruncate empties each table with TRUNCATE, then loads it (autocommit chunks).
	PushTruncate = "truncate"
	// PushDelete deletes all rows and reloads all three tables in ONE transaction.
	PushDelete = "delete"
	// PushSpread deletes and re-inserts PK-ordered chunks spread over a duration.
	PushSpread = "spread"
)

// PushOptions configures one simulated weekly national push.
type PushOptions struct {
	Week     int
	MySQLDSN string
	// OutDir receives push-week-N.manifest.jsonl (appended) and the temporary reload files.
	OutDir string
	Mode   string
	// Progress, if set, is called after each loaded chunk.
	Progress func(table string, rows int64)
}

// PushResult counts what a push did.
type PushResult struct {
	Rows    map[string]int64 // rows written per table
	Changes map[string]int64 // "household/u" → count
}

// weekDate is the date of week N's push (AsOf + 7·N days).
func weekDate(cfg *Config, week int) time.Time { return cfg.AsOf.AddDate(0, 0, 7*week) }

// row is one front-end row read as strings; nil is NULL.
type row []*string

func (r row) get(i int) string {
	if r[i] == nil {
		return ""
	}
	return *r[i]
}

func (r row) set(i int, s string) { v := s; r[i] = &v }

func (r row) appendTSV(b []byte) []byte {
	t := tsv{b}
	for _, v := range r {
		if v == nil {
			t.null()
		} else {
			t.str(*v)
		}
	}
	t.end()
	return t.b
}

func colIndex(cols []string) map[string]int {
	m := make(map[string]int, len(cols))
	for i, c := range cols {
		m[c] = i
	}
	return m
}

var (
	hIdx = colIndex(HouseholdColumns)
	pIdx = colIndex(PersonColumns)
)

// tableReader streams a table in primary-key order.
type tableReader struct {
	rows *sql.Rows
	next row
	err  error
	vals []any
}

func openReader(ctx context.Context, db *sql.DB, table string, cols []string, pk string) (*tableReader, error) {
	rs, err := db.QueryContext(ctx, fmt.Sprintf("SELECT %s FROM `%s` ORDER BY `%s`", strings.Join(cols, ","), table, pk))
	if err != nil {
		return nil, fmt.Errorf("gen push: read %s: %w", table, err)
	}
	tr := &tableReader{rows: rs, vals: make([]any, len(cols))}
	tr.advance()
	return tr, nil
}

func (tr *tableReader) advance() {
	tr.next = nil
	if !tr.rows.Next() {
		tr.err = tr.rows.Err()
		return
	}
	ns := make([]sql.NullString, len(tr.vals))
	for i := range ns {
		tr.vals[i] = &ns[i]
	}
	if err := tr.rows.Scan(tr.vals...); err != nil {
		tr.err = err
		return
	}
	r := make(row, len(ns))
	for i, n := range ns {
		if n.Valid {
			s := n.String
			r[i] = &s
		}
	}
	tr.next = r
}

// takeWhile returns the rows whose first column starts with prefix.
func (tr *tableReader) takeWhile(prefix string) []row {
	var out []row
	for tr.next != nil && strings.HasPrefix(tr.next.get(0), prefix) {
		out = append(out, tr.next)
		tr.advance()
	}
	return out
}

func parseCents(s string) int64 {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	ip, fp, _ := strings.Cut(s, ".")
	i, _ := strconv.ParseInt(ip, 10, 64)
	fp = (fp + "00")[:2]
	f, _ := strconv.ParseInt(fp, 10, 64)
	v := i*100 + f
	if neg {
		v = -v
	}
	return v
}

// pushState carries one push's streaming state.
type pushState struct {
	cfg     *Config
	week    int
	date    time.Time
	updated string
	t       *region.Table
	idx     *villageIndex
	out     [3]*bufio.Writer
	files   [3]*os.File
	man     *json.Encoder
	res     *PushResult
	vUsed   map[string]bool
	vMaxSeq int
	vCode   string
	vNew    int
}

func (s *pushState) change(table, key, op string, fields ...string) error {
	s.res.Changes[table+"/"+op]++
	return s.man.Encode(ManifestLine{Kind: "change", Week: s.week, Table: table, Key: key, Op: op, Fields: fields})
}

func (s *pushState) emit(i int, b []byte) error {
	_, err := s.out[i].Write(b)
	return err
}

// Push simulates week's national push: it reads the current household, person and
// measure tables in PK order, applies the week's true changes (deterministic from seed,
// week and key) into temporary TSV files, records every change in
// OUT/push-week-N.manifest.jsonl, then reloads the tables in the chosen mode and writes
// push_log rows around the reload. Memory stays bounded: one village at a time.
func Push(ctx context.Context, cfg Config, opts PushOptions) (*PushResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gen push: invalid config: %w", err)
	}
	switch opts.Mode {
	case PushTruncate, PushDelete, PushSpread:
	default:
		return nil, fmt.Errorf("gen push: mode %q: use truncate, delete or spread", opts.Mode)
	}
	if opts.Week < 1 {
		return nil, fmt.Errorf("gen push: week must be ≥ 1, got %d", opts.Week)
	}
	if opts.OutDir == "" {
		return nil, fmt.Errorf("gen push: an output directory is required for the change manifest")
	}
	db, err := openMySQL(ctx, opts.MySQLDSN, false)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	t, err := region.Default()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("gen push: create %s: %w", opts.OutDir, err)
	}
	mp := filepath.Join(opts.OutDir, fmt.Sprintf("push-week-%d.manifest.jsonl", opts.Week))
	mf, err := os.OpenFile(mp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("gen push: create %s: %w", mp, err)
	}
	defer mf.Close()
	mw := bufio.NewWriter(mf)
	enc := json.NewEncoder(mw)
	enc.SetEscapeHTML(false)
	s := &pushState{cfg: &cfg, week: opts.Week, date: weekDate(&cfg, opts.Week), t: t, man: enc,
		res: &PushResult{Rows: map[string]int64{}, Changes: map[string]int64{}}}
	s.updated = s.date.Add(8 * time.Hour).Format("2006-01-02 15:04:05")
	s.idx = newVillageIndex(t)
	for i, name := range []string{"household", "person", "measure"} {
		f, err := os.CreateTemp(opts.OutDir, "push-"+name+"-*.tsv")
		if err != nil {
			return nil, fmt.Errorf("gen push: temp file: %w", err)
		}
		defer os.Remove(f.Name())
		defer f.Close()
		s.files[i], s.out[i] = f, bufio.NewWriterSize(f, 1<<20)
	}
	if err := s.build(ctx, db); err != nil {
		return nil, err
	}
	for i := range s.out {
		if err := s.out[i].Flush(); err != nil {
			return nil, fmt.Errorf("gen push: write %s: %w", s.files[i].Name(), err)
		}
	}
	if err := mw.Flush(); err != nil {
		return nil, fmt.Errorf("gen push: write %s: %w", mp, err)
	}
	if err := s.reload(ctx, db, &opts); err != nil {
		return nil, err
	}
	return s.res, nil
}

// build streams the three tables and writes the week's new content.
func (s *pushState) build(ctx context.Context, db *sql.DB) error {
	hr, err := openReader(ctx, db, "household", HouseholdColumns, "hh_no")
	if err != nil {
		return err
	}
	defer hr.rows.Close()
	// Separate connections stream the other tables side by side (merge join on hh_no).
	pr, err := openReader(ctx, db, "person", PersonColumns, "person_no")
	if err != nil {
		return err
	}
	defer pr.rows.Close()
	mr, err := openReader(ctx, db, "measure", MeasureColumns, "measure_id")
	if err != nil {
		return err
	}
	defer mr.rows.Close()
	for hr.next != nil {
		h := hr.next
		hr.advance()
		hhNo := h.get(0)
		village := h.get(hIdx["village_code"])
		if village != s.vCode {
			if err := s.flushVillage(); err != nil {
				return err
			}
			s.vCode, s.vUsed, s.vMaxSeq, s.vNew = village, map[string]bool{}, 0, 0
		}
		if seq, err := strconv.Atoi(strings.TrimPrefix(hhNo, village)); err == nil && seq > s.vMaxSeq {
			s.vMaxSeq = seq
		}
		persons := pr.takeWhile(hhNo)
		measures := mr.takeWhile(hhNo)
		for _, p := range persons {
			if id := p.get(pIdx["id_no"]); len(id) == 18 {
				male := (id[16]-'0')%2 == 1
				s.vUsed[id[:6]+id[6:14]+fmt.Sprint(male)] = true
			}
		}
		if err := s.household(h, persons, measures); err != nil {
			return err
		}
	}
	if err := s.flushVillage(); err != nil {
		return err
	}
	for _, r := range []*tableReader{hr, pr, mr} {
		if r.err != nil {
			return fmt.Errorf("gen push: read: %w", r.err)
		}
	}
	return nil
}

func (s *pushState) rnd(key string) *rand64 {
	return &rand64{villageRand(s.cfg.Seed, fmt.Sprintf("push/%d/%s", s.week, key))}
}

// household applies at most one change to one household and writes its rows.
func (s *pushState) household(h row, persons, measures []row) error {
	r := s.rnd(h.get(0))
	hhNo := h.get(0)
	if r.Float64() < s.cfg.Push.NewHouseholdRate {
		s.vNew++
	}
	if r.Float64() < s.cfg.Push.ChangeRate {
		kind := r.IntN(4)
		monitored := h.get(hIdx["category"]) != ""
		if kind == 1 && !(monitored && h.get(hIdx["risk_eliminated"]) == No && h.get(hIdx["no_labour_protected"]) == No &&
			monthsBetween(parseYM(h.get(hIdx["identified_ym"])), s.date) >= 6) {
			kind = 0
		}
		if kind == 3 && len(persons) < 2 {
			kind = 0
		}
		if kind == 2 && len(persons) >= 99 {
			kind = 0
		}
		switch kind {
		case 0: // income update
			var changed []string
			var sum int64
			for _, c := range []string{"wage_income", "business_income", "property_income", "transfer_income"} {
				v := parseCents(h.get(hIdx[c]))
				nv := v * int64(90+r.IntN(36)) / 100
				if nv != v {
					changed = append(changed, c)
					h.set(hIdx[c], centsString(nv))
				}
				sum += nv
			}
			old := h.get(hIdx["annual_income"])
			if sum == parseCents(old) {
				sum += 10000
				bi := hIdx["business_income"]
				h.set(bi, centsString(parseCents(h.get(bi))+10000))
				if !contains(changed, "business_income") {
					changed = append(changed, "business_income")
				}
			}
			h.set(hIdx["annual_income"], centsString(sum))
			changed = append(changed, "annual_income")
			n := int64(len(persons))
			pc := (sum - parseCents(h.get(hIdx["business_expense"])) + n/2) / n
			if centsString(pc) != h.get(hIdx["per_capita_income"]) {
				h.set(hIdx["per_capita_income"], centsString(pc))
				changed = append(changed, "per_capita_income")
			}
			h.set(hIdx["updated_at"], s.updated)
			if err := s.change("household", hhNo, "u", append(sortFields(changed), "updated_at")...); err != nil {
				return err
			}
		case 1: // risk eliminated through assistance
			h.set(hIdx["risk_eliminated"], Yes)
			h.set(hIdx["elimination_method"], "帮扶消除")
			h.set(hIdx["eliminated_ym"], ym(s.date))
			h.set(hIdx["updated_at"], s.updated)
			if err := s.change("household", hhNo, "u", "eliminated_ym", "elimination_method", "risk_eliminated", "updated_at"); err != nil {
				return err
			}
		case 2: // birth
			p, err := s.birth(h, persons, r)
			if err != nil {
				return err
			}
			persons = append(persons, p)
			if err := s.change("person", p.get(0), "c"); err != nil {
				return err
			}
			if err := s.resize(h, len(persons)); err != nil {
				return err
			}
		case 3: // death or move out of a non-head member
			victim := persons[len(persons)-1]
			if victim.get(pIdx["relationship"]) == RelHead {
				victim = persons[len(persons)-2]
			}
			var keep []row
			for _, p := range persons {
				if p.get(0) != victim.get(0) {
					keep = append(keep, p)
				}
			}
			persons = keep
			if err := s.change("person", victim.get(0), "d"); err != nil {
				return err
			}
			if err := s.resize(h, len(persons)); err != nil {
				return err
			}
		}
	}
	if err := s.emit(0, h.appendTSV(nil)); err != nil {
		return err
	}
	var b []byte
	for _, p := range persons {
		b = p.appendTSV(b)
	}
	if err := s.emit(1, b); err != nil {
		return err
	}
	b = b[:0]
	for _, m := range measures {
		b = m.appendTSV(b)
	}
	s.res.Rows["household"]++
	s.res.Rows["person"] += int64(len(persons))
	s.res.Rows["measure"] += int64(len(measures))
	return s.emit(2, b)
}

// resize updates size and per-capita income after a member change.
func (s *pushState) resize(h row, n int) error {
	h.set(hIdx["size"], strconv.Itoa(n))
	fields := []string{"size"}
	pc := (parseCents(h.get(hIdx["annual_income"])) - parseCents(h.get(hIdx["business_expense"])) + int64(n)/2) / int64(n)
	if centsString(pc) != h.get(hIdx["per_capita_income"]) {
		h.set(hIdx["per_capita_income"], centsString(pc))
		fields = append(fields, "per_capita_income")
	}
	h.set(hIdx["updated_at"], s.updated)
	return s.change("household", h.get(0), "u", append(sortFields(fields), "updated_at")...)
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func sortFields(f []string) []string {
	out := append([]string(nil), f...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// rand64 wraps the PCG stream for push decisions.
type rand64 struct{ *randRand }

type randRand = rand.Rand

// birth creates a newborn member born in the push week with a valid ID.
func (s *pushState) birth(h row, persons []row, r *rand64) (row, error) {
	hhNo, village := h.get(0), h.get(hIdx["village_code"])
	maxSeq := 0
	for _, p := range persons {
		if n, err := strconv.Atoi(strings.TrimPrefix(p.get(0), hhNo)); err == nil && n > maxSeq {
			maxSeq = n
		}
	}
	var head row
	for _, p := range persons {
		if p.get(pIdx["relationship"]) == RelHead {
			head = p
			break
		}
	}
	headAge := 40
	if head != nil {
		if b, err := time.Parse("2006-01-02", head.get(pIdx["birth_date"])); err == nil {
			headAge = Age(b, s.date)
		}
	}
	male := r.IntN(2) == 0
	rel := map[bool]string{true: RelSon, false: RelDaughter}[male]
	if headAge > 39 {
		rel = map[bool]string{true: RelGrandson, false: RelGranddaught}[male]
	}
	plan := s.plan(village)
	g := &villageGen{cfg: s.cfg, r: r.randRand, plan: plan, used: s.vUsed}
	cfg := *s.cfg
	cfg.AsOf = s.date
	g.cfg = &cfg
	p := &Person{PersonNo: fmt.Sprintf("%s%02d", hhNo, maxSeq+1), Male: male, Rel: rel}
	if err := g.assignID(p, 0); err != nil {
		return nil, err
	}
	surname := ""
	if head != nil {
		surname = familyName(head.get(pIdx["ethnic"]), head.get(pIdx["name"]))
	}
	eth := "汉族"
	if head != nil && head.get(pIdx["ethnic"]) != "" {
		eth = head.get(pIdx["ethnic"])
	}
	p.Ethnic = eth
	p.Name = personName(r.randRand, eth, male, surname)
	p.School, p.Health, p.Skill = "学龄前儿童", HealthOK, SkillNone
	p.InsResMed, p.InsSerious = true, true
	hh := &Household{HHNo: hhNo}
	b := appendPerson(nil, hh, p, parseUpdated(s.updated))
	return parseTSVRow(b), nil
}

func parseUpdated(s string) time.Time {
	t, _ := time.Parse("2006-01-02 15:04:05", s)
	return t
}

// parseTSVRow turns one encoded TSV line back into a row (inverse of tsv for our data).
func parseTSVRow(b []byte) row {
	line := strings.TrimSuffix(string(b), "\n")
	parts := strings.Split(line, "\t")
	r := make(row, len(parts))
	for i, p := range parts {
		if p == `\N` {
			continue
		}
		v := strings.NewReplacer(`\t`, "\t", `\n`, "\n", `\\`, `\`).Replace(p)
		r[i] = &v
	}
	return r
}

// plan rebuilds the generation plan of one village for new persons and households.
func (s *pushState) plan(village string) *villagePlan {
	v, _ := s.t.Get(village)
	county, _ := s.t.Ancestor(village, region.County)
	town, _ := s.t.Ancestor(village, region.Township)
	var nb []string
	for _, c := range s.t.Counties() {
		if c.Code[:4] == village[:4] && c.Code[:6] != village[:6] {
			nb = append(nb, c.Code[:6])
		}
	}
	return &villagePlan{Village: v, CountyCode: village[:6], CountyName: county.Name, TownshipName: town.Name,
		CountyIdx: s.idx.countyIdx[village], CountyVillages: s.idx.countyCount[village[:6]],
		PrefIdx: s.idx.prefIdx[village], PrefVillages: s.idx.prefCount[village[:4]], Neighbours: nb}
}

// flushVillage appends the village's new monitored households after its existing ones.
func (s *pushState) flushVillage() error {
	if s.vCode == "" || s.vNew == 0 {
		return nil
	}
	cfg := *s.cfg
	cfg.AsOf = s.date
	cfg.MonitoredShare = 1
	cfg.EliminatedShare = 0
	p := s.plan(s.vCode)
	g := &villageGen{cfg: &cfg, r: villageRand(cfg.Seed, fmt.Sprintf("push/%d/new/%s", s.week, s.vCode)), plan: p, used: s.vUsed}
	upd := parseUpdated(s.updated)
	for i := 0; i < s.vNew; i++ {
		h, err := g.household(s.vMaxSeq + 1 + i)
		if err != nil {
			return err
		}
		h.IdentifiedYM = ym(s.date)
		for j := range h.Measures {
			h.Measures[j].StartYM = ym(s.date)
		}
		if err := s.emit(0, appendHousehold(nil, h, upd)); err != nil {
			return err
		}
		if err := s.change("household", h.HHNo, "c"); err != nil {
			return err
		}
		var b []byte
		for _, m := range h.Members {
			b = appendPerson(b, h, m, upd)
			if err := s.change("person", m.PersonNo, "c"); err != nil {
				return err
			}
		}
		if err := s.emit(1, b); err != nil {
			return err
		}
		b = b[:0]
		for j := range h.Measures {
			b = appendMeasure(b, h, &h.Measures[j], upd)
			if err := s.change("measure", h.Measures[j].ID, "c"); err != nil {
				return err
			}
		}
		if err := s.emit(2, b); err != nil {
			return err
		}
		s.res.Rows["household"]++
		s.res.Rows["person"] += int64(len(h.Members))
		s.res.Rows["measure"] += int64(len(h.Measures))
	}
	return nil
}

// reload writes the new content into the tables in the chosen mode, between push_log
// start and finish rows.
func (s *pushState) reload(ctx context.Context, db *sql.DB, opts *PushOptions) error {
	tables := []struct {
		name string
		cols []string
		pk   string
	}{{"household", HouseholdColumns, "hh_no"}, {"person", PersonColumns, "person_no"}, {"measure", MeasureColumns, "measure_id"}}
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("gen push: connection: %w", err)
	}
	defer conn.Close()
	logIDs := make([]int64, len(tables))
	for i, t := range tables {
		res, err := conn.ExecContext(ctx, "INSERT INTO push_log (week, table_name, mode, started_at) VALUES (?, ?, ?, NOW(6))", s.week, t.name, opts.Mode)
		if err != nil {
			return fmt.Errorf("gen push: write push_log: %w", err)
		}
		logIDs[i], _ = res.LastInsertId()
	}
	type execer interface {
		ExecContext(context.Context, string, ...any) (sql.Result, error)
	}
	var ex execer = conn
	var tx *sql.Tx
	if opts.Mode == PushDelete {
		if tx, err = conn.BeginTx(ctx, nil); err != nil {
			return fmt.Errorf("gen push: begin: %w", err)
		}
		defer tx.Rollback()
		ex = tx
	}
	chunkRows := s.cfg.Push.ChunkRows
	var totalChunks int
	for _, t := range tables {
		totalChunks += int((s.res.Rows[t.name] + int64(chunkRows) - 1) / int64(chunkRows))
	}
	var pause time.Duration
	if opts.Mode == PushSpread && totalChunks > 0 {
		pause = s.cfg.Push.SpreadDuration / time.Duration(totalChunks)
	}
	for i, t := range tables {
		switch opts.Mode {
		case PushTruncate:
			if _, err := ex.ExecContext(ctx, "TRUNCATE TABLE `"+t.name+"`"); err != nil {
				return fmt.Errorf("gen push: truncate %s: %w", t.name, err)
			}
		case PushDelete:
			if _, err := ex.ExecContext(ctx, "DELETE FROM `"+t.name+"`"); err != nil {
				return fmt.Errorf("gen push: delete %s: %w", t.name, err)
			}
		}
		f := s.files[i]
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("gen push: rewind %s: %w", f.Name(), err)
		}
		br := bufio.NewReaderSize(f, 1<<20)
		var loaded int64
		prevLast := ""
		for {
			var chunk bytes.Buffer
			n := 0
			first, last := "", ""
			for n < chunkRows {
				line, err := br.ReadBytes('\n')
				if len(line) > 0 {
					key, _, _ := bytes.Cut(line, []byte{'\t'})
					if first == "" {
						first = string(key)
					}
					last = string(key)
					chunk.Write(line)
					n++
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					return fmt.Errorf("gen push: read %s: %w", f.Name(), err)
				}
			}
			final := n < chunkRows
			if opts.Mode == PushSpread {
				// delete the old rows of this chunk's key range (prevLast, last], or
				// everything after prevLast for the final chunk (catches deleted rows)
				q, args := "DELETE FROM `"+t.name+"` WHERE `"+t.pk+"` > ?", []any{prevLast}
				if !final {
					q += " AND `" + t.pk + "` <= ?"
					args = append(args, last)
				}
				if _, err := ex.ExecContext(ctx, q, args...); err != nil {
					return fmt.Errorf("gen push: spread delete %s: %w", t.name, err)
				}
			}
			if n > 0 {
				k, err := loadData(ctx, ex, t.name, t.cols, bytes.NewReader(chunk.Bytes()))
				if err != nil {
					return err
				}
				loaded += k
				if opts.Progress != nil {
					opts.Progress(t.name, loaded)
				}
			}
			prevLast = last
			if pause > 0 {
				select {
				case <-time.After(pause):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			if final {
				break
			}
		}
		if opts.Mode != PushDelete {
			if _, err := conn.ExecContext(ctx, "UPDATE push_log SET finished_at = NOW(6), row_count = ? WHERE id = ?", loaded, logIDs[i]); err != nil {
				return fmt.Errorf("gen push: write push_log: %w", err)
			}
		}
	}
	if tx != nil {
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("gen push: commit: %w", err)
		}
		for i, t := range tables {
			if _, err := conn.ExecContext(ctx, "UPDATE push_log SET finished_at = NOW(6), row_count = ? WHERE id = ?", s.res.Rows[t.name], logIDs[i]); err != nil {
				return fmt.Errorf("gen push: write push_log: %w", err)
			}
		}
	}
	return nil
}
