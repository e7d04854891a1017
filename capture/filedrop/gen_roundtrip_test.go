package filedrop_test

// Round trip of the synthetic generator's department files through the connector
// (issue #4): every dataset is delivered three times, as UTF-8 CSV, GB18030 CSV and
// XLSX of the same rows (the first format rotating per dataset). The first delivery's
// c events must equal the generator's UTF-8 CSV read independently with encoding/csv,
// Summary.DeptRows and every signal line of the manifest; the other two deliveries
// carry identical content and must emit nothing. The test lives in the external test
// package so it only sees the exported API.
//
// The generator configuration, CSV and manifest readers and the signal checks are
// shared with the other round-trip test through internal/gen/gentest.

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/capture/filedrop"
	"github.com/shouwang/shouwang/internal/gen"
	"github.com/shouwang/shouwang/internal/gen/gentest"
	"github.com/shouwang/shouwang/schemas"
)

// TestGenRoundTripFiles delivers the generator's files of every dataset to one
// filedrop source per dataset and checks what comes out.
func TestGenRoundTripFiles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := gentest.RoundTripConfig()
	out := t.TempDir()
	sum, err := gen.Generate(ctx, cfg, gen.Options{OutDir: out, Formats: []string{"csv", "gb18030", "xlsx"}, Workers: 2})
	if err != nil {
		t.Fatalf("generate files: %v", err)
	}
	formats := []string{".csv", ".gb18030.csv", ".xlsx"}
	text := gentest.Rows{}
	for i, ds := range gen.Datasets {
		// Rotate the formats so each one is the creating delivery of some dataset.
		var files []string
		for j := range formats {
			files = append(files, ds.Name+formats[(i+j)%len(formats)])
		}
		t.Run(ds.Name, func(t *testing.T) {
			text[ds.Table()] = genRTDeliver(t, ctx, out, ds, files, sum.DeptRows[ds.Table()])
		})
	}
	if t.Failed() {
		return
	}
	gentest.CheckSignals(t, cfg, sum, text, gentest.ReadManifest(t, out))
}

// genRTDeliver runs one dataset's source over its files, delivered one after another,
// and returns the first delivery's rows as text (key → column → value, NULL as "").
func genRTDeliver(t *testing.T, ctx context.Context, out string, ds gen.Dataset, files []string, wantRows int64) map[string]map[string]string {
	dir := t.TempDir()
	cols := map[string]string{}
	for j, h := range ds.Headers {
		cols[h] = ds.Columns[j]
	}
	opts := filedrop.DatasetOptions{
		Name: ds.Name, Department: ds.Department,
		Inbox: filepath.Join(dir, "inbox"), StateDir: filepath.Join(dir, "state"),
		Delivery: filedrop.DeliveryFull, Key: []string{ds.Columns[0]}, Columns: cols,
	}
	src, err := filedrop.New(filedrop.Config{System: "dept", TopicPrefix: "rt", Dataset: opts, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	if err := src.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	genDir := filepath.Join(out, "files", ds.Department, ds.Name)
	want := gentest.ReadCSV(t, filepath.Join(genDir, ds.Name+".csv"), ds)
	if int64(len(want)) != wantRows {
		t.Errorf("generator CSV has %d rows, Summary.DeptRows says %d", len(want), wantRows)
	}

	// First delivery: every row is new.
	genRTDrop(t, genDir, opts.Inbox, files[0])
	got := map[string]map[string]string{}
	var end bool
	for !end {
		cs, err := src.ReadN(ctx, 500)
		if err != nil {
			t.Fatalf("%s: ReadN after %d changes: %v", files[0], len(got), err)
		}
		for _, c := range cs {
			if c.DeadLetter != nil {
				t.Fatalf("%s: dead letter: %s", files[0], c.DeadLetter.Reason)
			}
			e := c.Envelope
			if e.Op != schemas.OpCreate || e.Before != nil {
				t.Fatalf("%s: op %q (before %v) in the first delivery, want only c", files[0], e.Op, e.Before)
			}
			if e.Source.Kind != filedrop.Kind || e.Source.DB != ds.Department || e.Source.Table != ds.Name || e.Source.File != files[0] {
				t.Fatalf("%s: event source %+v", files[0], e.Source)
			}
			if c.Topic != schemas.RawTopic("rt", "dept", ds.Name) {
				t.Fatalf("%s: topic %q", files[0], c.Topic)
			}
			k, _ := e.After[ds.Columns[0]].(string)
			if !reflect.DeepEqual(e.Key, map[string]any{ds.Columns[0]: k}) || k == "" {
				t.Fatalf("%s: key %v, after's %s %q", files[0], e.Key, ds.Columns[0], k)
			}
			if _, dup := got[k]; dup {
				t.Errorf("%s: key %s created twice", files[0], k)
			}
			row := map[string]string{}
			for f, v := range e.After {
				switch v := v.(type) {
				case nil:
					row[f] = ""
				case string:
					row[f] = v
				default:
					t.Fatalf("%s %s field %s: value of type %T, want text", files[0], k, f, v)
				}
			}
			got[k] = row
			var p struct {
				End bool `json:"end"`
			}
			if err := json.Unmarshal(c.Position, &p); err != nil {
				t.Fatalf("%s: position %s: %v", files[0], c.Position, err)
			}
			if p.End {
				end = true
				if err := src.Ack(ctx, c.Position); err != nil {
					t.Fatalf("%s: ack the last change: %v", files[0], err)
				}
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s: %d c events, generator CSV has %d rows", files[0], len(got), len(want))
	}
	for k, w := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("%s: row %s has no c event", files[0], k)
		} else if !reflect.DeepEqual(g, w) {
			t.Errorf("%s %s: event %v, generator CSV %v", files[0], k, g, w)
		}
	}
	genRTWaitArchived(t, ctx, src, opts, files[0])

	// The same rows in the other formats: nothing changed, so nothing may be emitted.
	for _, f := range files[1:] {
		genRTDrop(t, genDir, opts.Inbox, f)
		genRTWaitArchived(t, ctx, src, opts, f)
	}
	for _, d := range []string{"rejected", "held"} {
		if es, _ := os.ReadDir(filepath.Join(opts.Inbox, d)); len(es) > 0 {
			t.Errorf("%s/ is not empty: %v", d, es)
		}
	}
	return got
}

// genRTDrop delivers a file the way a careful sender does: written under a dot name
// the connector ignores, then renamed into the inbox.
func genRTDrop(t *testing.T, from, inbox, name string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(from, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(inbox, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(inbox, "."+name)
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(inbox, name)); err != nil {
		t.Fatal(err)
	}
}

// genRTWaitArchived reads the source until name has left the inbox for the archive
// (a delivery without changes is committed inside ReadN, which then keeps polling the
// inbox, so the read is cancelled once the file shows up in the archive). Any change
// read on the way fails the test, as does a rejected or held file.
func genRTWaitArchived(t *testing.T, ctx context.Context, src *filedrop.Source, opts filedrop.DatasetOptions, name string) {
	t.Helper()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		cs  []capture.Change
		err error
	}
	done := make(chan result, 1)
	go func() {
		cs, err := src.ReadN(rctx, 500)
		done <- result{cs, err}
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-done:
			if r.err == nil && len(r.cs) > 0 {
				e := r.cs[0].Envelope
				t.Fatalf("%s: %d changes where none were due, first: op %q key %v before %v after %v", name, len(r.cs), e.Op, e.Key, e.Before, e.After)
			}
			t.Fatalf("%s: ReadN ended before the file was archived: %v", name, r.err)
		case <-tick.C:
		}
		for _, d := range []string{"rejected", "held"} {
			if _, err := os.Stat(filepath.Join(opts.Inbox, d, name)); err == nil {
				report, _ := os.ReadFile(filepath.Join(opts.Inbox, d, name+".report.txt"))
				cancel()
				<-done
				t.Fatalf("%s was moved to %s/: %s", name, d, report)
			}
		}
		_, inInbox := os.Stat(filepath.Join(opts.Inbox, name))
		_, inArchive := os.Stat(filepath.Join(opts.Inbox, "archive", name))
		if errors.Is(inInbox, os.ErrNotExist) && inArchive == nil {
			cancel()
			r := <-done
			if len(r.cs) > 0 {
				t.Fatalf("%s: %d changes where none were due (first op %q key %v)", name, len(r.cs), r.cs[0].Envelope.Op, r.cs[0].Envelope.Key)
			}
			if !errors.Is(r.err, context.Canceled) {
				t.Fatalf("%s: ReadN after the file was archived: %v", name, r.err)
			}
			return
		}
	}
}
