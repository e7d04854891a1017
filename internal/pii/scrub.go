package pii

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/shouwang/shouwang/internal/ident"
)

// The scanner behind ScrubText (the rules in prose are in the package documentation).
//
// It works on the text as ident.Normalize sees it: full-width digits count as digits,
// x, ｘ, Ｘ and × as X, and white space, control and invisible format characters (and
// invalid UTF-8) are transparent, since ident.ParseID would accept a number spelt with
// them. A "piece" is a run of directly adjacent digits, ended by an X; a "group" is a
// sequence of pieces separated only by transparent characters or a single hyphen.
// Each group is then partitioned:
//
//  1. the whole group if it is a valid ID number (checksum included), certificate or
//     mobile number;
//  2. else every run of consecutive pieces that is a valid ID number or certificate,
//     or a mobile number written as one piece or as 3-4-4 or 3-8 digits, taken
//     left to right, longest first;
//  3. if step 2 found nothing, the whole group if it has the shape of one (18 = 17
//     digits + digit or X, 15 digits, 20 = ID shape + 2 digits, 11 = 1[3-9]…, or 86 +
//     a mobile number);
//  4. every single piece not yet taken that has such a shape;
//  5. every stretch of pieces still untouched that, together with the digits a
//     neighbouring mask leaves visible, contains a valid 18-character ID number, as a
//     whole (a long number embedding an ID).
//
// Step 5 is what makes "no valid ID survives a mask" hold: outside a masked span only
// untouched stretches and the at most 4+4 digits a mask keeps can meet, and a stretch
// that could complete an ID number with them is masked as well.

type kindScan uint8

const (
	scanNone kindScan = iota
	scanID
	scanCert
	scanPhone
	scanPhone86 // 86 + mobile: the prefix stays visible when masked
	scanNumber  // a digit run embedding a valid ID number
)

type piece struct {
	start, end int // byte span in the text
	ds, de     int // its digits in the group's digit string (ASCII, X only last)
}

func (p piece) len() int { return p.de - p.ds }

type span struct {
	start, end int // byte span in the text
	digits     string
	kind       kindScan
}

// scan finds the spans to protect in s, in order. It calls emit for each.
func scan(s string, emit func(span)) {
	var (
		group  []piece
		digits []byte // the group's normalised digits
		pStart = -1
		pEnd   int
		// pDigits is where the current piece's digits start in digits.
		pDigits int
		// after the last piece: only transparent characters (gap 0) or one hyphen
		// (gap 1) so far; gap 2 means the group has ended.
		gap int
	)
	endPiece := func() {
		if pStart >= 0 {
			group = append(group, piece{start: pStart, end: pEnd, ds: pDigits, de: len(digits)})
			pStart = -1
		}
	}
	endGroup := func() {
		endPiece()
		if len(digits) >= 11 { // shorter than any rule (a mobile number has 11 digits)
			partition(group, string(digits), emit)
		}
		group, digits = group[:0], digits[:0]
		gap = 0
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c == 's' {
			if end, ok := tokenAt(s, i); ok {
				endGroup()
				i = end
				continue
			}
		}
		r, size := rune(c), 1
		if c >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(s[i:])
		}
		switch d := digitOf(r); {
		case d != 0:
			if pStart < 0 {
				if gap > 1 {
					endGroup()
				}
				pStart, pDigits = i, len(digits)
			}
			digits = append(digits, d)
			pEnd = i + size
			gap = 0
			if d == 'X' {
				endPiece()
			}
		case transparent(r):
			endPiece()
		case r == '-' || r == '－':
			endPiece()
			if len(group) == 0 {
				gap = 0
			} else {
				gap++
			}
		default:
			endGroup()
		}
		i += size
	}
	endGroup()
}

// digitOf maps a rune to the ASCII digit or 'X' it normalises to, or 0.
func digitOf(r rune) byte {
	switch {
	case r >= '0' && r <= '9':
		return byte(r)
	case r >= '０' && r <= '９':
		return byte(r - '０' + '0')
	case r == 'X', r == 'x', r == 'Ｘ', r == 'ｘ', r == '×':
		return 'X'
	}
	return 0
}

// transparent reports the characters ident.Normalize deletes.
func transparent(r rune) bool {
	if r < utf8.RuneSelf {
		return r <= ' ' || r == 0x7f
	}
	return r == utf8.RuneError || unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) || unicode.IsControl(r)
}

// maxMatch is the longest number a rule matches (a 20-digit certificate).
const maxMatch = 20

// partition decides which pieces of one group are protected (steps 1–5 above).
func partition(g []piece, digits string, emit func(span)) {
	// join is the digits of pieces i..j: one substring, since they are consecutive.
	join := func(i, j int) string { return digits[g[i].ds:g[j].de] }
	all := digits
	if k := strongKind(all, g); k != scanNone {
		emit(span{g[0].start, g[len(g)-1].end, all, k})
		return
	}
	// spans[i] is the span starting at piece i (kind scanNone: none starts there);
	// owner[t] the first piece of the span covering piece t, or -1.
	type found struct {
		kind kindScan
		last int
	}
	spans := make([]found, len(g))
	owner := make([]int, len(g))
	for i := range owner {
		owner[i] = -1
	}
	take := func(i, j int, k kindScan) {
		spans[i] = found{k, j}
		for t := i; t <= j; t++ {
			owner[t] = i
		}
	}
	anyStrong := false
	for i := 0; i < len(g); i++ {
		n, j := 0, i
		for j < len(g) && n+g[j].len() <= maxMatch {
			n += g[j].len()
			j++
		}
		for j--; j >= i; j-- {
			if i == 0 && j == len(g)-1 {
				continue // the whole group was tried in step 1
			}
			if k := strongKind(join(i, j), g[i:j+1]); k != scanNone {
				take(i, j, k)
				anyStrong = true
				i = j
				break
			}
		}
	}
	if !anyStrong {
		if k := weakKind(all); k != scanNone {
			emit(span{g[0].start, g[len(g)-1].end, all, k})
			return
		}
	}
	for i := range g {
		if owner[i] < 0 {
			if k := weakKind(join(i, i)); k != scanNone {
				take(i, i, k)
			}
		}
	}
	masked := func(i int) string { return maskScan(spans[i].kind, join(i, spans[i].last)) }
	// Step 5: untouched stretches, with the digits the neighbouring masks leave
	// visible (a mask keeps the ends of a number, and they join the stretch's digits).
	for i := 0; i < len(g); i++ {
		if owner[i] >= 0 {
			continue
		}
		j := i
		for j+1 < len(g) && owner[j+1] < 0 {
			j++
		}
		d := join(i, j)
		if i > 0 {
			m := masked(owner[i-1])
			d = m[strings.LastIndexByte(m, '*')+1:] + d
		}
		if j+1 < len(g) {
			m := masked(j + 1)
			if k := strings.IndexByte(m, '*'); k >= 0 {
				m = m[:k]
			}
			d += m
		}
		if containsValidID(d) {
			take(i, j, scanNumber)
		}
		i = j
	}
	for i := 0; i < len(g); i++ {
		if owner[i] == i {
			j := spans[i].last
			emit(span{g[i].start, g[j].end, join(i, j), spans[i].kind})
			i = j
		}
	}
}

// idShape: 17 digits and a digit or X (X can only be last: pieces end at X).
func idShape(d string) bool { return len(d) == 18 && strings.IndexByte(d[:17], 'X') < 0 }

func allDigits(d string) bool { return strings.IndexByte(d, 'X') < 0 }

func phoneShape(d string) bool {
	return len(d) == 11 && d[0] == '1' && d[1] >= '3' && d[1] <= '9' && allDigits(d)
}

// validID reports whether d is a valid 18-character ID number, checking the cheap
// check digit before ident.ParseID.
func validID(d string) bool {
	if !idShape(d) {
		return false
	}
	if c, err := ident.CheckDigit(d[:17]); err != nil || c != d[17] {
		return false
	}
	_, err := ident.ParseID(d)
	return err == nil
}

func containsValidID(d string) bool {
	for i := 0; i+18 <= len(d); i++ {
		if validID(d[i : i+18]) {
			return true
		}
	}
	return false
}

// strongKind classifies digits that validate as an ID number, a certificate or a
// mobile number spelt like one (one piece, 3-4-4 or 3-8).
func strongKind(d string, g []piece) kindScan {
	switch len(d) {
	case 18:
		if validID(d) {
			return scanID
		}
	case 20:
		if allDigits(d[18:]) && validID(d[:18]) {
			if _, err := ident.ParseDisabilityCert(d); err == nil {
				return scanCert
			}
		}
	case 11:
		if phoneShape(d) {
			switch len(g) {
			case 1:
				return scanPhone
			case 2:
				if g[0].len() == 3 {
					return scanPhone
				}
			case 3:
				if g[0].len() == 3 && g[1].len() == 4 {
					return scanPhone
				}
			}
		}
	}
	return scanNone
}

// weakKind classifies digits by shape alone.
func weakKind(d string) kindScan {
	switch len(d) {
	case 18:
		if idShape(d) {
			return scanID
		}
	case 15:
		if allDigits(d) {
			return scanID
		}
	case 20:
		if idShape(d[:18]) && allDigits(d[18:]) {
			return scanCert
		}
	case 11:
		if phoneShape(d) {
			return scanPhone
		}
	case 13:
		if d[:2] == "86" && phoneShape(d[2:]) {
			return scanPhone86
		}
	}
	return scanNone
}

// maskScan is the masked form of a found span's digits.
func maskScan(k kindScan, d string) string {
	switch k {
	case scanPhone:
		return ident.MaskPhone(d)
	case scanPhone86:
		return d[:2] + ident.MaskPhone(d[2:])
	}
	return ident.MaskID(d)
}

// scrub rewrites s, replacing each found span with repl(span, original text).
func scrub(s string, repl func(sp span, orig string) string) string {
	var b strings.Builder
	last, changed := 0, false
	scan(s, func(sp span) {
		if !changed {
			b.Grow(len(s) + 64)
			changed = true
		}
		b.WriteString(s[last:sp.start])
		b.WriteString(repl(sp, s[sp.start:sp.end]))
		last = sp.end
	})
	if !changed {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// MaskText masks every ID number, disability certificate number and mobile number
// found in free text (see ScrubText for what is found), without needing keys: for log
// messages and error texts.
func MaskText(s string) string {
	return scrub(s, func(sp span, _ string) string { return maskScan(sp.kind, sp.digits) })
}

// ScrubText protects every ID number, disability certificate number and mobile number
// found in free text such as a CSV line or an error message with the DLQ method: mask
// replaces each with its masked form, sm4 with a token encrypting exactly the
// characters found (Reveal restores the text byte for byte), raw returns s unchanged.
// What counts as found is described in the package documentation.
func (p *Protector) ScrubText(s string) string {
	switch p.dlq {
	case MethodRaw:
		return s
	case MethodSM4:
		id, _ := p.keys.Active(MethodSM4) // New checked it
		return scrub(s, func(sp span, orig string) string {
			if len(orig) > maxSealed {
				return maskScan(sp.kind, sp.digits)
			}
			return p.keys.seal(id, orig)
		})
	}
	return MaskText(s)
}
