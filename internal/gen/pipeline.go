package gen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shouwang/shouwang/internal/region"
)

// VillageResult is everything generated for one village, already encoded for MySQL.
// It is immutable once produced, so every sink may read it concurrently.
type VillageResult struct {
	Plan                                *villagePlan
	Households, Persons, Measures       int
	Monitored                           int
	HouseholdTSV, PersonTSV, MeasureTSV []byte
	Dept                                [numDatasets][]Row
	Manifest                            []ManifestLine
}

// plan spreads cfg.Households over villages: a weighted sample of villages (poverty
// prefectures weigh more) sized so villages get about HouseholdsPerVillage households,
// then a weighted largest-remainder allocation. Plans are in village-code order.
func plan(cfg *Config, t *region.Table) ([]villagePlan, error) {
	villages := t.Villages()
	if len(villages) == 0 {
		return nil, errors.New("gen: region table has no villages")
	}
	counties := t.Counties()
	byPref := map[string][]string{}
	for _, c := range counties {
		byPref[c.Code[:4]] = append(byPref[c.Code[:4]], c.Code[:6])
	}
	weight := func(code string) float64 {
		if w, ok := cfg.PrefectureWeights[code[:4]]; ok {
			return w
		}
		return 1
	}
	n := min(len(villages), int(math.Ceil(float64(cfg.Households)/float64(cfg.HouseholdsPerVillage))))
	type cand struct {
		i   int
		key float64
	}
	cands := make([]cand, len(villages))
	for i, v := range villages {
		u := villageRand(cfg.Seed, "select/"+v.Code).Float64()
		cands[i] = cand{i, math.Log(u) / weight(v.Code)} // Efraimidis–Spirakis: larger is better
	}
	sort.Slice(cands, func(a, b int) bool {
		if cands[a].key != cands[b].key {
			return cands[a].key > cands[b].key
		}
		return cands[a].i < cands[b].i
	})
	chosen := make([]int, n)
	for i := range chosen {
		chosen[i] = cands[i].i
	}
	slices.Sort(chosen)
	// largest remainder allocation
	var wsum float64
	for _, i := range chosen {
		wsum += weight(villages[i].Code)
	}
	alloc := make([]int, n)
	rems := make([]cand, n)
	total := 0
	for k, i := range chosen {
		exact := float64(cfg.Households) * weight(villages[i].Code) / wsum
		alloc[k] = int(exact)
		total += alloc[k]
		rems[k] = cand{k, exact - float64(alloc[k])}
	}
	sort.Slice(rems, func(a, b int) bool {
		if rems[a].key != rems[b].key {
			return rems[a].key > rems[b].key
		}
		return rems[a].i < rems[b].i
	})
	for j := 0; total < cfg.Households; j++ {
		alloc[rems[j%n].i]++
		total++
	}
	idx := newVillageIndex(t)
	plans := make([]villagePlan, 0, n)
	for k, i := range chosen {
		if alloc[k] == 0 {
			continue
		}
		v := villages[i]
		county, ok1 := t.Ancestor(v.Code, region.County)
		town, ok2 := t.Ancestor(v.Code, region.Township)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("gen: village %s (%s) has no county or township in the region table", v.Code, v.Name)
		}
		var nb []string
		for _, c := range byPref[v.Code[:4]] {
			if c != v.Code[:6] {
				nb = append(nb, c)
			}
		}
		plans = append(plans, villagePlan{
			Index: len(plans), Village: v, CountyCode: v.Code[:6], CountyName: county.Name, TownshipName: town.Name,
			CountyIdx: idx.countyIdx[v.Code], CountyVillages: idx.countyCount[v.Code[:6]],
			PrefIdx: idx.prefIdx[v.Code], PrefVillages: idx.prefCount[v.Code[:4]],
			Households: alloc[k], FirstSeq: 1, Neighbours: nb,
		})
	}
	return plans, nil
}

// generateVillage builds one village's households, defects and department data.
// inspect, when set (tests), sees every household after defect injection.
func generateVillage(cfg *Config, p *villagePlan, inspect ...func(*Household, []ManifestLine)) (*VillageResult, error) {
	r := villageRand(cfg.Seed, p.Village.Code)
	g := &villageGen{cfg: cfg, r: r, plan: p, used: map[string]bool{}}
	in := &injector{cfg: cfg, r: r, g: g}
	res := &VillageResult{Plan: p}
	dg := &deptGen{g: g, rows: &res.Dept, man: &res.Manifest}
	for i := 0; i < p.Households; i++ {
		h, err := g.household(p.FirstSeq + i)
		if err != nil {
			return nil, err
		}
		lines := in.inject(h)
		res.Manifest = append(res.Manifest, lines...)
		dg.household(h, len(lines) > 0)
		for _, f := range inspect {
			f(h, lines)
		}
		res.HouseholdTSV = appendHousehold(res.HouseholdTSV, h, cfg.UpdatedAt)
		for _, m := range h.Members {
			res.PersonTSV = appendPerson(res.PersonTSV, h, m, cfg.UpdatedAt)
		}
		for i := range h.Measures {
			res.MeasureTSV = appendMeasure(res.MeasureTSV, h, &h.Measures[i], cfg.UpdatedAt)
		}
		res.Households++
		res.Persons += len(h.Members)
		res.Measures += len(h.Measures)
		if h.Category != "" {
			res.Monitored++
		}
	}
	return res, nil
}

// sink consumes village results in village order.
type sink interface {
	write(ctx context.Context, v *VillageResult) error
	close(ctx context.Context) error
}

// Progress is a snapshot of a running generation, for the CLI's progress line.
type Progress struct {
	Households, Persons, Rows int64
	TotalHouseholds           int64
	Elapsed                   time.Duration
}

// Generate runs the generator and writes to the outputs selected in opts. It returns
// the summary that is also written to OUT/manifest.summary.json (when opts.OutDir is set).
func Generate(ctx context.Context, cfg Config, opts Options) (*Summary, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gen: invalid config: %w", err)
	}
	t, err := region.Default()
	if err != nil {
		return nil, fmt.Errorf("gen: load region table: %w", err)
	}
	plans, err := plan(&cfg, t)
	if err != nil {
		return nil, err
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var sinks []sink
	closeAll := func() {
		for _, s := range sinks {
			s.close(context.WithoutCancel(ctx))
		}
	}
	if opts.MySQLDSN != "" {
		s, err := newMySQLSink(ctx, opts.MySQLDSN, opts.ChunkBytes)
		if err != nil {
			return nil, err
		}
		sinks = append(sinks, s)
	}
	if opts.PGDSN != "" {
		s, err := newPGSink(ctx, opts.PGDSN)
		if err != nil {
			closeAll()
			return nil, err
		}
		sinks = append(sinks, s)
	}
	if opts.OutDir != "" && len(opts.Formats) > 0 {
		s, err := newFileSink(opts.OutDir, opts.Formats)
		if err != nil {
			closeAll()
			return nil, err
		}
		sinks = append(sinks, s)
	}
	sum := newSummary(&cfg)
	var man *manifestWriter
	if opts.OutDir != "" {
		man, err = newManifestWriter(opts.OutDir)
		if err != nil {
			closeAll()
			return nil, err
		}
	}

	// Generation: workers fill per-village result channels; the consumer reads them in
	// plan order, so output order does not depend on scheduling.
	type job struct {
		p  *villagePlan
		ch chan *VillageResult
	}
	jobs := make(chan job)
	order := make(chan chan *VillageResult, 2*workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				res, err := generateVillage(&cfg, j.p)
				if err != nil {
					cancel(err)
					close(j.ch)
					continue
				}
				j.ch <- res
			}
		}()
	}
	go func() {
		defer close(order)
		defer close(jobs)
		for i := range plans {
			ch := make(chan *VillageResult, 1)
			select {
			case order <- ch:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- job{&plans[i], ch}:
			case <-ctx.Done():
				return
			}
		}
	}()

	// Fan out to sinks, each in its own goroutine so MariaDB, PostgreSQL and files
	// are written in parallel.
	start := time.Now()
	var hh, persons, rows atomic.Int64
	stopProgress := make(chan struct{})
	if opts.Progress != nil {
		go func() {
			tk := time.NewTicker(time.Second)
			defer tk.Stop()
			for {
				select {
				case <-stopProgress:
					return
				case <-tk.C:
					opts.Progress(Progress{hh.Load(), persons.Load(), rows.Load(), int64(cfg.Households), time.Since(start)})
				}
			}
		}()
	}
	chans := make([]chan *VillageResult, len(sinks))
	var swg sync.WaitGroup
	for i, s := range sinks {
		chans[i] = make(chan *VillageResult, 4)
		swg.Add(1)
		go func(s sink, in chan *VillageResult) {
			defer swg.Done()
			for v := range in {
				if ctx.Err() != nil {
					continue // drain
				}
				if err := s.write(ctx, v); err != nil {
					cancel(err)
				}
			}
		}(s, chans[i])
	}
	var consumeErr error
	for ch := range order {
		var v *VillageResult
		select {
		case v = <-ch:
		case <-ctx.Done():
		}
		if v == nil {
			consumeErr = context.Cause(ctx)
			break
		}
		sum.add(v)
		if man != nil {
			if err := man.write(v.Manifest); err != nil {
				cancel(err)
				consumeErr = err
				break
			}
		}
		for _, c := range chans {
			c <- v
		}
		hh.Add(int64(v.Households))
		persons.Add(int64(v.Persons))
		n := int64(v.Households + v.Persons + v.Measures)
		for _, d := range v.Dept {
			n += int64(len(d))
		}
		rows.Add(n)
	}
	if consumeErr != nil {
		cancel(consumeErr)
		go func() { // let the dispatcher and workers finish
			for ch := range order {
				_ = ch
			}
		}()
	}
	for _, c := range chans {
		close(c)
	}
	swg.Wait()
	wg.Wait()
	close(stopProgress)
	var errs []error
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		errs = append(errs, err)
	} else if err != nil {
		errs = append(errs, err)
	}
	for _, s := range sinks {
		if err := s.close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if man != nil {
		if err := man.close(sum); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	sum.finish()
	if opts.Progress != nil {
		opts.Progress(Progress{hh.Load(), persons.Load(), rows.Load(), int64(cfg.Households), time.Since(start)})
	}
	return sum, nil
}
