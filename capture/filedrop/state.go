package filedrop

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// The state file of a dataset holds the rows of the last accepted delivery sorted by
// key (key, normalised row values; the values double as the row hash: equal bytes mean
// an unchanged row), followed by a JSON trailer (fields, row count, checksums of the
// accepted files) and a fixed footer. One rename replaces it, so the rows and the
// "accepted" record change together or not at all.
const (
	stateMagic   = "SWFDST01"
	footerSize   = 16 // trailer length (8 bytes) + magic
	stateVersion = 1
	// maxAccepted bounds the checksum history used to spot re-deliveries.
	maxAccepted = 1000
)

// stateTrailer describes a state file.
type stateTrailer struct {
	V       int      `json:"v"`
	Dataset string   `json:"dataset"`
	Fields  []string `json:"fields"`
	// Types are the field types the rows were normalised with (text fields absent);
	// when they change, the next delivery re-normalises the stored rows to compare.
	Types    map[string]ColumnType `json:"types,omitempty"`
	Rows     int64                 `json:"rows"`
	Accepted []acceptedFile        `json:"accepted"`
}

// acceptedFile records one committed delivery.
type acceptedFile struct {
	SHA256 string `json:"sha256"`
	File   string `json:"file"`
	AtMs   int64  `json:"at_ms"`
}

func (t *stateTrailer) accepted(sha string) bool {
	for _, a := range t.Accepted {
		if a.SHA256 == sha {
			return true
		}
	}
	return false
}

func statePath(dir, dataset string) string {
	return filepath.Join(dir, dataset+".state")
}

// readTrailer loads the trailer of a state file. A missing file is an empty state.
func readTrailer(path, dataset string) (stateTrailer, int64, error) {
	t := stateTrailer{V: stateVersion, Dataset: dataset}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return t, 0, nil
	}
	if err != nil {
		return t, 0, fmt.Errorf("open state file %s: %w", path, err)
	}
	defer f.Close()
	return readTrailerFrom(f, path, dataset)
}

func readTrailerFrom(f *os.File, path, dataset string) (stateTrailer, int64, error) {
	var t stateTrailer
	st, err := f.Stat()
	if err != nil {
		return t, 0, fmt.Errorf("stat state file %s: %w", path, err)
	}
	size := st.Size()
	if size < footerSize {
		return t, 0, fmt.Errorf("state file %s is truncated (%d bytes); restore it from backup or remove it to re-baseline the dataset", path, size)
	}
	var foot [footerSize]byte
	if _, err := f.ReadAt(foot[:], size-footerSize); err != nil {
		return t, 0, fmt.Errorf("read state footer %s: %w", path, err)
	}
	if string(foot[8:]) != stateMagic {
		return t, 0, fmt.Errorf("state file %s has no valid footer; restore it from backup or remove it to re-baseline the dataset", path)
	}
	tl := int64(binary.BigEndian.Uint64(foot[:8]))
	if tl <= 0 || tl > size-footerSize {
		return t, 0, fmt.Errorf("state file %s: bad trailer length %d", path, tl)
	}
	buf := make([]byte, tl)
	if _, err := f.ReadAt(buf, size-footerSize-tl); err != nil {
		return t, 0, fmt.Errorf("read state trailer %s: %w", path, err)
	}
	if err := json.Unmarshal(buf, &t); err != nil {
		return t, 0, fmt.Errorf("decode state trailer %s: %w", path, err)
	}
	if t.V != stateVersion || t.Dataset != dataset {
		return t, 0, fmt.Errorf("state file %s is version %d of dataset %q, want version %d of %q", path, t.V, t.Dataset, stateVersion, dataset)
	}
	return t, size - footerSize - tl, nil
}

// stateReader iterates the rows of a state file in key order.
type stateReader struct {
	f       *os.File
	r       *bufio.Reader
	trailer stateTrailer
	key     []byte
	blob    []byte
}

// openState opens the state file; a missing one yields an empty reader.
func openState(path, dataset string) (*stateReader, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return &stateReader{trailer: stateTrailer{V: stateVersion, Dataset: dataset}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open state file %s: %w", path, err)
	}
	t, n, err := readTrailerFrom(f, path, dataset)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &stateReader{f: f, r: bufio.NewReaderSize(io.NewSectionReader(f, 0, n), 256<<10), trailer: t}, nil
}

// next returns the next row; key and blob are valid until the following call.
func (s *stateReader) next() (key, blob []byte, ok bool, err error) {
	if s.r == nil {
		return nil, nil, false, nil
	}
	kl, err := binary.ReadUvarint(s.r)
	if err == io.EOF {
		return nil, nil, false, nil
	}
	if err != nil {
		return nil, nil, false, fmt.Errorf("read state: %w", err)
	}
	s.key = slices.Grow(s.key[:0], int(kl))[:kl]
	if _, err := io.ReadFull(s.r, s.key); err != nil {
		return nil, nil, false, fmt.Errorf("read state: %w", err)
	}
	bl, err := binary.ReadUvarint(s.r)
	if err != nil {
		return nil, nil, false, fmt.Errorf("read state: %w", err)
	}
	s.blob = slices.Grow(s.blob[:0], int(bl))[:bl]
	if _, err := io.ReadFull(s.r, s.blob); err != nil {
		return nil, nil, false, fmt.Errorf("read state: %w", err)
	}
	return s.key, s.blob, true, nil
}

func (s *stateReader) close() error {
	if s.f != nil {
		return s.f.Close()
	}
	return nil
}

// stateWriter writes a new state file (to a temporary path, renamed on commit).
type stateWriter struct {
	f    *os.File
	w    *bufio.Writer
	n    int64
	rows int64
	buf  []byte
}

func createState(path string) (*stateWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create state file: %w", err)
	}
	return &stateWriter{f: f, w: bufio.NewWriterSize(f, 1<<20)}, nil
}

func (s *stateWriter) add(key, blob []byte) error {
	s.buf = binary.AppendUvarint(s.buf[:0], uint64(len(key)))
	s.buf = append(s.buf, key...)
	s.buf = binary.AppendUvarint(s.buf, uint64(len(blob)))
	s.buf = append(s.buf, blob...)
	n, err := s.w.Write(s.buf)
	s.n += int64(n)
	s.rows++
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// finish writes the trailer and footer and syncs the file to disk, so a rename
// after it publishes a complete file.
func (s *stateWriter) finish(t stateTrailer) error {
	t.Rows = s.rows
	tb, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encode state trailer: %w", err)
	}
	var foot [footerSize]byte
	binary.BigEndian.PutUint64(foot[:8], uint64(len(tb)))
	copy(foot[8:], stateMagic)
	if _, err := s.w.Write(tb); err != nil {
		return fmt.Errorf("write state trailer: %w", err)
	}
	if _, err := s.w.Write(foot[:]); err != nil {
		return fmt.Errorf("write state footer: %w", err)
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("flush state: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync state: %w", err)
	}
	return s.f.Close()
}

func (s *stateWriter) abort() { s.f.Close(); os.Remove(s.f.Name()) }
