package pii

import (
	"encoding/json"
	"errors"
	"maps"
	"regexp"
	"strings"
	"testing"
)

// Valid ID numbers used below (check digits computed per GB 11643):
//
//	510104199001011230  (15-digit form 510104900101123)
//	51070319850612104X
//	440306200002291001
const (
	idA   = "510104199001011230"
	idA15 = "510104900101123"
	idB   = "51070319850612104X"
	idC   = "440306200002291001"
	phone = "13800138000"
)

func TestMaskText(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"csv row", "张三,510104199001011230,13800138000,2024-01-02,1234.50",
			"张三,5101**********1230,138****8000,2024-01-02,1234.50"},
		{"chinese around", "身份证号码为510104199001011230的村民", "身份证号码为5101**********1230的村民"},
		{"check char X", "证件 51070319850612104X。", "证件 5107**********104X。"},
		{"lower-case x", "51070319850612104x", "5107**********104X"},
		{"full-width", "５１０１０４１９９００１０１１２３０", "5101**********1230"},
		{"full-width x", "５１０７０３１９８５０６１２１０４ｘ", "5107**********104X"},
		{"grouped with spaces", "号码 510104 19900101 1230 结束", "号码 5101**********1230 结束"},
		{"zero-width space inside", "5101041990\u200b01011230", "5101**********1230"},
		{"ideographic space inside", "510104\u300019900101\u30001230", "5101**********1230"},
		{"invalid utf-8 before", "\xff510104199001011230", "\xff5101**********1230"},
		{"15 digits", "旧证号 510104900101123。", "旧证号 5101*******1123。"},
		{"checksum wrong still masked", "510104199001011234", "5101**********1234"},
		{"two ids in one field", "510104199001011230;440306200002291001", "5101**********1230;4403**********1001"},
		{"number before id", "第45 510104199001011230", "第45 5101**********1230"},
		{"phone", "联系电话13800138000。", "联系电话138****8000。"},
		{"phone 3-4-4", "电话：138 0013 8000", "电话：138****8000"},
		{"phone hyphens", "手机 138-0013-8000", "手机 138****8000"},
		{"phone +86 spaced", "+86 13800138000", "+86 138****8000"},
		{"phone +86", "+8613800138000", "+86138****8000"},
		{"id then phone glued", "51070319850612104X13800138000", "5107**********104X138****8000"},
		{"cert 20", "残疾证 51010419900101123041 类别", "残疾证 5101************3041 类别"},
		{"cert with X", "51070319850612104X42", "5107************4X42"},
		{"cert with suffix", "51010419900101123041B1", "5101************3041B1"},
		{"cert spaced", "510104199001011230 41", "5101************3041"},
		{"run embedding an id", "流水1510104199001011230", "流水1510***********1230"},
		{"id and phone without separator", "51010419900101123013800138000", "5101*********************8000"},
		{"masked stays", "5101**********1230,138****8000", "5101**********1230,138****8000"},
		{"sm3 token stays", "sm3:h1:" + strings.Repeat("51", 32), "sm3:h1:" + strings.Repeat("51", 32)},
		// Values that must not be touched.
		{"bank card 19", "卡号6222021234567890123", "卡号6222021234567890123"},
		{"bank card grouped", "6222 0212 3456 7890 123", "6222 0212 3456 7890 123"},
		{"bank card 16 grouped", "6222 0212 3456 7890", "6222 0212 3456 7890"},
		{"dates and amounts", "2024-01-02 12:30:00, ¥12,345.67, 20240102, 2024年1月2日, 1733300000000",
			"2024-01-02 12:30:00, ¥12,345.67, 20240102, 2024年1月2日, 1733300000000"},
		{"ns timestamp", "ts=1733300000000000000", "ts=1733300000000000000"},
		{"region code", "510104001001,5101", "510104001001,5101"},
		{"landline", "028-85551234", "028-85551234"},
		{"not a mobile", "12345678901", "12345678901"},
		{"x-ray", "X光 XXX县", "X光 XXX县"},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := MaskText(tc.in); got != tc.want {
				t.Errorf("MaskText(%q)\n got %q\nwant %q", tc.in, got, tc.want)
			}
		})
	}
}

var sm4TokenRe = regexp.MustCompile(`^sm4:k2:[A-Za-z0-9_-]+$`)

func TestScrubTextSM4RoundTrip(t *testing.T) {
	p := newProtector(t, MethodSM4, Options{})
	for _, in := range []string{
		"张三,510104199001011230,13800138000,2024-01-02",
		"号码 510104 19900101 1230 结束",
		"ID=51070319850612104xabc", // token followed directly by letters
		"５１０１０４１９９００１０１１２３０",
		"\xff5101041990\u200b01011230\xfe",
		"nothing here 2024-01-02",
	} {
		out := p.ScrubText(in)
		if id := validIDIn(out); id != "" || strings.Contains(out, phone) {
			t.Errorf("ScrubText(%q) = %q leaks", in, out)
		}
		back, err := p.Reveal(out)
		if err != nil || back != in {
			t.Errorf("Reveal(ScrubText(%q)) = %q, %v", in, back, err)
		}
	}
	out := p.ScrubText("a," + idA + ",b")
	tok := strings.TrimSuffix(strings.TrimPrefix(out, "a,"), ",b")
	if !sm4TokenRe.MatchString(tok) {
		t.Errorf("token %q does not look like sm4:k2:<base64url>", tok)
	}
}

func TestScrubTextRaw(t *testing.T) {
	p := newProtector(t, MethodRaw, Options{})
	if in := "a," + idA; p.ScrubText(in) != in {
		t.Errorf("raw changed %q", in)
	}
	if p.DLQMethod() != MethodRaw {
		t.Errorf("DLQMethod = %s", p.DLQMethod())
	}
}

func TestScrubTextDefaultIsMask(t *testing.T) {
	p, err := New(Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.ScrubText("id " + idA); got != "id 5101**********1230" {
		t.Errorf("default DLQ method: got %q", got)
	}
}

func TestScrubMap(t *testing.T) {
	p := newProtector(t, MethodMask, Options{})
	in := map[string]any{
		"name":   "张三",
		"id_no":  idA,
		"id15":   json.Number(idA15),
		"idf":    float64(510104900101123),
		"age":    json.Number("45"),
		"amount": 1234.5,
		"text":   []byte("phone " + phone),
		"nested": map[string]any{"phones": []any{phone, "x"}},
		"tags":   []string{"ok", idC},
		"flag":   true,
		idA:      "a key is a column name and stays",
	}
	orig := maps.Clone(in)
	got := p.ScrubMap(in)
	want := map[string]any{
		"name":   "张三",
		"id_no":  "5101**********1230",
		"id15":   "5101*******1123",
		"idf":    "5101*******1123",
		"age":    json.Number("45"),
		"amount": 1234.5,
		"text":   "phone 138****8000",
		"nested": map[string]any{"phones": []any{"138****8000", "x"}},
		"tags":   []string{"ok", "4403**********1001"},
		"flag":   true,
		idA:      "a key is a column name and stays",
	}
	gotJSON, _ := json.Marshal(got)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("ScrubMap\n got %s\nwant %s", gotJSON, wantJSON)
	}
	if in["id_no"] != orig["id_no"] || in["nested"].(map[string]any)["phones"].([]any)[0] != phone {
		t.Error("ScrubMap modified its input")
	}
}

func TestScrubMapRevealMapSM4(t *testing.T) {
	p := newProtector(t, MethodSM4, Options{})
	row := map[string]any{
		"after":   map[string]any{"id_no": idB, "phone": phone, "remark": "身份证" + idA},
		"members": []any{map[string]any{"id_no": idC}},
		"n":       json.Number("7"),
	}
	scrubbed := p.ScrubMap(row)
	js, _ := json.Marshal(scrubbed)
	if validIDIn(string(js)) != "" || strings.Contains(string(js), phone) {
		t.Fatalf("scrubbed row leaks: %s", js)
	}
	back, err := p.RevealMap(scrubbed)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(back)
	b, _ := json.Marshal(row)
	if string(a) != string(b) {
		t.Errorf("RevealMap(ScrubMap(row))\n got %s\nwant %s", a, b)
	}

	// Without the key, every failing value is named by its key path.
	other, err := New(Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = other.RevealMap(scrubbed)
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("RevealMap without keys: %v", err)
	}
	for _, path := range []string{"after.id_no: ", "after.phone: ", "after.remark: ", "members[0].id_no: "} {
		if !strings.Contains(err.Error(), path) {
			t.Errorf("error does not name %q: %v", path, err)
		}
	}
	if validIDIn(err.Error()) != "" {
		t.Errorf("error leaks an ID number: %v", err)
	}
}
