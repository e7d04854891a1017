package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// dirPrefix starts the name of every temporary directory this package creates, so the
// sweeper can find directories left behind by crashed test binaries.
const dirPrefix = "shouwang-testenv-"

// ownerFile holds the PID of the process that created a temporary directory.
const ownerFile = "owner.pid"

// reservedPorts are the well-known ports of the machine's own servers; a private
// instance must never take them even if the kernel offers them.
var reservedPorts = map[int]bool{3306: true, 5432: true, 9092: true, 33060: true}

// freePort asks the kernel for an unused loopback port. The port is released before the
// server binds it, so callers retry on a bind conflict.
func freePort() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("testenv: pick a free port on 127.0.0.1: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if err := l.Close(); err != nil {
			return 0, fmt.Errorf("testenv: release probe port %d: %w", port, err)
		}
		if !reservedPorts[port] {
			return port, nil
		}
	}
	return 0, errors.New("testenv: the kernel kept offering reserved ports (3306/5432/9092); check net.ipv4.ip_local_port_range")
}

// serverUser describes the OS account a server runs as. When the test runs as root the
// servers run as their Debian system users (mysql, postgres) because PostgreSQL refuses
// root and MariaDB should not write root-owned files; otherwise they run as the caller.
type serverUser struct {
	name     string
	uid, gid int
	// switchTo is true when the child must change credentials (we are root).
	switchTo bool
}

// lookupServerUser returns the account to run a server as: name when running as root,
// the current user otherwise.
func lookupServerUser(name string) (serverUser, error) {
	if os.Geteuid() != 0 {
		return serverUser{name: strconv.Itoa(os.Geteuid()), uid: os.Geteuid(), gid: os.Getegid()}, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return serverUser{}, fmt.Errorf("testenv: running as root, so the server must run as system user %q, but it does not exist (install the server package, which creates it): %w", name, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return serverUser{}, fmt.Errorf("testenv: user %q has non-numeric uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return serverUser{}, fmt.Errorf("testenv: user %q has non-numeric gid %q: %w", name, u.Gid, err)
	}
	return serverUser{name: name, uid: uid, gid: gid, switchTo: true}, nil
}

// sysProcAttr runs the child as su, in its own process group (so Kill can reach every
// process a server forks), and asks the kernel to send deathSig to it when the test
// binary dies, so servers never outlive the process that started them.
func (su serverUser) sysProcAttr(deathSig syscall.Signal) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: deathSig}
	if su.switchTo {
		attr.Credential = &syscall.Credential{Uid: uint32(su.uid), Gid: uint32(su.gid), NoSetGroups: true}
	}
	return attr
}

// chownTree gives the server user every file under dir (a no-op unless we are root).
func (su serverUser) chownTree(dir string) error {
	if !su.switchTo {
		return nil
	}
	return filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(path, su.uid, su.gid); err != nil {
			return fmt.Errorf("testenv: chown %s to %s: %w", path, su.name, err)
		}
		return nil
	})
}

// makeBaseDir creates the instance's temporary directory under parent (os.TempDir() when
// empty), records the owning PID for the sweeper, and hands the directory to su. It first
// removes directories abandoned by test binaries that died without cleaning up.
func makeBaseDir(parent, kind string, su serverUser) (string, error) {
	if parent == "" {
		parent = os.TempDir()
	}
	sweepStaleDirs(parent)
	dir, err := os.MkdirTemp(parent, dirPrefix+kind+"-")
	if err != nil {
		return "", fmt.Errorf("testenv: create temp dir under %s: %w", parent, err)
	}
	// The server user must be able to reach its directory through the parent; MkdirTemp
	// made it 0700 for us, which is right once it belongs to the server user.
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("testenv: write %s in %s: %w", ownerFile, dir, err)
	}
	if su.switchTo {
		if err := checkTraversable(parent); err != nil {
			_ = os.RemoveAll(dir)
			return "", err
		}
	}
	if err := su.chownTree(dir); err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// checkTraversable fails early, with advice, when a system user could not reach dir
// because an ancestor lacks the other-execute bit (e.g. TMPDIR under /root).
func checkTraversable(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("testenv: resolve %s: %w", dir, err)
	}
	for p := abs; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("testenv: stat %s: %w", p, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("testenv: %s is not traversable by other users (mode %v), so the server's system user cannot reach its temp dir under %s; set TMPDIR=/tmp or the BaseDir option", p, fi.Mode().Perm(), abs)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// sweepStaleDirs removes temp dirs whose owning test binary is gone. Errors are ignored:
// sweeping is best effort and another binary may be sweeping at the same time.
func sweepStaleDirs(parent string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), dirPrefix) {
			continue
		}
		dir := filepath.Join(parent, e.Name())
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		_ = os.RemoveAll(dir)
	}
}

// processAlive reports whether pid exists (EPERM means it exists but is not ours).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// findBinary looks for one of names in PATH and then in dirs, in that order, and returns
// the first hit. The error is a *MissingBinaryError naming pkg.
func findBinary(pkg string, dirs []string, names ...string) (string, error) {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	for _, d := range dirs {
		for _, n := range names {
			p := filepath.Join(d, n)
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	return "", &MissingBinaryError{
		Binary:   strings.Join(names, " or "),
		Searched: append([]string{"PATH"}, dirs...),
		Package:  pkg,
	}
}

// process is a started server process whose exit is observed by a goroutine.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid after done is closed
}

// spawner starts every server from one goroutine locked to its OS thread for the life of
// the process. Pdeathsig fires when the *thread* that forked the child exits, and the Go
// runtime may retire other threads; this one never goes away.
var spawner struct {
	once sync.Once
	reqs chan spawnReq
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func spawn(cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for r := range spawner.reqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	r := spawnReq{cmd: cmd, done: make(chan error, 1)}
	spawner.reqs <- r
	return <-r.done
}

// startProcess starts cmd and watches for its exit.
func startProcess(cmd *exec.Cmd) (*process, error) {
	if err := spawn(cmd); err != nil {
		return nil, fmt.Errorf("testenv: start %s: %w", cmd.Path, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signalGroup sends sig to the process group the server leads (it was started with
// Setpgid), reaching forked children such as PostgreSQL backends too.
func (p *process) signalGroup(sig syscall.Signal) {
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}

// stop sends sig and waits up to grace for the exit, then kills the whole group.
func (p *process) stop(sig syscall.Signal, grace time.Duration) error {
	if p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		// Reap any stragglers in the group (PostgreSQL backends exit on their own once
		// the postmaster is gone, but do not leave that to chance).
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		return nil
	case <-time.After(grace):
	}
	p.kill()
	return fmt.Errorf("testenv: %s (pid %d) did not stop within %v after %v; killed it", filepath.Base(p.cmd.Path), p.cmd.Process.Pid, grace, sig)
}

// kill crashes the server: it freezes the leader (so it cannot fork), SIGKILLs every
// descendant and the leader, and waits until all of them are gone. Descendants are
// found through /proc because PostgreSQL backends leave the process group (setsid), and
// waiting matters because a restart on the same data refuses to start while a killed
// backend still holds shared memory.
func (p *process) kill() {
	if p.exited() {
		return
	}
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	desc := descendants(pid)
	for _, d := range desc {
		_ = syscall.Kill(d, syscall.SIGKILL)
	}
	p.signalGroup(syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	<-p.done
	waitGone(desc, 10*time.Second)
}

// descendants lists the PIDs of all processes below pid, read from /proc.
func descendants(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(child); ok {
			children[ppid] = append(children[ppid], child)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, c := range children[cur] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// parentOf reads the parent PID from /proc/<pid>/stat; ok is false for processes that
// are gone or already zombies (they hold no resources any more).
func parentOf(pid int) (ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// Format: pid (comm) state ppid ...; comm may contain spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 || f[0] == "Z" || f[0] == "X" {
		return 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return ppid, err == nil
}

// waitGone waits until none of pids is a live (non-zombie) process, or timeout passes.
func waitGone(pids []int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		for time.Now().Before(deadline) {
			if _, alive := parentOf(pid); !alive {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// logTail returns the last n lines of a log file, for error messages.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log %s: %v)", path, err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// isBindConflict recognises the servers' "port already taken" messages, which mean
// another process grabbed the probed port first and a new port should be tried.
func isBindConflict(logText string) bool {
	for _, s := range []string{"Address already in use", "address already in use", "Bind on TCP/IP port", "could not bind IPv4 address", "could not create any TCP/IP sockets"} {
		if strings.Contains(logText, s) {
			return true
		}
	}
	return false
}

// maxSocketPath is the longest unix socket path Linux accepts (sun_path is 108 bytes).
const maxSocketPath = 107

// checkSocketPath fails early with advice when a socket path would be too long, which
// servers otherwise report obscurely at start.
func checkSocketPath(path string) error {
	if len(path) > maxSocketPath {
		return fmt.Errorf("testenv: unix socket path %s is %d bytes, over the %d-byte limit; use a shorter TMPDIR or BaseDir", path, len(path), maxSocketPath)
	}
	return nil
}

// startRetryingBindConflicts runs start until it succeeds or fails for another reason
// than errBindConflict: the old process may hold the port for a moment after it exited.
func startRetryingBindConflicts(ctx context.Context, timeout time.Duration, start func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var err error
	for range 10 {
		err = start(ctx)
		if !errors.Is(err, errBindConflict) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
	return err
}
