package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// MaskDSN hides the password in a connection string so that it can be logged or put
// into an error: go-sql-driver DSNs (user:pass@tcp(host:port)/db), URLs
// (postgres://user:pass@host/db, https://user:pass@host/…, also password= and token=
// query parameters) and key=value libpq strings (password=secret or password='se cret').
// Every message that mentions a DSN must pass it through MaskDSN first.
func MaskDSN(dsn string) string {
	switch {
	case strings.Contains(dsn, "://"):
		return maskURL(dsn)
	case kvRe.MatchString(dsn):
		return kvPasswordRe.ReplaceAllString(dsn, "${1}***")
	default:
		return maskMySQL(dsn)
	}
}

// kvRe recognises a libpq key=value string by its first pair.
var kvRe = regexp.MustCompile(`^\s*[A-Za-z_]+\s*=`)

// kvPasswordRe matches a password pair in a libpq key=value string, quoted or not.
var kvPasswordRe = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)`)

// secretParamRe matches URL query parameters that carry secrets.
var secretParamRe = regexp.MustCompile(`(?i)([?&](?:password|passwd|pwd|token|access_token|auth_token|secret|sslpassword)=)[^&#]*`)

func maskURL(s string) string {
	i := strings.Index(s, "://")
	scheme, rest := s[:i+3], s[i+3:]
	userinfo, hostAndRest, ok := splitUserinfo(rest)
	if ok {
		if c := strings.Index(userinfo, ":"); c >= 0 {
			userinfo = userinfo[:c] + ":***"
		}
		rest = userinfo + "@" + hostAndRest
	}
	return secretParamRe.ReplaceAllString(scheme+rest, "${1}***")
}

// splitUserinfo splits "user:pass@host/path" at the '@' ending the userinfo.
// Passwords are not always percent-encoded and may hold '@', '#', '?' or '/', so the
// chosen '@' is one followed by a host list (ending at '/', '?' or the end), preferring
// the last such '@' with no '/' before it (a later '@' would sit in the path or query).
func splitUserinfo(rest string) (userinfo, hostAndRest string, ok bool) {
	best, fallback := -1, -1
	for i := 0; i < len(rest); i++ {
		if rest[i] != '@' {
			continue
		}
		j := i + 1
		for j < len(rest) && isHostChar(rest[j]) {
			j++
		}
		if j < len(rest) && rest[j] != '/' && rest[j] != '?' {
			continue
		}
		fallback = i
		if !strings.Contains(rest[:i], "/") {
			best = i
		}
	}
	if best < 0 {
		best = fallback
	}
	if best < 0 {
		// No '@' is followed by something host-like: still treat the last one as the
		// end of the userinfo, since masking too much is the safe mistake.
		best = strings.LastIndex(rest, "@")
	}
	if best < 0 {
		return "", rest, false
	}
	return rest[:best], rest[best+1:], true
}

func isHostChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-_:[],%", c) >= 0
}

func maskMySQL(s string) string {
	// go-sql-driver: the userinfo ends at the last '@' before the last '/'.
	slash := strings.LastIndex(s, "/")
	if slash < 0 {
		slash = len(s)
	}
	at := strings.LastIndex(s[:slash], "@")
	if at < 0 {
		return s
	}
	if c := strings.Index(s[:at], ":"); c >= 0 {
		return s[:c] + ":***" + s[at:]
	}
	return s
}

// endpoint is one network address a DSN or URL points at.
type endpoint struct {
	network  string // tcp or unix
	addr     string // host:port or socket path
	user     string
	password bool // a password is configured (never its value)
}

func (e endpoint) describe() string {
	switch {
	case e.user != "" && e.password:
		return fmt.Sprintf("%s (user %s, password ***)", e.addr, e.user)
	case e.user != "":
		return fmt.Sprintf("%s (user %s)", e.addr, e.user)
	}
	return e.addr
}

// mysqlEndpoint parses a go-sql-driver DSN without connecting.
func mysqlEndpoint(dsn string) (endpoint, string, error) {
	c, err := mysql.ParseDSN(dsn)
	if err != nil {
		return endpoint{}, "", fmt.Errorf("not a valid MySQL DSN (%s): %v; write user:password@tcp(host:3306)/db", MaskDSN(dsn), maskErr(err, dsn))
	}
	e := endpoint{network: c.Net, addr: c.Addr, user: c.User, password: c.Passwd != ""}
	if e.network == "tcp" || e.network == "tcp4" || e.network == "tcp6" {
		e.network = "tcp"
		if _, _, err := net.SplitHostPort(e.addr); err != nil {
			e.addr = net.JoinHostPort(e.addr, "3306")
		}
	} else if e.network != "unix" {
		return endpoint{}, "", fmt.Errorf("MySQL DSN %s uses network %q: only tcp and unix are supported", MaskDSN(dsn), c.Net)
	}
	return e, c.DBName, nil
}

// maskErr renders a parser error, hiding the password in case the parser quoted the DSN.
func maskErr(err error, dsn string) string {
	msg := err.Error()
	if p := passwordOf(dsn); len(p) >= 3 {
		msg = strings.ReplaceAll(msg, p, "***")
	}
	return msg
}

// passwordOf extracts the password of a MySQL DSN for scrubbing error texts.
func passwordOf(dsn string) string {
	m := MaskDSN(dsn)
	if m == dsn {
		return ""
	}
	c := strings.Index(dsn, ":")
	if c < 0 {
		return ""
	}
	at := strings.LastIndex(dsn, "@")
	if at <= c {
		return ""
	}
	return dsn[c+1 : at]
}

// pgEndpoints parses a postgres:// URL or a key=value libpq string without
// connecting: every host (libpq accepts a comma-separated list), the user and the
// database name.
func pgEndpoints(dsn string) ([]endpoint, string, error) {
	var hosts, ports []string
	var user, dbname string
	var password bool
	if strings.Contains(dsn, "://") {
		i := strings.Index(dsn, "://")
		if s := dsn[:i]; s != "postgres" && s != "postgresql" {
			return nil, "", fmt.Errorf("URL %s has scheme %q: use postgres://user:password@host:5432/db", MaskDSN(dsn), s)
		}
		rest := dsn[i+3:]
		userinfo, hostPart, ok := splitUserinfo(rest)
		if ok {
			u, p, hasP := strings.Cut(userinfo, ":")
			user, _ = url.PathUnescape(u)
			password = hasP && p != ""
		}
		query := ""
		if q := strings.IndexByte(hostPart, '?'); q >= 0 {
			hostPart, query = hostPart[:q], hostPart[q+1:]
		}
		if s := strings.IndexByte(hostPart, '/'); s >= 0 {
			dbname, _ = url.PathUnescape(hostPart[s+1:])
			hostPart = hostPart[:s]
		}
		for _, hp := range strings.Split(hostPart, ",") {
			if hp == "" {
				continue
			}
			h, p, err := net.SplitHostPort(hp)
			if err != nil {
				h, p = strings.Trim(hp, "[]"), ""
			}
			hosts = append(hosts, h)
			ports = append(ports, p)
		}
		params, err := url.ParseQuery(query)
		if err != nil {
			return nil, "", fmt.Errorf("URL %s has a malformed query: %v", MaskDSN(dsn), err)
		}
		if v := params.Get("host"); v != "" {
			hosts = strings.Split(v, ",")
		}
		if v := params.Get("port"); v != "" {
			ports = strings.Split(v, ",")
		}
		if v := params.Get("user"); v != "" {
			user = v
		}
		if v := params.Get("dbname"); v != "" {
			dbname = v
		}
		if params.Get("password") != "" {
			password = true
		}
	} else {
		kv, err := parseKV(dsn)
		if err != nil {
			return nil, "", fmt.Errorf("connection string %s: %v; write host=… port=5432 user=… password=… dbname=… or a postgres:// URL", MaskDSN(dsn), err)
		}
		if v := kv["host"]; v != "" {
			hosts = strings.Split(v, ",")
		} else if v := kv["hostaddr"]; v != "" {
			hosts = strings.Split(v, ",")
		}
		if v := kv["port"]; v != "" {
			ports = strings.Split(v, ",")
		}
		user, dbname, password = kv["user"], kv["dbname"], kv["password"] != ""
	}
	if len(hosts) == 0 {
		return nil, "", fmt.Errorf("connection string %s names no host: add one (host=… or postgres://user@host:5432/db) so that the connection does not depend on a local socket", MaskDSN(dsn))
	}
	if len(ports) > 1 && len(ports) != len(hosts) {
		return nil, "", fmt.Errorf("connection string %s has %d hosts but %d ports: give one port, or one per host", MaskDSN(dsn), len(hosts), len(ports))
	}
	var out []endpoint
	for i, h := range hosts {
		port := "5432"
		if len(ports) == 1 && ports[0] != "" {
			port = ports[0]
		} else if len(ports) > 1 && ports[i] != "" {
			port = ports[i]
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, "", fmt.Errorf("connection string %s has port %q: must be 1..65535", MaskDSN(dsn), port)
		}
		e := endpoint{network: "tcp", addr: net.JoinHostPort(h, port), user: user, password: password}
		if strings.HasPrefix(h, "/") {
			e.network, e.addr = "unix", h+"/.s.PGSQL."+port
		}
		out = append(out, e)
	}
	return out, dbname, nil
}

// parseKV parses a libpq key=value string: values may be single-quoted, with
// backslash escapes inside quotes.
func parseKV(s string) (map[string]string, error) {
	out := map[string]string{}
	i := 0
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n') {
			i++
		}
		if i >= len(s) {
			return out, nil
		}
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			return nil, fmt.Errorf("%q has no '='", strings.Fields(s[i:])[0])
		}
		key := strings.TrimSpace(s[i : i+eq])
		if key == "" || strings.ContainsAny(key, " \t") {
			return nil, fmt.Errorf("malformed key %q", key)
		}
		i += eq + 1
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		var val strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				if s[i] == '\\' && i+1 < len(s) {
					val.WriteByte(s[i+1])
					i += 2
					continue
				}
				if s[i] == '\'' {
					closed = true
					i++
					break
				}
				val.WriteByte(s[i])
				i++
			}
			if !closed {
				return nil, fmt.Errorf("value of %s has an unterminated quote", key)
			}
		} else {
			for i < len(s) && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' {
				val.WriteByte(s[i])
				i++
			}
		}
		out[key] = val.String()
	}
}

// httpEndpoint parses an http(s) URL without connecting.
func httpEndpoint(raw string) (endpoint, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return endpoint{}, fmt.Errorf("not a valid URL (%s): write https://host/path", MaskDSN(raw))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return endpoint{}, fmt.Errorf("URL %s must start with https:// or http://", MaskDSN(raw))
	}
	if u.Hostname() == "" {
		return endpoint{}, fmt.Errorf("URL %s names no host", MaskDSN(raw))
	}
	port := u.Port()
	if port == "" {
		port = "443"
		if u.Scheme == "http" {
			port = "80"
		}
	}
	e := endpoint{network: "tcp", addr: net.JoinHostPort(u.Hostname(), port)}
	if u.User != nil {
		e.user = u.User.Username()
		_, e.password = u.User.Password()
	}
	return e, nil
}
