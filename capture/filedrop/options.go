package filedrop

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/shouwang/shouwang/internal/pii"
)

// Format names a delivery file format.
type Format string

// The supported delivery formats. FormatAuto picks one from the file extension, so one
// inbox may receive both CSV and XLSX files from a department that switches tools.
const (
	FormatAuto Format = ""
	FormatCSV  Format = "csv"
	FormatXLSX Format = "xlsx"
	FormatXLS  Format = "xls"
)

// Encoding names a CSV character encoding.
type Encoding string

// The CSV encodings. EncodingAuto detects: a UTF-8 BOM wins, then a prefix that is valid
// UTF-8 means UTF-8, else GB18030 (a superset of GBK and GB2312, what Excel on a Chinese
// Windows writes when "CSV" is chosen).
const (
	EncodingAuto    Encoding = ""
	EncodingUTF8    Encoding = "utf-8"
	EncodingGB18030 Encoding = "gb18030"
)

// DeliveryKind says how a delivery relates to the data already delivered.
type DeliveryKind string

// The delivery kinds. A full delivery replaces the dataset: it is diffed against the
// previous accepted delivery into c/u/d. An incremental delivery carries only changed
// rows (c/u, and d where the op column marks a deletion).
const (
	DeliveryFull        DeliveryKind = "full"
	DeliveryIncremental DeliveryKind = "incremental"
)

// DatasetOptions configures one dataset: one inbox folder into which one department
// drops files of one shape. internal/config maps the YAML file onto this struct.
type DatasetOptions struct {
	// Name is the dataset name; it becomes the envelope's table and schema name and the
	// last part of the raw topic.
	Name string
	// Department is the delivering department (e.g. "yibao", "canlian"); it is put into
	// the envelope's source.db so consumers can tell deliveries apart.
	Department string
	// Inbox is the folder the department drops files into (may be an SFTP mount).
	Inbox string
	// Archive, Rejected and Held receive processed, rejected and held files. Empty means
	// a sub-folder of Inbox ("archive", "rejected", "held").
	Archive, Rejected, Held string
	// StateDir holds the per-dataset state file (sorted key → row of the last accepted
	// delivery) and temporary sort runs; it must be on local disk with room for about
	// three times the largest delivery.
	StateDir string
	// Format of the files; FormatAuto decides by extension (.csv/.txt, .xlsx, .xls).
	Format Format
	// Encoding of CSV files; EncodingAuto detects it per file.
	Encoding Encoding
	// Delimiter of CSV files; 0 sniffs it from the header line among , ; tab |.
	Delimiter rune
	// Sheet is the XLSX sheet to read; empty means the first sheet.
	Sheet string
	// Delivery is full or incremental.
	Delivery DeliveryKind
	// Key lists the field names (values of Columns) forming the row's primary key.
	Key []string
	// Columns maps a header as written in the file (e.g. "身份证号") to a field name
	// (e.g. "id_number"). Every header in the file must be mapped, ignored or be the op
	// column; every mapped header must be present unless its field is in Optional.
	Columns map[string]string
	// Optional lists field names whose column may be missing from a file (the field is
	// then null).
	Optional []string
	// Ignore lists headers present in files that are dropped without error.
	Ignore []string
	// OpColumn is the header of the column marking deletions in incremental deliveries
	// (empty: none). Rows whose value is in DeleteValues become deletes.
	OpColumn string
	// DeleteValues are the op-column values meaning "delete"; default D, DEL, DELETE, 删除.
	DeleteValues []string
	// SettleAge is how long a file's size and modification time must stay unchanged
	// before it is read; 0 reads files as soon as they are seen (only safe with
	// RequireDoneMarker or an atomic rename by the sender).
	SettleAge time.Duration
	// RequireDoneMarker makes the connector wait for "<file>.done" beside the file.
	RequireDoneMarker bool
	// MaxDeleteShare is the circuit breaker of full deliveries: a delivery that would
	// delete more than this share (0..1) of the previous rows is held for an operator.
	// 0 means the default 0.2; 1 disables the breaker.
	MaxDeleteShare float64
	// MaxBadRowShare rejects a whole file when more than this share of its rows are bad
	// (a sign of a wrong layout rather than a few bad values). 0 means the default 0.5.
	MaxBadRowShare float64
	// SortBufferBytes bounds the memory used to sort a delivery (the rest spills to
	// sorted runs on disk). 0 means 64 MiB.
	SortBufferBytes int
	// Types gives the type of fields (values of Columns) whose spelling varies between
	// file formats: integer, decimal, date, datetime, month or text (the default). The
	// diff compares, stores and emits such values in the type's canonical form, so the
	// same delivery as CSV and as XLSX ("2657.0" and "2657", "2023/5/17" and a date
	// cell) changes nothing; a value that is not of its type is a bad row.
	Types map[string]ColumnType
	// MaxFieldBytes and MaxRowBytes bound one value and one row (UTF-8 bytes); a row
	// over either goes to the dead-letter stream naming the line, column and length.
	// 0 means 8 KiB and 64 KiB; at most 256 KiB each, so every event fits a Kafka
	// message with room to spare.
	MaxFieldBytes, MaxRowBytes int
	// SummaryLabels are the words of a totals row at the foot of a sheet (合计, 总计,
	// 小计 by default): a row whose key is empty and one of whose cells is such a word
	// is skipped (counted in the delivery's report) rather than a bad row.
	SummaryLabels []string
}

// Defaults and bounds of the row limits.
const (
	defaultMaxFieldBytes = 8 << 10
	defaultMaxRowBytes   = 64 << 10
	maxRowLimit          = 256 << 10
)

// Config configures one filedrop Source (one dataset).
type Config struct {
	// System is the configured source name, written to envelope source.system and used
	// in the raw topic name.
	System string
	// TopicPrefix is the deployment's topic prefix (e.g. "sc").
	TopicPrefix string
	// Dataset is the dataset this source reads.
	Dataset DatasetOptions
	// PollInterval is how often the inbox is scanned while idle; 0 means 2 s.
	PollInterval time.Duration
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// Metrics, when not nil, is updated (see NewMetrics).
	Metrics *Metrics
	// Now is the clock (tests replace it to drive settling); nil means time.Now.
	Now func() time.Time
	// Scrub protects the ID numbers and phone numbers found in a text before it is
	// kept at rest — dead-letter payloads and reasons, reports — (see internal/pii).
	// nil masks them; raw text is kept only when the deployment opts in by passing a
	// function that returns its argument.
	Scrub func(string) string
	// ReleaseCommand is the command an operator runs to release a held delivery, up to
	// the file name (e.g. "shouwang held release -c /etc/shouwang.yaml --source files
	// --dataset settlement"); reports print it. Empty: a generic hint is printed.
	ReleaseCommand string
	// OnCommitted, when set, is called once a delivery is committed (also one that
	// changed nothing), with the dataset and file names (watchdogs).
	OnCommitted func(dataset, file string)
}

// withDefaults returns a copy with defaults filled in, so the rest of the package can
// rely on every field being set.
func (d DatasetOptions) withDefaults() DatasetOptions {
	if d.Archive == "" {
		d.Archive = filepath.Join(d.Inbox, "archive")
	}
	if d.Rejected == "" {
		d.Rejected = filepath.Join(d.Inbox, "rejected")
	}
	if d.Held == "" {
		d.Held = filepath.Join(d.Inbox, "held")
	}
	if d.MaxDeleteShare == 0 {
		d.MaxDeleteShare = 0.2
	}
	if d.MaxBadRowShare == 0 {
		d.MaxBadRowShare = 0.5
	}
	if d.SortBufferBytes == 0 {
		d.SortBufferBytes = 64 << 20
	}
	if len(d.DeleteValues) == 0 {
		d.DeleteValues = []string{"D", "DEL", "DELETE", "删除"}
	}
	if d.Delivery == "" {
		d.Delivery = DeliveryFull
	}
	if d.MaxFieldBytes == 0 {
		d.MaxFieldBytes = defaultMaxFieldBytes
	}
	if d.MaxRowBytes == 0 {
		d.MaxRowBytes = defaultMaxRowBytes
	}
	if d.SummaryLabels == nil {
		d.SummaryLabels = []string{"合计", "总计", "小计"}
	}
	return d
}

// Validate reports every problem in the dataset options, each naming its field, so an
// operator can fix the configuration in one go.
func (d DatasetOptions) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("filedrop dataset %q: %s: %s", d.Name, field, fmt.Sprintf(format, args...)))
	}
	if d.Name == "" {
		bad("name", "required")
	}
	if d.Inbox == "" {
		bad("inbox", "required: the folder the department drops files into")
	}
	if d.StateDir == "" {
		bad("state_dir", "required: a local folder for the dataset's state file")
	}
	switch d.Format {
	case FormatAuto, FormatCSV, FormatXLSX, FormatXLS:
	default:
		bad("format", "unknown format %q (want csv, xlsx, xls or empty for by-extension)", d.Format)
	}
	switch d.Encoding {
	case EncodingAuto, EncodingUTF8, EncodingGB18030:
	default:
		bad("encoding", "unknown encoding %q (want utf-8, gb18030 or empty to detect)", d.Encoding)
	}
	switch d.Delimiter {
	case 0, ',', ';', '\t', '|':
	default:
		bad("delimiter", "unsupported delimiter %q (want , ; tab | or empty to sniff)", d.Delimiter)
	}
	switch d.Delivery {
	case "", DeliveryFull, DeliveryIncremental:
	default:
		bad("delivery", "unknown kind %q (want full or incremental)", d.Delivery)
	}
	if len(d.Columns) == 0 {
		bad("columns", "required: map each file header to a field name")
	}
	fields := map[string]bool{}
	for h, f := range d.Columns {
		if strings.TrimSpace(h) == "" || f == "" {
			bad("columns", "empty header or field name in mapping %q → %q", h, f)
		}
		if fields[f] {
			bad("columns", "field %q is mapped from two headers", f)
		}
		fields[f] = true
	}
	if len(d.Key) == 0 {
		bad("key", "required: the field(s) identifying a row")
	}
	for _, k := range d.Key {
		if !fields[k] {
			bad("key", "key field %q is not a value of columns", k)
		}
	}
	for _, o := range d.Optional {
		for _, k := range d.Key {
			if o == k {
				bad("optional", "key field %q cannot be optional", o)
			}
		}
	}
	if d.OpColumn != "" && d.Delivery != DeliveryIncremental {
		bad("op_column", "only incremental deliveries have an op column")
	}
	if d.MaxDeleteShare < 0 || d.MaxDeleteShare > 1 {
		bad("max_delete_share", "%v is outside 0..1", d.MaxDeleteShare)
	}
	if d.MaxBadRowShare < 0 || d.MaxBadRowShare > 1 {
		bad("max_bad_row_share", "%v is outside 0..1", d.MaxBadRowShare)
	}
	if d.SettleAge < 0 {
		bad("settle_age", "negative")
	}
	for f, t := range d.Types {
		if !fields[f] {
			bad("types", "field %q is not a value of columns", f)
		}
		if !validType(t) {
			bad("types", "field %q: unknown type %q (want one of %v)", f, t, ColumnTypes)
		}
	}
	if d.MaxFieldBytes < 0 || d.MaxFieldBytes > maxRowLimit {
		bad("max_field_bytes", "%d is outside 1..%d (0 means the default %d)", d.MaxFieldBytes, maxRowLimit, defaultMaxFieldBytes)
	}
	if d.MaxRowBytes < 0 || d.MaxRowBytes > maxRowLimit {
		bad("max_row_bytes", "%d is outside 1..%d (0 means the default %d)", d.MaxRowBytes, maxRowLimit, defaultMaxRowBytes)
	}
	if d.MaxFieldBytes > 0 && d.MaxRowBytes > 0 && d.MaxFieldBytes > d.MaxRowBytes {
		bad("max_field_bytes", "%d is larger than max_row_bytes %d", d.MaxFieldBytes, d.MaxRowBytes)
	}
	return errors.Join(errs...)
}

// defaultScrub is what Config.Scrub defaults to: mask.
var defaultScrub = pii.MaskText
