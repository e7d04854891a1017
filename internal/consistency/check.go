package consistency

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/shouwang/shouwang/internal/region"
)

// Options configures a Check.
type Options struct {
	// Checker names the check in reports and metrics.
	Checker string
	// Source and Sink are compared: the source is the truth.
	Source, Sink *Store
	// Indicators compared (both stores must define them).
	Indicators []Indicator
	// Level groups the totals (region.County by default).
	Level region.Level
	// Scope limits the check to a region prefix ("51": the province; "" all).
	Scope string
	// Tolerance is the count difference per region and indicator that is not a
	// mismatch (default 0).
	Tolerance int
	// Settle is how long differing keys are given to arrive before they are checked
	// again and reported (changes in flight are not differences; default 30s).
	Settle time.Duration
	// DirectKeys: a region with at most this many members on either side is compared
	// key by key at once instead of bisected by buckets (default 2000).
	DirectKeys int
	// Regions names regions in reports (nil: codes only).
	Regions *region.Table
	// Progress, when set, is told what the check is doing.
	Progress func(format string, args ...any)
	Now      func() time.Time
}

// Diff is one key that differs: in the source and not in the sink (Missing), in the
// sink and not in the source (Extra), or in both under different regions (Moved:
// SourceRegion and SinkRegion differ).
type Diff struct {
	Key          string `json:"key"`
	Kind         string `json:"kind"` // missing | extra | moved
	SourceRegion string `json:"source_region,omitempty"`
	SinkRegion   string `json:"sink_region,omitempty"`
}

// Region is one region's totals of one indicator.
type Region struct {
	Code   string `json:"code"`
	Name   string `json:"name,omitempty"`
	Source int64  `json:"source"`
	Sink   int64  `json:"sink"`
	// Diffs are the keys found to differ, confirmed after the settle interval.
	Diffs []Diff `json:"diffs,omitempty"`
	// InFlight counts keys that differed at first and no longer did after settling.
	InFlight int  `json:"in_flight,omitempty"`
	Mismatch bool `json:"mismatch"`
}

// IndicatorReport is one indicator's result.
type IndicatorReport struct {
	Name  string `json:"name"`
	Label string `json:"label"`
	// Source and Sink are the totals over the scope.
	Source int64 `json:"source"`
	Sink   int64 `json:"sink"`
	// Regions are every region of either side, by code.
	Regions  []Region `json:"regions"`
	Mismatch bool     `json:"mismatch"`
}

// Report is a check's result.
type Report struct {
	Checker    string            `json:"checker"`
	Source     string            `json:"source"`
	Sink       string            `json:"sink"`
	Level      string            `json:"level"`
	Scope      string            `json:"scope,omitempty"`
	StartedAt  time.Time         `json:"started_at"`
	FinishedAt time.Time         `json:"finished_at"`
	Indicators []IndicatorReport `json:"indicators"`
	// Match is true when no region of any indicator mismatches.
	Match bool `json:"match"`
}

// MismatchedRegions counts the distinct regions that mismatch in any indicator.
func (r *Report) MismatchedRegions() int {
	seen := map[string]bool{}
	for _, ind := range r.Indicators {
		for _, g := range ind.Regions {
			if g.Mismatch {
				seen[g.Code] = true
			}
		}
	}
	return len(seen)
}

// DifferingKeys are the confirmed differences of every indicator, by indicator name.
func (r *Report) DifferingKeys() map[string][]Diff {
	out := map[string][]Diff{}
	for _, ind := range r.Indicators {
		for _, g := range ind.Regions {
			out[ind.Name] = append(out[ind.Name], g.Diffs...)
		}
	}
	return out
}

// DiffCount counts the confirmed differences (a key counts once per indicator and
// region it differs in).
func (r *Report) DiffCount() int {
	n := 0
	for _, d := range r.DifferingKeys() {
		n += len(d)
	}
	return n
}

// Run compares the totals of every indicator, drills the differing regions down to
// their keys and re-verifies those after the settle interval.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Level == 0 {
		o.Level = region.County
	}
	if o.Settle < 0 {
		o.Settle = 0
	} else if o.Settle == 0 {
		o.Settle = 30 * time.Second
	}
	if o.DirectKeys <= 0 {
		o.DirectKeys = 2000
	}
	progress := o.progress
	rep := &Report{Checker: o.Checker, Source: o.Source.Name, Sink: o.Sink.Name, Level: o.Level.String(), Scope: o.Scope, StartedAt: o.now(), Match: true}
	type pending struct {
		ind   int
		diffs map[string]Diff
	}
	var suspects []pending
	digits := o.Level.Digits()
	names := make([]string, len(o.Indicators))
	for i, ind := range o.Indicators {
		names[i] = ind.Name
	}
	progress("counting %d indicators by %s in %s and %s (both at once)", len(names), o.Level, o.Source.Name, o.Sink.Name)
	var srcAll, snkAll map[string]map[string]Total
	var srcErr, snkErr error
	var wg sync.WaitGroup
	wg.Add(2)
	bounds := SplitBounds(o.Regions, o.Scope)
	go func() { defer wg.Done(); srcAll, srcErr = o.Source.Totals(ctx, names, digits, o.Scope, bounds) }()
	go func() { defer wg.Done(); snkAll, snkErr = o.Sink.Totals(ctx, names, digits, o.Scope, bounds) }()
	wg.Wait()
	if err := errors.Join(srcErr, snkErr); err != nil {
		return nil, err
	}
	for i, ind := range o.Indicators {
		src, snk := srcAll[ind.Name], snkAll[ind.Name]
		ir := IndicatorReport{Name: ind.Name, Label: ind.Label}
		diffs := map[string]Diff{}
		var sus []suspect
		for _, code := range unionKeys(src, snk) {
			a, b := src[code], snk[code]
			ir.Source += a.Count
			ir.Sink += b.Count
			ir.Regions = append(ir.Regions, Region{Code: code, Name: o.regionName(code), Source: a.Count, Sink: b.Count})
			if a == b || (a.Count == 0 && b.Count == 0) {
				continue
			}
			sus = append(sus, suspect{code, a, b})
		}
		if len(sus) > 0 {
			progress("%s: %d regions differ: drilling down", ind.Name, len(sus))
			if err := o.drill(ctx, ind.Name, digits, sus, diffs); err != nil {
				return nil, err
			}
		}
		rep.Indicators = append(rep.Indicators, ir)
		if len(diffs) > 0 {
			suspects = append(suspects, pending{i, diffs})
		}
	}
	if len(suspects) > 0 && o.Settle > 0 {
		progress("%d indicators have differing keys: waiting %s for changes in flight, then checking them again", len(suspects), o.Settle)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(o.Settle):
		}
	}
	for _, s := range suspects {
		ir := &rep.Indicators[s.ind]
		progress("%s: looking %d differing keys up again on both sides", ir.Name, len(s.diffs))
		confirmed, err := o.verify(ctx, ir.Name, s.diffs)
		if err != nil {
			return nil, err
		}
		byRegion := map[string][]Diff{}
		first := map[string]int{}
		for _, d := range s.diffs {
			first[o.regionOf(d)]++
		}
		for _, d := range confirmed {
			code := o.regionOf(d)
			byRegion[code] = append(byRegion[code], d)
			if d.Kind == "moved" && d.SinkRegion != "" {
				// a moved key is a difference of both regions
				if other := region.Prefix(d.SinkRegion, o.Level); other != code {
					byRegion[other] = append(byRegion[other], d)
				}
			}
		}
		// A key that moved while it settled may now be in a region the totals did not
		// list (no member on either side then): list that region too, never drop it.
		listed := map[string]bool{}
		for _, g := range ir.Regions {
			listed[g.Code] = true
		}
		for code := range byRegion {
			if !listed[code] {
				ir.Regions = append(ir.Regions, Region{Code: code, Name: o.regionName(code)})
			}
		}
		sort.Slice(ir.Regions, func(a, b int) bool { return ir.Regions[a].Code < ir.Regions[b].Code })
		for j := range ir.Regions {
			g := &ir.Regions[j]
			g.Diffs = byRegion[g.Code]
			sort.Slice(g.Diffs, func(a, b int) bool { return g.Diffs[a].Key < g.Diffs[b].Key })
			g.InFlight = max(0, first[g.Code]-len(g.Diffs))
		}
	}
	for i := range rep.Indicators {
		ir := &rep.Indicators[i]
		for j := range ir.Regions {
			g := &ir.Regions[j]
			g.Mismatch = len(g.Diffs) > o.Tolerance
			if g.Mismatch {
				ir.Mismatch = true
				rep.Match = false
			}
		}
	}
	rep.FinishedAt = o.now()
	progress("done: %d regions mismatch, %d differing keys", rep.MismatchedRegions(), rep.DiffCount())
	return rep, nil
}

// Recheck looks the differing keys of rep up again on both sides (after a repair) and
// returns the report as it stands now: keys that match are gone from it.
func Recheck(ctx context.Context, o Options, rep *Report) (*Report, error) {
	if o.Level == 0 {
		o.Level = region.County
	}
	out := *rep
	out.Indicators = slices.Clone(rep.Indicators)
	out.Match = true
	for i := range out.Indicators {
		ir := &out.Indicators[i]
		ir.Regions = slices.Clone(ir.Regions)
		ir.Mismatch = false
		diffs := map[string]Diff{}
		for _, g := range ir.Regions {
			for _, d := range g.Diffs {
				diffs[d.Key] = d
			}
		}
		still := map[string]Diff{}
		if len(diffs) > 0 {
			now, err := o.verify(ctx, ir.Name, diffs)
			if err != nil {
				return nil, err
			}
			for _, d := range now {
				still[d.Key] = d
			}
		}
		for j := range ir.Regions {
			g := &ir.Regions[j]
			var left []Diff
			for _, d := range g.Diffs {
				if nd, ok := still[d.Key]; ok {
					left = append(left, nd)
				}
			}
			g.Diffs = left
			g.Mismatch = len(g.Diffs) > o.Tolerance
			if g.Mismatch {
				ir.Mismatch, out.Match = true, false
			}
		}
	}
	out.FinishedAt = o.now()
	return &out, nil
}

func (o *Options) now() time.Time {
	if o.Now == nil {
		return time.Now()
	}
	return o.Now()
}

// progress reports a step of a long check (Options.Progress; nil: nothing).
func (o *Options) progress(format string, args ...any) {
	if o.Progress != nil {
		o.Progress(format, args...)
	}
}

// suspect is a region whose totals differ.
type suspect struct {
	code string
	a, b Total
}

// drill finds the keys whose membership differs between the stores in the suspect
// regions (codes of digits length). A region small enough is listed key by key;
// larger ones are split by key hash into 16^n buckets, n chosen so that a bucket of
// the largest region holds about DirectKeys members at most, and the buckets whose count or checksum
// differs are listed (or, when the hashes are skewed and a bucket is still too large,
// split 16 ways again). Every step is one scan per store for all suspect regions at
// once, source and sink in parallel, so a drill-down costs a few scans however many
// regions differ.
func (o *Options) drill(ctx context.Context, ind string, digits int, sus []suspect, diffs map[string]Diff) error {
	direct := int64(o.DirectKeys)
	lists := map[int64][]cell{} // cells to list, by mod
	type level struct{ mod, parentMod int64 }
	type request struct {
		regions []string
		parents map[cell]bool // parentMod > 1: the parent cells wanted
	}
	reqs := map[level]*request{}
	// One modulus for every region bucketed, sized for the largest: one scan per
	// store, however the regions' sizes spread around a power of 16.
	first := &request{}
	var largest int64
	for _, s := range sus {
		n := max(s.a.Count, s.b.Count)
		if n <= direct {
			lists[1] = append(lists[1], cell{s.code, 1, 0})
			continue
		}
		largest = max(largest, n)
		first.regions = append(first.regions, s.code)
	}
	if len(first.regions) > 0 {
		mod := int64(16)
		for largest/mod > direct && mod < 1<<28 {
			mod *= 16
		}
		reqs[level{mod, 1}] = first
	}
	for len(reqs) > 0 {
		next := map[level]*request{}
		levels := make([]level, 0, len(reqs))
		for l := range reqs {
			levels = append(levels, l)
		}
		sort.Slice(levels, func(i, j int) bool { return levels[i].mod < levels[j].mod })
		for _, l := range levels {
			r := reqs[l]
			var parents []int64
			seen := map[int64]bool{}
			for c := range r.parents {
				if !seen[c.bucket] {
					seen[c.bucket] = true
					parents = append(parents, c.bucket)
				}
			}
			sort.Slice(parents, func(i, j int) bool { return parents[i] < parents[j] })
			o.progress("%s: counting %d-way key-hash buckets of %d regions", ind, l.mod, len(r.regions))
			src, snk, err := both(o, func(s *Store) (map[cell]Total, error) {
				return s.bucketTotals(ctx, ind, digits, r.regions, l.mod, l.parentMod, parents)
			})
			if err != nil {
				return err
			}
			for _, c := range unionCells(src, snk) {
				a, b := src[c], snk[c]
				if a == b || (l.parentMod > 1 && !r.parents[cell{c.region, l.parentMod, c.bucket % l.parentMod}]) {
					continue
				}
				if max(a.Count, b.Count) <= direct || l.mod >= 1<<28 {
					lists[l.mod] = append(lists[l.mod], c)
					continue
				}
				nl := level{l.mod * 16, l.mod}
				if next[nl] == nil {
					next[nl] = &request{parents: map[cell]bool{}}
				}
				nr := next[nl]
				if len(nr.regions) == 0 || nr.regions[len(nr.regions)-1] != c.region {
					nr.regions = append(nr.regions, c.region)
				}
				nr.parents[c] = true
			}
		}
		reqs = next
	}
	mods := make([]int64, 0, len(lists))
	for m := range lists {
		mods = append(mods, m)
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i] < mods[j] })
	for _, mod := range mods {
		o.progress("%s: listing the keys of %d differing buckets", ind, len(lists[mod]))
		src, snk, err := both(o, func(s *Store) (map[cell]map[string]string, error) {
			return s.cellKeys(ctx, ind, digits, mod, lists[mod])
		})
		if err != nil {
			return err
		}
		for _, c := range lists[mod] {
			compareKeys(src[c], snk[c], diffs)
		}
	}
	return nil
}

// both runs f on the source and on the sink at once.
func both[T any](o *Options, f func(*Store) (T, error)) (src, snk T, err error) {
	var wg sync.WaitGroup
	var srcErr, snkErr error
	wg.Add(1)
	go func() { defer wg.Done(); src, srcErr = f(o.Source) }()
	snk, snkErr = f(o.Sink)
	wg.Wait()
	return src, snk, errors.Join(srcErr, snkErr)
}

// compareKeys records the differences between one cell's keys on both sides (the
// kind is settled by verify, which looks every suspect up on both sides).
func compareKeys(src, snk map[string]string, diffs map[string]Diff) {
	for k, r := range src {
		if _, ok := snk[k]; !ok {
			diffs[k] = Diff{Key: k, Kind: "missing", SourceRegion: r}
		}
	}
	for k, r := range snk {
		if _, ok := src[k]; !ok {
			if _, seen := diffs[k]; !seen {
				diffs[k] = Diff{Key: k, Kind: "extra", SinkRegion: r}
			}
		}
	}
}

// verify looks the differing keys up again on both sides and returns those that
// still differ, as they differ now.
func (o *Options) verify(ctx context.Context, ind string, diffs map[string]Diff) ([]Diff, error) {
	keys := make([]string, 0, len(diffs))
	for k := range diffs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	src, err := o.Source.Members(ctx, ind, keys)
	if err != nil {
		return nil, err
	}
	snk, err := o.Sink.Members(ctx, ind, keys)
	if err != nil {
		return nil, err
	}
	var out []Diff
	for _, k := range keys {
		a, inA := src[k]
		b, inB := snk[k]
		if o.Scope != "" {
			inA = inA && region.Contains(o.Scope, a)
			inB = inB && region.Contains(o.Scope, b)
		}
		switch {
		case inA && !inB:
			out = append(out, Diff{Key: k, Kind: "missing", SourceRegion: a})
		case !inA && inB:
			out = append(out, Diff{Key: k, Kind: "extra", SinkRegion: b})
		case inA && inB && region.Prefix(a, o.Level) != region.Prefix(b, o.Level):
			out = append(out, Diff{Key: k, Kind: "moved", SourceRegion: a, SinkRegion: b})
		}
	}
	return out, nil
}

// regionOf is the region (at the check's level) a difference is counted in: the
// source's, or the sink's for an extra key.
func (o *Options) regionOf(d Diff) string {
	if d.SourceRegion != "" {
		return region.Prefix(d.SourceRegion, o.Level)
	}
	return region.Prefix(d.SinkRegion, o.Level)
}

func (o *Options) regionName(code string) string {
	if o.Regions == nil {
		return ""
	}
	if r, ok := o.Regions.Get((code + "000000000000")[:12]); ok {
		return r.Name
	}
	return ""
}

func unionKeys[K string | int64, V any](a, b map[K]V) []K {
	out := union(a, b)
	slices.Sort(out)
	return out
}

// unionCells is unionKeys for cells, by region then bucket.
func unionCells[V any](a, b map[cell]V) []cell {
	out := union(a, b)
	sort.Slice(out, func(i, j int) bool {
		if out[i].region != out[j].region {
			return out[i].region < out[j].region
		}
		return out[i].bucket < out[j].bucket
	})
	return out
}

func union[K comparable, V any](a, b map[K]V) []K {
	out := make([]K, 0, len(a)+len(b))
	for k := range a {
		out = append(out, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}

// String is a one-line summary of the report.
func (r *Report) String() string {
	if r.Match {
		return fmt.Sprintf("%s: %s and %s match by %s in every indicator", r.Checker, r.Source, r.Sink, r.Level)
	}
	return fmt.Sprintf("%s: %s and %s differ in %d regions by %s (%d differing keys)", r.Checker, r.Source, r.Sink, r.MismatchedRegions(), r.Level, r.DiffCount())
}
