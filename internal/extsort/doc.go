// Package extsort is the external merge sort shared by the capture connectors: it
// sorts more records than fit in memory by spilling sorted runs to a temporary
// directory and merging them back as a stream.
//
// # Records
//
// A record is an opaque byte slice. The caller says how to order records with
// Options.Key, which picks the sort key out of a record (by default the whole record),
// and Options.Compare, which orders two keys (by default bytes.Compare). The sort is
// stable: records with equal keys come out in the order they were added. Callers that
// want "the last record of a key wins" read the stream and keep the last of each key.
//
// # Memory
//
// Added records are copied into one buffer until Options.MemoryBytes (record bytes
// plus a fixed index entry per record) would be exceeded; the buffer is then sorted
// and written as a run file, and refilled. With Options.Background the sorting and
// writing happen on a goroutine while records keep coming, so two buffers can be in
// memory at once. When nothing was spilled, the sorted buffer is read directly.
//
// # Run files
//
// A run file, named after Options.Pattern in Options.Dir, is
//
//	"extsort1" | record* | 0x00 | uint64 little-endian record count
//
// where each record is
//
//	uvarint(len(record)+1) | record | uint32 little-endian CRC-32C of record
//
// The checksum and the trailer make a flipped bit, a truncated file (also at a record
// boundary) or a file that is not a run fail with an error wrapping ErrCorrupt that
// names the file and the byte offset, instead of yielding wrong or missing records.
//
// # Multi-level merge
//
// Merging opens one file per run. To keep the number of open files bounded whatever
// the input size, at most Options.FanIn runs (default 64) are merged at once: while
// there are more runs than FanIn, groups of up to FanIn consecutive runs are merged
// into larger intermediate runs (as few as needed to get down to FanIn), whose inputs
// are removed as soon as they are merged; then the remaining runs are merged as the
// stream the caller reads. Only consecutive runs are merged, and ties are broken by
// run order, so the result stays stable. At most FanIn+1 run files are open at any
// time (FanIn inputs and one output); Stats reports the peak.
//
// Close removes every run file the sorter created. Merge is the stable k-way heap
// merge the sorter uses, exported for callers that merge their own sorted streams.
package extsort
