package testenv

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBinaryNotFound is wrapped by every error that reports a missing server binary, so
// callers (tests, `shouwang demo`) can tell "install a package" apart from "the server
// failed to start" with errors.Is.
var ErrBinaryNotFound = errors.New("server binary not found")

// MissingBinaryError names the binary that was not found, where it was looked for and the
// Debian package that provides it, so the caller can print the exact apt-get command.
type MissingBinaryError struct {
	// Binary is the program that was looked for, e.g. "mariadbd" or "initdb".
	Binary string
	// Searched lists the directories (and "PATH") that were searched.
	Searched []string
	// Package is the Debian package that provides the binary.
	Package string
}

// Error says what is missing and how to install it.
func (e *MissingBinaryError) Error() string {
	return fmt.Sprintf("testenv: %s not found (searched %s): %v; install it with: %s",
		e.Binary, strings.Join(e.Searched, ", "), ErrBinaryNotFound, e.InstallCommand())
}

// Unwrap makes errors.Is(err, ErrBinaryNotFound) true.
func (e *MissingBinaryError) Unwrap() error { return ErrBinaryNotFound }

// InstallCommand is the shell command that installs the missing package on Debian.
func (e *MissingBinaryError) InstallCommand() string {
	return "apt-get install -y " + e.Package
}
