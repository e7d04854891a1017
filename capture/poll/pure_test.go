package poll

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func validOptions() Options {
	return Options{Name: "yibao", TopicPrefix: "sc", Driver: DriverPostgres, DSN: "postgres://x", StateDSN: "postgres://y",
		Queries: []QueryOptions{{Name: "insured", Relation: "yibao.v_insured", Key: []string{"id"}, Mode: ModeTimestamp, Column: "updated_at"}}}
}

func TestOptionsValidate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Options)
		want   string // substring of the error; empty means valid
	}{
		{"valid", func(*Options) {}, ""},
		{"bad name", func(o *Options) { o.Name = "Yi-Bao" }, "name: must match"},
		{"no prefix", func(o *Options) { o.TopicPrefix = "" }, "topic_prefix"},
		{"bad driver", func(o *Options) { o.Driver = "oracle" }, `unknown driver "oracle"`},
		{"no dsn", func(o *Options) { o.DSN = "" }, "dsn: required"},
		{"no state dsn", func(o *Options) { o.StateDSN = "" }, "state_dsn"},
		{"no queries", func(o *Options) { o.Queries = nil }, "queries: at least one"},
		{"injection in relation", func(o *Options) { o.Queries[0].Relation = "v; DROP TABLE x" }, "queries[0].relation"},
		{"three-part relation", func(o *Options) { o.Queries[0].Relation = "a.b.c" }, "queries[0].relation"},
		{"chinese identifier ok", func(o *Options) { o.Queries[0].Relation = "医保.参保视图" }, ""},
		{"no key", func(o *Options) { o.Queries[0].Key = nil }, "queries[0].key: required"},
		{"quoted key", func(o *Options) { o.Queries[0].Key = []string{`id"`} }, `column "id\"" is not a plain identifier`},
		{"duplicate key", func(o *Options) { o.Queries[0].Key = []string{"id", "id"} }, "listed twice"},
		{"bad mode", func(o *Options) { o.Queries[0].Mode = "bulk" }, `unknown mode "bulk"`},
		{"bad column", func(o *Options) { o.Queries[0].Column = "1x" }, "queries[0].column"},
		{"lag in incrementing", func(o *Options) {
			o.Queries[0].Mode, o.Queries[0].SafetyLag = ModeIncrementing, time.Second
		}, "safety_lag"},
		{"share > 1", func(o *Options) { o.Queries[0].DeleteDetection.MaxDeleteShare = 1.5 }, "max_delete_share"},
		{"duplicate query", func(o *Options) { o.Queries = append(o.Queries, o.Queries[0]) }, `queries[1].name: "insured" is used twice`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := validOptions()
			o.Queries = append([]QueryOptions(nil), o.Queries...)
			c.mutate(&o)
			_, err := New(o)
			if c.want == "" {
				if err != nil {
					t.Fatalf("New = %v, want valid", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New = %v, want error containing %q", err, c.want)
			}
		})
	}
}

func TestConvert(t *testing.T) {
	ts := time.Date(2024, 5, 1, 10, 20, 30, 123456000, time.UTC)
	cases := []struct {
		dbType string
		in     any
		want   any
		reason string // dead-letter reason when conversion must fail
	}{
		{"INT8", int64(7), int64(7), ""},
		{"BIGINT", []byte("-42"), int64(-42), ""},
		{"UNSIGNED BIGINT", []byte("18446744073709551615"), uint64(math.MaxUint64), ""},
		{"INT", []byte("x"), nil, "bad_number"},
		{"NUMERIC", "1234567890123456789.01", "1234567890123456789.01", ""},
		{"DECIMAL", []byte("1.50"), "1.50", ""},
		{"NUMERIC", "NaN", nil, "bad_number"},
		{"FLOAT8", 1.5, 1.5, ""},
		{"FLOAT8", math.NaN(), nil, "bad_number"},
		{"DOUBLE", []byte("2.25"), 2.25, ""},
		{"BOOL", true, true, ""},
		{"DATE", ts, "2024-05-01", ""},
		{"DATE", []byte("2024-05-01"), "2024-05-01", ""},
		{"DATE", []byte("0000-00-00"), nil, "zero_date"},
		{"DATE", time.Time{}, "0001-01-01", ""}, // a real PostgreSQL date
		{"DATE", "infinity", nil, "bad_time"},
		{"TIMESTAMP", ts, "2024-05-01 10:20:30.123456", ""},
		{"DATETIME", []byte("2024-05-01 10:20:30.5"), "2024-05-01 10:20:30.5", ""},
		{"DATETIME", []byte("0000-00-00 00:00:00"), nil, "zero_date"},
		{"TIMESTAMPTZ", ts.In(time.FixedZone("CST", 8*3600)), "2024-05-01T10:20:30.123456Z", ""},
		{"VARCHAR", []byte("张三"), "张三", ""},
		{"TEXT", "李四", "李四", ""},
		{"VARCHAR", []byte{0xd5, 0xc5}, nil, "invalid_text"}, // GBK bytes, not UTF-8
		{"BYTEA", []byte{0xff, 0x00}, []byte{0xff, 0x00}, ""},
		{"JSONB", []byte(`{"a":1}`), `{"a":1}`, ""},
		{"UUID", "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "6ba7b810-9dad-11d1-80b4-00c04fd430c8", ""},
		{"TEXT", nil, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.dbType, func(t *testing.T) {
			got, err := convert(column{name: "c", kind: kindOf(c.dbType), dbType: c.dbType}, c.in)
			if c.reason != "" {
				var bv *badValue
				if !errors.As(err, &bv) || bv.reason != c.reason || !errors.Is(err, errBadValue) {
					t.Fatalf("convert(%s, %v) = %v, %v; want dead letter %s", c.dbType, c.in, got, err, c.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("convert(%s, %v): %v", c.dbType, c.in, err)
			}
			if b, ok := c.want.([]byte); ok {
				if string(got.([]byte)) != string(b) {
					t.Fatalf("got %v want %v", got, b)
				}
				return
			}
			if got != c.want {
				t.Fatalf("convert(%s, %#v) = %#v, want %#v", c.dbType, c.in, got, c.want)
			}
		})
	}
}

func TestPositionRoundTrip(t *testing.T) {
	d, err := parsePosition([]byte(`{"v":1,"seq":3,"queries":{"q":{"watermark":"2024-05-01 10:00:00","key":[12345678901234567]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := textOf(d.Queries["q"].Key[0]); got != "12345678901234567" {
		t.Fatalf("key lost precision: %s", got)
	}
	if _, err := parsePosition([]byte(`{"v":9}`)); err == nil || !strings.Contains(err.Error(), "unsupported version 9") {
		t.Fatalf("version 9 accepted: %v", err)
	}
}

func FuzzParsePosition(f *testing.F) {
	f.Add([]byte(`{"v":1,"seq":1,"queries":{"q":{"watermark":1,"key":[]}}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parsePosition(b)
		if err != nil {
			return
		}
		if _, err := d.clone().encode(); err != nil {
			t.Fatalf("a parsed position does not encode: %v", err)
		}
	})
}

func TestConvertMySQLZeroTime(t *testing.T) {
	for _, k := range []kind{kDate, kTimestamp} {
		_, err := convert(column{name: "birth", kind: k, mysql: true}, time.Time{})
		var bv *badValue
		if !errors.As(err, &bv) || bv.reason != "zero_date" {
			t.Fatalf("kind %d: zero time from go-sql-driver = %v, want zero_date dead letter", k, err)
		}
	}
}
