package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=…"; otherwise the VCS
// revision recorded by the Go toolchain is shown.
var version = "dev"

func init() {
	register("version", "print the version and build information", func(args []string) int {
		fs := newFlagSet("version", os.Stderr)
		h := helpText{usage: []string{"shouwang version"},
			about:    "Print the version, the VCS revision it was built from, and the platform.",
			examples: []string{"shouwang version"}}
		if code, ok := parseFlags(fs, h, args, os.Stdout, os.Stderr); !ok {
			return code
		}
		if fs.NArg() > 0 {
			usageError(os.Stderr, "version", h, "shouwang version takes no arguments")
			return 2
		}
		rev := ""
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					rev = s.Value
				}
			}
		}
		fmt.Printf("shouwang %s %s %s/%s\n", version, rev, runtime.GOOS, runtime.GOARCH)
		return 0
	})
}
