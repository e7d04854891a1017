package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=…"; otherwise the VCS
// revision recorded by the Go toolchain is shown.
var version = "dev"

func init() {
	register("version", "print the version and build information", func(args []string) int {
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
