package filedrop

import (
	"context"
	"errors"
	"os"
	"testing"
)

// TestRequestSnapshot: after two deliveries, a re-snapshot re-emits the accepted state
// as r events with current values; it survives a restart mid-way (the request from its
// marker file, the progress from the position), and deliveries continue afterwards.
func TestRequestSnapshot(t *testing.T) {
	ds := baseDataset(t)
	h := newHarness(t, ds)
	h.write("2024-01.csv", csvUTF8BOM("身份证号,姓名,残疾等级",
		"510101199001011234,张三,一级",
		"510101199202022345,李四,二级",
		"510101199303033456,王五,三级"))
	h.delivery()
	h.write("2024-02.csv", csvUTF8BOM("身份证号,姓名,残疾等级",
		"510101199001011234,张三,一级",
		"510101199202022345,李四,一级",
		"510101199404044567,赵六,四级"))
	h.delivery()

	if err := h.src.RequestSnapshot(ds.Name, "level = '一级'"); !errors.Is(err, ErrWhereUnsupported) {
		t.Errorf("condition: got %v, want ErrWhereUnsupported", err)
	}
	if err := h.src.RequestSnapshot("other_dataset", ""); err == nil {
		t.Error("a request for another dataset was accepted")
	}
	if err := h.src.RequestSnapshot(ds.Name, ""); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"r 510101199001011234 after=张三/一级",
		"r 510101199202022345 after=李四/一级",
		"r 510101199404044567 after=赵六/四级",
	}

	// Crash after the first row was acknowledged: the restart continues the request.
	ctx := context.Background()
	first, err := h.src.ReadN(ctx, 2)
	if err != nil || len(first) != 2 {
		t.Fatalf("ReadN = %d changes, %v", len(first), err)
	}
	e := first[0].Envelope
	if !e.Source.Snapshot || e.Source.File != "2024-02.csv" || first[0].Topic != "sc.raw.canlian.disabled_persons" {
		t.Fatalf("r event source %+v topic %s", e.Source, first[0].Topic)
	}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	h.open(first[0].Position)
	rest := h.delivery()
	eq(t, summary(append(first[:1], rest...)), want)
	if _, err := os.Stat(resnapMarker(ds.StateDir, ds.Name)); !os.IsNotExist(err) {
		t.Fatalf("request marker still there after the final ack: %v", err)
	}
	h.none()

	// A restart after the final ack re-emits nothing; the next delivery is diffed as usual.
	h.open(rest[len(rest)-1].Position)
	h.none()
	h.write("2024-03.csv", csvUTF8BOM("身份证号,姓名,残疾等级",
		"510101199001011234,张三,二级",
		"510101199202022345,李四,一级",
		"510101199404044567,赵六,四级"))
	eq(t, summary(h.delivery()), []string{"u 510101199001011234 before=张三/一级 after=张三/二级"})

	// A request not started yet when the process stops is kept (marker file).
	if err := h.src.RequestSnapshot(ds.Name, ""); err != nil {
		t.Fatal(err)
	}
	h.open(nil)
	eq(t, summary(h.delivery()), []string{
		"r 510101199001011234 after=张三/二级",
		"r 510101199202022345 after=李四/一级",
		"r 510101199404044567 after=赵六/四级",
	})
}
