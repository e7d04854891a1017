package testenv

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// PeakRSS is the process's peak resident set size (VmHWM) as /proc reports it, for
// the figures of full-scale runs; "unknown" where /proc has none.
func PeakRSS() string {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// ResetPeakRSS starts PeakRSS afresh, so that a run's later phase is measured alone.
func ResetPeakRSS() error {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		return fmt.Errorf("testenv: reset the peak RSS: %w", err)
	}
	return nil
}
