package main

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/consistency"
	"github.com/shouwang/shouwang/internal/pii"
	"github.com/shouwang/shouwang/internal/region"
	"github.com/shouwang/shouwang/schemas"
	"github.com/shouwang/shouwang/sinks/postgres"
)

// waitSink waits until every sink's stored offsets reach the end of each of its topics
// and stay there (the transforms and the monitor have finished the push too), then
// shows the provincial tables.
func (d *demo) waitSink(ctx context.Context) error {
	for _, sw := range d.sinks {
		s, ok := sw.(*postgres.Worker)
		if !ok {
			continue
		}
		sc, ok := d.cfg.SinkByName(s.Name())
		if !ok {
			return fmt.Errorf("sink %s is not in the configuration", s.Name())
		}
		pool, err := pgxpool.New(ctx, sc.DSN)
		if err != nil {
			return err
		}
		defer pool.Close()
		topics := s.Sink().Topics()
		var stableSince time.Time
		var last string
		err = d.waitFor(ctx, "sink "+s.Name(), 5*time.Minute, func() (bool, string) {
			var size, stored int64
			for _, t := range topics {
				n, err := bus.TopicSize(ctx, d.w.busOpts, t)
				if err != nil {
					return false, err.Error()
				}
				size += n
			}
			// Missing rows (nothing stored yet) count as 0; the query fails only
			// before the schema exists.
			_ = pool.QueryRow(ctx, `SELECT coalesce(sum(next_offset), 0) FROM `+postgres.Schema+`.sink_offsets WHERE sink = $1`, s.Name()).Scan(&stored)
			now := fmt.Sprint(size, "/", stored)
			if now != last {
				last, stableSince = now, time.Now()
			}
			return size > 0 && stored == size && time.Since(stableSince) > 3*time.Second,
				fmt.Sprintf("sink %s: %d/%d changes stored", s.Name(), stored, size)
		})
		if err != nil {
			return err
		}
		for _, e := range schemas.Entities() {
			rel := postgres.Schema + "." + e.Name
			if t, ok := sc.Tables[e.Name]; ok {
				rel = t
			}
			var rows, live int64
			if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE NOT deleted) FROM `+rel).Scan(&rows, &live); err != nil {
				return fmt.Errorf("count %s: %w", rel, err)
			}
			extra := ""
			if e.Name == "warning" || e.Name == "quality_issue" || e.Name == "discrepancy" {
				var by string
				if err := pool.QueryRow(ctx, `SELECT coalesce(string_agg(status || '=' || n, ' ' ORDER BY status), '') FROM (SELECT status, count(*) n FROM `+rel+` GROUP BY status) x`).Scan(&by); err != nil {
					return err
				}
				var versions int64
				if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+postgres.Schema+`.`+e.Name+`_history`).Scan(&versions); err != nil {
					return err
				}
				extra = fmt.Sprintf("  %s; %d lifecycle versions", by, versions)
			}
			d.printf("      %-28s %7d rows (%d live)%s\n", rel, rows, live, extra)
		}
		dead, err := bus.TopicSize(ctx, d.w.busOpts, schemas.DLQTopic(d.cfg.Kafka.TopicPrefix, "sink"))
		if err != nil {
			return err
		}
		var parts int
		_ = pool.QueryRow(ctx, `SELECT count(*) FROM `+postgres.Schema+`.sink_offsets WHERE sink = $1`, s.Name()).Scan(&parts)
		d.printf("      %d partitions' offsets stored with the rows, all at the end of their topics; %d dead letters (%s)\n",
			parts, dead, strings.TrimSpace(schemas.DLQTopic(d.cfg.Kafka.TopicPrefix, "sink")))
	}
	return nil
}

// checkTotals runs every checker of the configuration once (地区总数核查) and shows the
// totals; a mismatch is shown with the differing keys and kept in d.totals, so the
// summary reports it and the demo exits 1 (the remaining steps still run).
func (d *demo) checkTotals(ctx context.Context) error {
	for _, ch := range d.cfg.Checkers {
		rc, err := newCheckRun(d.cfg, ch, "")
		if err != nil {
			return err
		}
		rc.opts.Settle = 3 * time.Second
		rc.opts.Progress = func(format string, args ...any) { d.status(ch.Name + ": " + fmt.Sprintf(format, args...)) }
		rep, err := rc.run(ctx)
		rc.close()
		d.endStatus()
		if err != nil {
			return fmt.Errorf("checker %s: %w", ch.Name, err)
		}
		d.printf("      %s: %s ↔ %s, by %s, %d regions\n", ch.Name, rep.Source, rep.Sink, rep.Level, len(rep.Indicators[0].Regions))
		for _, ind := range rep.Indicators {
			mark := "一致 match"
			if ind.Mismatch {
				mark = "不一致 MISMATCH"
			}
			d.printf("        %-30s %7d ↔ %-7d %s\n", ind.Label, ind.Source, ind.Sink, mark)
		}
		if !rep.Match {
			var b strings.Builder
			printReport(&b, rep)
			d.printf("%s", b.String())
		}
		d.totals = append(d.totals, rep)
	}
	return nil
}

// exportFeedback writes the open discrepancies as one workbook per department (行业数据比对
// 反馈) into <dir>/feedback, as `shouwang feedback export` does, and checks that the
// lists account for every pending discrepancy of the provincial database.
func (d *demo) exportFeedback(ctx context.Context) error {
	db, regions, err := d.provincial()
	if err != nil {
		return err
	}
	defer db.Close()
	lists, err := consistency.LoadFeedback(ctx, consistency.FeedbackOptions{DB: db, Regions: regions,
		Identity: func(s string) (string, error) { return pii.MaskText(s), nil }})
	if err != nil {
		return err
	}
	var b strings.Builder
	if _, err := writeFeedback(lists, filepath.Join(d.dir, "feedback"), time.Now(), &b); err != nil {
		return err
	}
	for _, l := range strings.SplitAfter(b.String(), "\n") {
		if l != "" {
			d.printf("      %s", l)
		}
	}
	var pending, listed int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM `+postgres.Schema+`.discrepancy WHERE status = 'pending' AND NOT deleted`).Scan(&pending); err != nil {
		return err
	}
	for _, l := range lists {
		listed += len(l.Rows)
	}
	d.printf("      %d pending discrepancies listed for %d departments (the provincial database holds %d); ID numbers masked in the demo\n", listed, len(lists), pending)
	if listed != pending {
		return fmt.Errorf("the feedback lists hold %d discrepancies, the provincial database %d pending", listed, pending)
	}
	return nil
}

// provincial opens the provincial database (the sink that holds the discrepancies) and
// loads the region table of the configuration.
func (d *demo) provincial() (*sql.DB, *region.Table, error) {
	snk, err := feedbackSink(d.cfg, "")
	if err != nil {
		return nil, nil, err
	}
	regions, err := regionTable(d.cfg)
	if err != nil {
		return nil, nil, err
	}
	db, err := openChecked("pgx", snk.DSN, "sink "+snk.Name)
	if err != nil {
		return nil, nil, err
	}
	return db, regions, nil
}
