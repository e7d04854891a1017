package pii

import (
	"strings"
	"testing"
)

// BenchmarkProtect: one ID number per method (go test -bench Protect ./internal/pii/).
func BenchmarkProtect(b *testing.B) {
	p := newProtector(b, MethodMask, Options{})
	for _, m := range []Method{MethodRaw, MethodMask, MethodSM3, MethodSM4} {
		b.Run(string(m), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.ProtectWith(m, KindIDNumber, idA); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("sm3/15-digit", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.ProtectWith(MethodSM3, KindIDNumber, idA15); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchRow is a typical 20-field CSV row of a department delivery: two ID numbers, a
// phone, a certificate, dates, amounts, codes and Chinese text.
var benchRow = strings.Join([]string{
	"P5101040010010001", "张三", "510104199001011230", "男", "1990-01-01", "汉族",
	"13800138000", "510104001001", "四川省成都市锦江区某某街道某某社区", "脱贫户",
	"2024-03-15", "12345.67", "51010419900101123041", "肢体", "二级", "440306200002291001",
	"6222021234567890123", "3", "已核实", "备注：无",
}, ",")

func BenchmarkScrubText(b *testing.B) {
	clean := strings.NewReplacer("510104199001011230", "x", "13800138000", "y", "51010419900101123041", "z", "440306200002291001", "w").Replace(benchRow)
	for _, tc := range []struct {
		name string
		m    Method
		row  string
	}{
		{"mask", MethodMask, benchRow},
		{"sm4", MethodSM4, benchRow},
		{"mask/no-pii", MethodMask, clean},
	} {
		p := newProtector(b, tc.m, Options{})
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.row)))
			for b.Loop() {
				_ = p.ScrubText(tc.row)
			}
		})
	}
	p := newProtector(b, MethodSM4, Options{})
	enc := p.ScrubText(benchRow)
	b.Run("reveal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Reveal(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
