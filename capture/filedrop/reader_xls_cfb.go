package filedrop

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf16"
)

// Compound file (OLE2) sector markers.
const (
	cfbEndOfChain = 0xFFFFFFFE
	cfbFree       = 0xFFFFFFFF
)

// checkCFBChains validates the sector chains that github.com/shakinm/xlsReader
// follows before it is given the file. The library follows FAT, mini FAT and DIFAT
// chains without loop detection, so a damaged (or hostile) file with a cyclic chain
// would make it append sectors until the process runs out of memory, which no
// recover() can catch and which would crash-loop the capture on the same delivery.
// This check walks the same chains with bounds and refuses cycles, chains that leave
// the file and implausible sector counts.
func checkCFBChains(data []byte) error {
	const hdr = 512
	if len(data) < hdr {
		return fmt.Errorf("corrupt or truncated XLS: %d bytes, shorter than a compound file header", len(data))
	}
	le := binary.LittleEndian
	var ss int
	switch le.Uint16(data[0x1A:]) {
	case 3:
		ss = 512
	case 4:
		ss = 4096
	default:
		return fmt.Errorf("corrupt XLS: compound file version %d (want 3 or 4)", le.Uint16(data[0x1A:]))
	}
	nSectors := (len(data) - 1) / ss // sectors after the header sector
	perSector := ss / 4
	sector := func(sid uint32) ([]byte, bool) {
		off := (int64(sid) + 1) * int64(ss)
		if off >= int64(len(data)) {
			return nil, false
		}
		end := off + int64(ss)
		if end > int64(len(data)) {
			// A short last sector: read what is there, like the library does.
			b := make([]byte, ss)
			copy(b, data[off:])
			return b, true
		}
		return data[off:end], true
	}

	// The FAT: sectors named by the header's 109 DIFAT entries, then by the DIFAT chain.
	nFAT := le.Uint32(data[0x2C:])
	nDIFAT := le.Uint32(data[0x48:])
	if int64(nFAT) > int64(nSectors)+1 {
		return fmt.Errorf("corrupt XLS: compound file header claims %d FAT sectors in a file of %d sectors", nFAT, nSectors)
	}
	if maxDIFAT := nSectors/(perSector*(perSector-1)) + 1; int64(nDIFAT) > int64(maxDIFAT) {
		return fmt.Errorf("corrupt XLS: compound file header claims %d DIFAT sectors in a file of %d sectors", nDIFAT, nSectors)
	}
	var fat []uint32
	addFAT := func(sid uint32) {
		b, ok := sector(sid)
		if !ok {
			return
		}
		for i := 0; i+4 <= len(b); i += 4 {
			fat = append(fat, le.Uint32(b[i:]))
		}
	}
	for i := uint32(0); i < min(nFAT, 109); i++ {
		addFAT(le.Uint32(data[0x4C+4*i:]))
	}
	seen := map[uint32]bool{}
	next := le.Uint32(data[0x44:])
	for i := uint32(0); i < nDIFAT && next != cfbEndOfChain && next != cfbFree; i++ {
		if seen[next] {
			return errors.New("corrupt XLS: the compound file's DIFAT chain loops")
		}
		seen[next] = true
		b, ok := sector(next)
		if !ok {
			break
		}
		for j := 0; j+4 <= len(b)-4; j += 4 {
			addFAT(le.Uint32(b[j:]))
		}
		next = le.Uint32(b[len(b)-4:])
	}

	chainOK := func(what string, table []uint32, start uint32) error {
		steps := 0
		for sid := start; sid != cfbEndOfChain; sid = table[sid] {
			if int(sid) >= len(table) {
				return fmt.Errorf("corrupt or truncated XLS: the compound file's %s chain leaves the file (sector %d)", what, sid)
			}
			if steps++; steps > len(table) {
				return fmt.Errorf("corrupt XLS: the compound file's %s chain loops", what)
			}
		}
		return nil
	}

	// Directory entries, to find the Workbook and Root Entry streams.
	dirStart := le.Uint32(data[0x30:])
	if err := chainOK("directory", fat, dirStart); err != nil {
		return err
	}
	var book, root []byte
	for sid := dirStart; sid != cfbEndOfChain; sid = fat[sid] {
		b, ok := sector(sid)
		if !ok {
			return errors.New("corrupt or truncated XLS: the compound file's directory lies past the end of the file")
		}
		for i := 0; i+128 <= len(b); i += 128 {
			e := b[i : i+128]
			n := int(le.Uint16(e[64:]))
			if n < 2 || n > 64 || e[66] == 0 {
				continue
			}
			u := make([]uint16, n/2-1)
			for k := range u {
				u[k] = le.Uint16(e[2*k:])
			}
			switch string(utf16.Decode(u)) {
			case "Workbook", "Book":
				book = e
			case "Root Entry":
				root = e
			}
		}
	}
	if book == nil || root == nil {
		return nil // the reader reports the missing stream
	}
	cutoff := le.Uint32(data[0x38:])
	size, start := le.Uint32(book[120:]), le.Uint32(book[116:])
	if size >= cutoff {
		return chainOK("Workbook stream", fat, start)
	}
	// Small streams live in the mini stream; the library reads the mini FAT as
	// consecutive sectors from its first one.
	var minifat []uint32
	first := le.Uint32(data[0x3C:])
	for i := uint32(0); i < le.Uint32(data[0x40:]); i++ {
		b, ok := sector(first + i)
		if !ok || first+i < first {
			break
		}
		for j := 0; j+4 <= len(b); j += 4 {
			minifat = append(minifat, le.Uint32(b[j:]))
		}
	}
	if err := chainOK("root storage", fat, le.Uint32(root[116:])); err != nil {
		return err
	}
	return chainOK("Workbook mini stream", minifat, start)
}
