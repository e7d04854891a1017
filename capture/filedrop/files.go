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

// writeReport writes "<file>.report.txt" beside a rejected, held or accepted file
// (an accepted one only when it had bad rows or withheld deletes), naming line,
// column and reason of every problem found (up to maxReportProblems). release is
// the command that releases a held file, up to its name.
func writeReport(dst string, d *delivery, verdict string, now time.Time, release string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "file: %s\nsha256: %s\nverdict: %s\ntime: %s\n", d.name, d.sha, verdict, now.Format(time.RFC3339))
	if d.reason != "" {
		fmt.Fprintf(&b, "reason: %s\n", d.reason)
	}
	if d.rows > 0 {
		fmt.Fprintf(&b, "rows read: %d, bad rows: %d\n", d.rows, d.badRows)
	}
	if d.outcome == outcomeReady {
		fmt.Fprintf(&b, "changes: %d created, %d updated, %d deleted, %d unchanged; %d rows sent to the dead-letter topic\n", d.creates, d.updates, d.deletes, d.unchanged, d.deads)
		if d.kept > 0 {
			fmt.Fprintf(&b, "previous versions kept for bad rows: %d (a bad row never changes or deletes what was delivered before)\n", d.kept)
		}
	}
	if d.withheld > 0 {
		fmt.Fprintf(&b, "deletes withheld: %d previous rows are missing from this file, but %d bad rows have no readable key and may be some of them; the rows stay until a delivery without such rows (fix the rows and deliver the file again)\n", d.withheld, d.unkeyed)
	}
	if d.summaryRows > 0 {
		fmt.Fprintf(&b, "totals rows skipped (合计/总计/小计 with an empty key): %d\n", d.summaryRows)
	}
	if d.dupIdentical > 0 {
		fmt.Fprintf(&b, "identical duplicate rows ignored: %d\n", d.dupIdentical)
	}
	if d.outcome == outcomeHeld {
		fmt.Fprintf(&b, "previous rows: %d, would create %d, update %d, delete %d\n", d.prevRows, d.creates, d.updates, d.deletes)
		if release == "" {
			release = "shouwang held release -c CONFIG --source SOURCE --dataset DATASET"
		}
		fmt.Fprintf(&b, "to apply it anyway: %s %s\n", release, d.name)
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
	if err := os.WriteFile(dst+".report.txt", []byte(d.scrub(b.String())), 0o644); err != nil {
		return fmt.Errorf("write report for %s: %w", d.name, err)
	}
	return nil
}
