package filedrop

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// moveFile moves src into dir, keeping the name unless taken (then a numbered suffix
// is added, so an archive never overwrites an earlier delivery). It falls back to
// copy+remove across file systems (an SFTP mount and a local archive).
func moveFile(src, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	base := filepath.Base(src)
	dst := filepath.Join(dir, base)
	for i := 1; ; i++ {
		if _, err := os.Lstat(dst); errors.Is(err, os.ErrNotExist) {
			break
		}
		dst = filepath.Join(dir, fmt.Sprintf("%s.%d", base, i))
	}
	err := os.Rename(src, dst)
	if err == nil {
		return dst, nil
	}
	var le *os.LinkError
	if !errors.As(err, &le) || !errors.Is(le.Err, syscall.EXDEV) {
		return "", fmt.Errorf("move %s to %s: %w", src, dir, err)
	}
	if err := copyFile(src, dst); err != nil {
		return "", err
	}
	if err := os.Remove(src); err != nil {
		return "", fmt.Errorf("remove %s after copying it to %s: %w", src, dst, err)
	}
	return dst, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("sync %s: %w", dst, err)
	}
	return out.Close()
}

// writeReport writes "<file>.report.txt" beside a rejected or held file, naming
// line, column and reason of every problem found (up to maxReportProblems).
func writeReport(dst string, d *delivery, verdict string, now time.Time) error {
	var b strings.Builder
	fmt.Fprintf(&b, "file: %s\nsha256: %s\nverdict: %s\ntime: %s\nreason: %s\n", d.name, d.sha, verdict, now.Format(time.RFC3339), d.reason)
	if d.rows > 0 {
		fmt.Fprintf(&b, "rows read: %d, bad rows: %d\n", d.rows, d.badRows)
	}
	if d.outcome == outcomeHeld {
		fmt.Fprintf(&b, "previous rows: %d, would create %d, update %d, delete %d\n", d.prevRows, d.creates, d.updates, d.deletes)
		fmt.Fprintf(&b, "to apply it anyway: shouwang filedrop release --dataset <name> %s\n", d.name)
	}
	if d.problemCount > 0 {
		fmt.Fprintf(&b, "problems (%d", d.problemCount)
		if d.problemCount > len(d.problems) {
			fmt.Fprintf(&b, ", first %d listed", len(d.problems))
		}
		b.WriteString("):\n")
		for _, p := range d.problems {
			b.WriteString("  " + p.String() + "\n")
		}
	}
	if err := os.WriteFile(dst+".report.txt", []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write report for %s: %w", d.name, err)
	}
	return nil
}
