package deploy

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"
)

// workerRoles are the roles deployed one process (unit instance, container,
// Deployment) each.
var workerRoles = []string{"capture", "transform", "sink", "check"}

// requireTools reports whether a missing tool must fail a test rather than skip it,
// as internal/testenv treats servers: in CI, or with SHOUWANG_REQUIRE_SERVERS=1.
func requireTools() bool {
	return os.Getenv("CI") != "" || os.Getenv("SHOUWANG_REQUIRE_SERVERS") == "1"
}

func lookTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := name + " not found (Debian package " + pkg + "; .ci/install-deps installs it)"
	if requireTools() {
		t.Fatalf("%s; failing because CI or SHOUWANG_REQUIRE_SERVERS=1 is set", msg)
	}
	t.Skipf("%s; skipping (set SHOUWANG_REQUIRE_SERVERS=1 to fail instead)", msg)
	return ""
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binOut  []byte
)

// shouwangBinary builds cmd/shouwang once per test run, so that the manifests are
// checked against the real command line rather than a copy of it.
func shouwangBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "shouwang-deploy-test-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "shouwang")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/shouwang")
		cmd.Dir = repoRoot
		binOut, binErr = cmd.CombinedOutput()
	})
	if binErr != nil {
		t.Fatalf("go build ./cmd/shouwang: %v\n%s", binErr, binOut)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// cli is what the real binary says about itself.
type cli struct {
	commands map[string]bool // top-level subcommands
	runFlags map[string]bool // flags of `shouwang run`
	roles    map[string]bool // values of run --role
}

var (
	cliOnce sync.Once
	cliInfo cli
)

func shouwangCLI(t *testing.T) cli {
	t.Helper()
	bin := shouwangBinary(t)
	cliOnce.Do(func() {
		cliInfo = cli{commands: map[string]bool{}, runFlags: map[string]bool{}, roles: map[string]bool{}}
		out, _ := exec.Command(bin, "--help").CombinedOutput()
		inCommands := false
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "commands:":
				inCommands = true
			case inCommands && strings.HasPrefix(line, "  "):
				cliInfo.commands[strings.Fields(line)[0]] = true
			case inCommands:
				inCommands = false
			}
		}
		out, _ = exec.Command(bin, "run", "--help").CombinedOutput()
		for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z-]+)`).FindAllStringSubmatch(string(out), -1) {
			cliInfo.runFlags[m[1]] = true
		}
		if m := regexp.MustCompile(`--role ([a-z|]+)\]`).FindStringSubmatch(string(out)); m != nil {
			for _, r := range strings.Split(m[1], "|") {
				cliInfo.roles[r] = true
			}
		}
	})
	if !cliInfo.commands["run"] || !cliInfo.runFlags["role"] || len(cliInfo.roles) == 0 {
		t.Fatalf("could not read the command line from shouwang --help / run --help: %+v", cliInfo)
	}
	return cliInfo
}

// checkRunArgs checks `run --role R -c FILE [flags]` against the real command line and
// returns R and FILE.
func checkRunArgs(t *testing.T, where string, args []string) (role, config string) {
	t.Helper()
	c := shouwangCLI(t)
	if len(args) == 0 || !c.commands[args[0]] {
		t.Errorf("%s: %q is not a shouwang subcommand (have %v)", where, args, c.commands)
		return "", ""
	}
	if args[0] != "run" {
		return "", ""
	}
	for i := 1; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			t.Errorf("%s: unexpected argument %q", where, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !c.runFlags[name] {
			t.Errorf("%s: shouwang run has no flag %q", where, a)
			continue
		}
		if name == "exit-on-startup-failure" {
			continue
		}
		if !hasValue {
			if i+1 >= len(args) {
				t.Errorf("%s: flag %s needs a value", where, a)
				break
			}
			i++
			value = args[i]
		}
		switch name {
		case "role":
			role = value
		case "c":
			config = value
		}
	}
	if role != "%i" && !c.roles[role] {
		t.Errorf("%s: --role %q is not one of %v", where, role, c.roles)
	}
	if config == "" {
		t.Errorf("%s: no -c configuration file", where)
	}
	return role, config
}

// unitFile reads a systemd unit into section -> key -> values.
func unitFile(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := map[string]map[string][]string{}
	section := ""
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a unit line: %q", path, i+1, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// TestSystemdUnit: the templated unit runs a real subcommand with real flags for every
// role, restarts on failure, takes its secrets from an EnvironmentFile and is hardened.
func TestSystemdUnit(t *testing.T) {
	path := "systemd/shouwang@.service"
	u := unitFile(t, path)
	svc := u["Service"]
	if len(svc["ExecStart"]) != 1 {
		t.Fatalf("%s: want one ExecStart, have %q", path, svc["ExecStart"])
	}
	execStart := strings.Fields(svc["ExecStart"][0])
	if filepath.Base(execStart[0]) != "shouwang" {
		t.Errorf("%s: ExecStart runs %s, want the shouwang binary", path, execStart[0])
	}
	role, config := checkRunArgs(t, path, execStart[1:])
	if role != "%i" {
		t.Errorf("%s: ExecStart passes --role %q, want the instance name %%i", path, role)
	}
	if config != "/etc/shouwang/shouwang.yaml" {
		t.Errorf("%s: -c %q, want /etc/shouwang/shouwang.yaml", path, config)
	}
	roles := shouwangCLI(t).roles
	for _, r := range workerRoles {
		if !roles[r] {
			t.Errorf("shouwang run --role does not accept %q, which shouwang@%s would run", r, r)
		}
	}
	want := map[string]string{
		"Restart": "on-failure", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
		"ProtectHome": "yes", "PrivateTmp": "yes", "StateDirectory": "shouwang", "User": "shouwang",
	}
	for k, v := range want {
		if got := svc[k]; len(got) == 0 || got[len(got)-1] != v {
			t.Errorf("%s: %s=%q, want %q", path, k, got, v)
		}
	}
	if !containsPrefix(svc["EnvironmentFile"], "/etc/shouwang/") {
		t.Errorf("%s: no EnvironmentFile under /etc/shouwang for the secrets: %q", path, svc["EnvironmentFile"])
	}
	if len(u["Install"]["WantedBy"]) == 0 {
		t.Errorf("%s: no [Install] WantedBy", path)
	}

	// systemd's own parser, where it is installed (not required: CI images need not
	// have systemd). The binary path is swapped for the freshly built one, because
	// verify checks that ExecStart is executable.
	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		dir := t.TempDir()
		b, _ := os.ReadFile(path)
		unit := strings.ReplaceAll(string(b), execStart[0], shouwangBinary(t))
		inst := filepath.Join(dir, "shouwang@capture.service")
		if err := os.WriteFile(inst, []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := execCommand(sa, "verify", inst)
		if err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("systemd-analyze verify %s: %v\n%s", path, err, out)
		}
	} else {
		t.Log("systemd-analyze not installed: unit checked by this test's parser only")
	}
}

func execCommand(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

func containsPrefix(vs []string, prefix string) bool {
	for _, v := range vs {
		if strings.HasPrefix(strings.TrimPrefix(v, "-"), prefix) {
			return true
		}
	}
	return false
}

// configCheck runs `shouwang config check` on a configuration with the secrets it
// names set to placeholders.
func configCheck(t *testing.T, where, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(shouwangBinary(t), "config", "check", "-c", path)
	cmd.Env = os.Environ()
	for _, m := range regexp.MustCompile(`\$\{([A-Z0-9_]+)\}`).FindAllStringSubmatch(string(b), -1) {
		cmd.Env = append(cmd.Env, m[1]+"=placeholder")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s: shouwang config check: %v\n%s", where, err, out)
	}
}

// metricsPort is the port of a configuration's metrics.addr.
func metricsPort(t *testing.T, where, config string) string {
	t.Helper()
	var c struct {
		Metrics struct {
			Addr string `yaml:"addr"`
		} `yaml:"metrics"`
	}
	if err := yaml.Unmarshal([]byte(config), &c); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	_, port, err := net.SplitHostPort(c.Metrics.Addr)
	if err != nil {
		t.Fatalf("%s: metrics.addr %q: %v", where, c.Metrics.Addr, err)
	}
	return port
}

type k8sContainer struct {
	Name  string   `yaml:"name"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	EnvFrom []struct {
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sDoc struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				Containers []k8sContainer `yaml:"containers"`
				Volumes    []struct {
					Name      string `yaml:"name"`
					ConfigMap *struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
		MaxUnavailable any `yaml:"maxUnavailable"`
		MinAvailable   any `yaml:"minAvailable"`
	} `yaml:"spec"`
}

func k8sDocs(t *testing.T) []k8sDoc {
	t.Helper()
	files, _ := filepath.Glob("k8s/*.yaml")
	if len(files) == 0 {
		t.Fatal("no manifests in k8s/")
	}
	var docs []k8sDoc
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(fh)
		for {
			var d k8sDoc
			if err := dec.Decode(&d); err != nil {
				if err.Error() != "EOF" {
					t.Fatalf("%s: %v", f, err)
				}
				break
			}
			docs = append(docs, d)
		}
		fh.Close()
	}
	return docs
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestKubernetesManifests: one Deployment per role running a real command line, with
// liveness /healthz and readiness /readyz on the port of the ConfigMap's metrics.addr,
// the configuration mounted from the ConfigMap, secrets from a Secret, and a
// PodDisruptionBudget selecting each Deployment's pods. The ConfigMap's configuration
// passes `shouwang config check`.
func TestKubernetesManifests(t *testing.T) {
	docs := k8sDocs(t)
	configMaps := map[string]k8sDoc{}
	var pdbs []k8sDoc
	for _, d := range docs {
		switch d.Kind {
		case "ConfigMap":
			configMaps[d.Metadata.Name] = d
		case "PodDisruptionBudget":
			pdbs = append(pdbs, d)
		}
	}
	seen := map[string]bool{}
	for _, d := range docs {
		if d.Kind != "Deployment" {
			continue
		}
		where := "Deployment " + d.Metadata.Name
		if !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels) {
			t.Errorf("%s: selector %v does not select its pods %v", where, d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels)
		}
		cs := d.Spec.Template.Spec.Containers
		if len(cs) != 1 {
			t.Errorf("%s: want one container, have %d", where, len(cs))
			continue
		}
		c := cs[0]
		role, config := checkRunArgs(t, where, c.Args)
		seen[role] = true

		// The configuration file comes from a ConfigMap volume.
		var cm *k8sDoc
		for _, vm := range c.VolumeMounts {
			mounted := vm.MountPath // a subPath mount is the file itself
			if vm.SubPath == "" {
				mounted = filepath.Join(vm.MountPath, filepath.Base(config))
			}
			if mounted != config {
				continue
			}
			for _, v := range d.Spec.Template.Spec.Volumes {
				if v.Name == vm.Name && v.ConfigMap != nil {
					if m, ok := configMaps[v.ConfigMap.Name]; ok {
						cm = &m
					}
				}
			}
		}
		if cm == nil {
			t.Errorf("%s: -c %s is not mounted from a ConfigMap of k8s/", where, config)
			continue
		}
		text, ok := cm.Data[filepath.Base(config)]
		if !ok {
			t.Errorf("%s: ConfigMap %s has no key %s", where, cm.Metadata.Name, filepath.Base(config))
			continue
		}
		port := metricsPort(t, "ConfigMap "+cm.Metadata.Name, text)
		portNames := map[string]string{}
		for _, p := range c.Ports {
			portNames[p.Name] = strconv.Itoa(p.ContainerPort)
		}
		for _, pr := range []struct {
			name  string
			probe *k8sProbe
			path  string
		}{{"livenessProbe", c.LivenessProbe, "/healthz"}, {"readinessProbe", c.ReadinessProbe, "/readyz"}} {
			if pr.probe == nil {
				t.Errorf("%s: no %s", where, pr.name)
				continue
			}
			if pr.probe.HTTPGet.Path != pr.path {
				t.Errorf("%s: %s path %q, want %s", where, pr.name, pr.probe.HTTPGet.Path, pr.path)
			}
			p := ""
			switch v := pr.probe.HTTPGet.Port.(type) {
			case string:
				p = portNames[v]
			case int:
				p = strconv.Itoa(v)
			}
			if p != port {
				t.Errorf("%s: %s port %v is %q, but metrics.addr listens on %s", where, pr.name, pr.probe.HTTPGet.Port, p, port)
			}
		}
		hasSecret := false
		for _, e := range c.EnvFrom {
			hasSecret = hasSecret || (e.SecretRef != nil && e.SecretRef.Name != "")
		}
		if !hasSecret {
			t.Errorf("%s: secrets must come from a Secret (envFrom secretRef)", where)
		}
		covered := false
		for _, p := range pdbs {
			covered = covered || selects(p.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels)
		}
		if !covered {
			t.Errorf("%s: no PodDisruptionBudget selects its pods", where)
		}
	}
	for _, r := range workerRoles {
		if !seen[r] {
			t.Errorf("no Deployment runs --role %s", r)
		}
	}
	for name, cm := range configMaps {
		for key, text := range cm.Data {
			if strings.HasSuffix(key, ".yaml") {
				f := filepath.Join(t.TempDir(), key)
				if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
				configCheck(t, "ConfigMap "+name+" "+key, f)
			}
		}
	}
}

// TestComposeFile: the compose setup runs every role with a real command line from an
// image built by a Dockerfile in the repository, Kafka in KRaft mode, MariaDB with a ROW
// binlog, PostgreSQL with wal_level=logical, Prometheus loading the rules and Grafana
// with the dashboard; every file it mounts exists; its Shouwang configuration passes
// `shouwang config check` and its Prometheus configuration `promtool check config`.
func TestComposeFile(t *testing.T) {
	const dir = "compose"
	var c struct {
		Services map[string]struct {
			Image string `yaml:"image"`
			Build *struct {
				Context    string `yaml:"context"`
				Dockerfile string `yaml:"dockerfile"`
			} `yaml:"build"`
			Command     any            `yaml:"command"`
			Environment map[string]any `yaml:"environment"`
			Volumes     []string       `yaml:"volumes"`
			DependsOn   any            `yaml:"depends_on"`
		} `yaml:"services"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	args := func(cmd any) []string {
		var out []string
		switch v := cmd.(type) {
		case []any:
			for _, a := range v {
				out = append(out, strings.TrimSpace(toString(a)))
			}
		case string:
			out = strings.Fields(v)
		}
		return out
	}
	seen := map[string]bool{}
	for name, s := range c.Services {
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				if _, err := os.Stat(filepath.Join(dir, src)); err != nil {
					t.Errorf("service %s mounts %s, which does not exist: %v", name, src, err)
				}
			}
		}
		if s.Build != nil {
			df := filepath.Join(dir, s.Build.Context, s.Build.Dockerfile)
			if _, err := os.Stat(df); err != nil {
				t.Errorf("service %s builds from %s: %v", name, df, err)
			}
			a := args(s.Command)
			if len(a) > 0 && a[0] == "run" {
				role, config := checkRunArgs(t, "compose service "+name, a)
				seen[role] = true
				if config != "/etc/shouwang/shouwang.yaml" {
					t.Errorf("service %s: -c %s, want the mounted /etc/shouwang/shouwang.yaml", name, config)
				}
				mounted := false
				for _, v := range s.Volumes {
					mounted = mounted || strings.HasSuffix(strings.TrimSuffix(v, ":ro"), ":"+config)
				}
				if !mounted {
					t.Errorf("service %s: %s is not mounted", name, config)
				}
			} else if len(a) > 0 {
				checkRunArgs(t, "compose service "+name, a)
			}
		}
	}
	for _, r := range workerRoles {
		if !seen[r] {
			t.Errorf("no compose service runs --role %s", r)
		}
	}
	want := map[string][]string{
		"kafka":      {"KAFKA_PROCESS_ROLES", "KAFKA_CONTROLLER_QUORUM_VOTERS"},
		"mariadb":    {"--binlog-format=ROW", "--log-bin"},
		"postgres":   {"wal_level=logical"},
		"prometheus": {"shouwang.rules.yml", "prometheus.yml"},
		"grafana":    {"shouwang-dashboard.json", "provisioning/dashboards", "provisioning/datasources"},
	}
	for name, needles := range want {
		s, ok := c.Services[name]
		if !ok {
			t.Errorf("compose.yaml has no service %s", name)
			continue
		}
		all := strings.Join(args(s.Command), " ") + " " + strings.Join(s.Volumes, " ")
		for k := range s.Environment {
			all += " " + k
		}
		for _, n := range needles {
			if !strings.Contains(all, n) {
				t.Errorf("compose service %s: no %q", name, n)
			}
		}
	}
	if kafka, ok := c.Services["kafka"]; ok && strings.Contains(toString(kafka.Environment["KAFKA_PROCESS_ROLES"]), "controller") == false {
		t.Errorf("compose kafka: KAFKA_PROCESS_ROLES must include controller (KRaft)")
	}

	configCheck(t, "compose/shouwang.yaml", filepath.Join(dir, "shouwang.yaml"))

	promtool := lookTool(t, "promtool", "prometheus")
	if out, err := execCommand(promtool, "check", "config", filepath.Join(dir, "prometheus.yml")); err != nil {
		t.Errorf("promtool check config compose/prometheus.yml: %v\n%s", err, out)
	}
}

func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	case nil:
		return ""
	default:
		b, _ := yaml.Marshal(x)
		return strings.TrimSpace(string(b))
	}
}
