package pii

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// exampleYAML is the example of the package documentation.
const exampleYAML = `
pii:
  keys:
    - id: k2026a
      purpose: sm4
      file: keys/k2026a.sm4
      active: true
    - id: k2025b                 # retired: still decrypts old tokens
      purpose: sm4
      env: SHOUWANG_PII_K2025B
    - id: p1
      purpose: sm3
      file: keys/p1.hmac
  dlq: mask
  default:
    id_number: mask
    phone: mask
  topics:
    person:
      id_number: sm3
      phone: sm4
    sc.canonical.household:
      id_number: raw
      phone: raw
`

func decodeExample(t *testing.T) Options {
	t.Helper()
	var doc struct {
		PII Options `yaml:"pii"`
	}
	dec := yaml.NewDecoder(strings.NewReader(exampleYAML))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	return doc.PII
}

func TestExampleYAML(t *testing.T) {
	o := decodeExample(t)
	if err := o.Validate("pii"); err != nil {
		t.Fatal(err)
	}
	if o.Topics["person"].IDNumber != MethodSM3 || o.Keys[1].Env != "SHOUWANG_PII_K2025B" || !o.Keys[0].Active {
		t.Fatalf("decoded %+v", o)
	}
	o.SetDefaults()
	if o.DLQ != MethodMask || o.Keys[2].Encoding != "auto" {
		t.Errorf("defaults: %+v", o)
	}

	// Open: validate, read the keys relative to the config directory, build.
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "keys"), 0o700)
	os.WriteFile(filepath.Join(dir, "keys/k2026a.sm4"), bytes.Repeat([]byte{9}, 16), 0o600)
	os.WriteFile(filepath.Join(dir, "keys/p1.hmac"), bytes.Repeat([]byte{8}, 32), 0o600)
	t.Setenv("SHOUWANG_PII_K2025B", strings.Repeat("ab", 16))
	p, err := Open(o, "pii", dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Protect("sc.canonical.person", KindPhone, phone)
	if err != nil || !strings.HasPrefix(got, "sm4:k2026a:") {
		t.Errorf("person phone = %q, %v", got, err)
	}
	if got, _ := p.Protect("sc.canonical.household", KindIDNumber, idA); got != idA {
		t.Errorf("household id = %q", got)
	}
	if got, _ := p.Protect("sc.canonical.episode", KindDisabilityCert, idA+"41"); got != "5101************3041" {
		t.Errorf("episode cert follows default id_number mask: %q", got)
	}

	os.Remove(filepath.Join(dir, "keys/p1.hmac"))
	if _, err := Open(o, "pii", dir); err == nil || !strings.Contains(err.Error(), "pii.keys[2].file: "+filepath.Join(dir, "keys/p1.hmac")+": no such file") {
		t.Errorf("Open with a missing key file: %v", err)
	}
}

func TestValidateProblems(t *testing.T) {
	o := Options{
		Keys: []KeyOptions{
			{ID: "", Purpose: MethodSM4, File: "a"},
			{ID: "bad id", Purpose: "aes", Env: "1X"},
			{ID: "k", Purpose: MethodSM4},
			{ID: "k", Purpose: MethodSM4, File: "a", Env: "B", Encoding: "raw"},
			{ID: "h1", Purpose: MethodSM3, File: "h", Encoding: "pem"},
		},
		DLQ:     MethodSM3,
		Default: Methods{Phone: "hide"},
		Topics: map[string]Methods{
			"Person":              {IDNumber: MethodMask},
			"sc.warning":          {IDNumber: MethodSM4, DisabilityCert: "x"},
			"sc.canonical.person": {Phone: MethodSM3},
		},
	}
	err := o.Validate("pii")
	if err == nil {
		t.Fatal("no problems found")
	}
	want := []string{
		"pii.keys[0].id: required",
		`pii.keys[1].id: "bad id" is not valid`,
		`pii.keys[1].purpose: "aes" is not valid: use sm4 (encryption) or sm3 (HMAC pseudonyms)`,
		`pii.keys[1].env: "1X" is not an environment variable name`,
		"pii.keys[2]: set file (a key file) or env",
		`pii.keys[3].id: "k" is already the id of pii.keys[2]`,
		"pii.keys[3]: set only one of file and env",
		"pii.keys[3].encoding: raw bytes cannot be passed in an environment variable",
		`pii.keys[4].encoding: "pem" is not valid`,
		"pii.keys: 3 keys have purpose sm4 and none is marked active",
		"pii.dlq: sm3 pseudonyms cannot be reversed",
		`pii.default.phone: "hide" is not valid: use mask, sm4, sm3 or raw`,
		`pii.topics.Person: "Person" is neither a topic name nor an entity name`,
		`pii.topics.sc.warning.disability_cert: "x" is not valid`,
	}
	var problems []*Problem
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var p *Problem
		if !errors.As(e, &p) {
			t.Errorf("not a *Problem: %v", e)
		}
		problems = append(problems, p)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q", w)
		}
	}
	// sc.canonical.person's sm3 has a usable key (h1), so it is not a problem.
	if strings.Contains(err.Error(), "\npii.topics.sc.canonical.person") {
		t.Errorf("unexpected problem for sc.canonical.person:\n%v", err)
	}
	if len(problems) != len(want) {
		t.Errorf("%d problems, want %d:\n%v", len(problems), len(want), err)
	}

	two := Options{Keys: []KeyOptions{
		{ID: "a", Purpose: MethodSM3, File: "a", Active: true},
		{ID: "b", Purpose: MethodSM3, File: "b", Active: true},
	}}
	if err := two.Validate("pii"); err == nil || !strings.Contains(err.Error(), "pii.keys[1].active: pii.keys[0] is already the active sm3 key") {
		t.Errorf("two active keys: %v", err)
	}
	noKeys := Options{Topics: map[string]Methods{"person": {IDNumber: MethodSM4, Phone: MethodSM3}}}
	if err := noKeys.Validate("pii"); err == nil ||
		!strings.Contains(err.Error(), "pii.topics.person.id_number: sm4 needs a key with purpose: sm4 (a 16-byte encryption key) in the keys list") ||
		!strings.Contains(err.Error(), "pii.topics.person.phone: sm3 needs a key with purpose: sm3") {
		t.Errorf("methods without keys: %v", err)
	}
	if err := (&Options{}).Validate("pii"); err != nil {
		t.Errorf("empty options: %v", err)
	}
}
