package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole configuration file.
type Config struct {
	// Listen is the address clients connect to.
	Listen string `yaml:"listen"`
	// Upstream is the PostgreSQL server, host:port (or a Unix socket path).
	Upstream string `yaml:"upstream"`
	// ControlDSN is a conninfo without dbname for the proxy's own
	// connections; empty means the libpq environment (PGUSER, …) and the
	// upstream's host and port (see ControlConninfo).
	ControlDSN string `yaml:"control_dsn"`
	// ShutdownTimeout bounds how long SIGTERM waits for sessions to end.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// EventLoops is how many epoll event loops carry sessions' ordinary
	// traffic (Linux); 0 runs every session on goroutine pumps.
	EventLoops int      `yaml:"event_loops"`
	Protect    Protect  `yaml:"protect"`
	Policies   Policies `yaml:"policies"`
	Guards     Guards   `yaml:"guards"`
	Limits     Limits   `yaml:"limits"`
	Redis      Redis    `yaml:"redis"`
	Metrics    Metrics  `yaml:"metrics"`
	Log        Log      `yaml:"log"`
	TLS        TLS      `yaml:"tls"`
}

// Protect says which tables are protected and for how long tombstones live.
type Protect struct {
	Schemas   []string              `yaml:"schemas"`
	Exclude   []string              `yaml:"exclude"`
	Retention Duration              `yaml:"retention"`
	Tables    map[string]TableRules `yaml:"tables"`
}

// TableRules overrides the defaults for one table ("schema.table").
type TableRules struct {
	// Retention overrides protect.retention.
	Retention Duration `yaml:"retention"`
	// Mode is "shadow" (tombstones in a typed shadow table, the default) or
	// "off" (not protected).
	Mode string `yaml:"mode"`
	// Column is the column restores filter on most (a tenant id, say); the
	// shadow table gets an index on it.
	Column string `yaml:"column"`
}

// Policies say what happens to statements that remove whole tables' rows.
type Policies struct {
	Truncate string `yaml:"truncate"` // capture | reject | allow
	Drop     string `yaml:"drop"`     // trash | reject | allow
}

// Guards refuse dangerous deletes unless confirmed.
type Guards struct {
	RequireWhere bool  `yaml:"require_where"`
	MaxRows      int64 `yaml:"max_rows"` // 0: no limit
}

// Limits bound the proxy's memory for planning statements.
type Limits struct {
	// PlanBytes is the longest statement text parsed (default 512 KiB);
	// longer text that may remove rows is refused (54000).
	PlanBytes int `yaml:"plan_bytes"`
	// PlanBudgetBytes is how much text all sessions parse at once
	// (default 1 MiB); more waits.
	PlanBudgetBytes int `yaml:"plan_budget_bytes"`
	// BufferBudgetBytes is how much statement text (messages over 1 MiB)
	// all sessions hold whole at once (default 128 MiB); more waits, and a
	// longer message ends its session with 54000.
	BufferBudgetBytes int `yaml:"buffer_budget_bytes"`
}

// Redis configures fleet coordination; an empty Addr means in-process.
type Redis struct {
	Addr string `yaml:"addr"`
}

// Metrics configures the /metrics, /healthz and /readyz endpoint.
type Metrics struct {
	Listen string `yaml:"listen"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // json | console
}

// TLS configures TLS towards clients and towards the server.
type TLS struct {
	// CertFile and KeyFile enable TLS for clients that ask for it.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Client is allow (TLS when the client asks) or require (clients
	// without TLS are refused, as a hostssl-only pg_hba.conf would).
	Client string `yaml:"client"`
	// Upstream is disable | prefer | require | verify-full.
	Upstream string `yaml:"upstream"`
	// UpstreamCAFile verifies the server's certificate (verify-full).
	UpstreamCAFile string `yaml:"upstream_ca_file"`
}

// Default returns the configuration used when no file is given.
func Default() Config {
	return Config{
		Listen:          "127.0.0.1:6432",
		Upstream:        "127.0.0.1:5432",
		ShutdownTimeout: Duration(30 * time.Second),
		EventLoops:      1,
		Protect: Protect{
			Schemas:   []string{"public"},
			Retention: Duration(7 * 24 * time.Hour),
		},
		Policies: Policies{Truncate: "capture", Drop: "trash"},
		Guards:   Guards{RequireWhere: true},
		Limits:   Limits{PlanBytes: 512 << 10, PlanBudgetBytes: 1 << 20, BufferBudgetBytes: 128 << 20},
		Log:      Log{Level: "info", Format: "json"},
		TLS:      TLS{Upstream: "disable", Client: "allow"},
	}
}

// Load reads path over the defaults. An empty path returns the defaults.
func Load(path string) (Config, error) {
	cfg := Default()
	if path == "" {
		return cfg, cfg.Validate()
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	if err := Parse(data, &cfg); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes YAML into cfg (which holds the defaults) and validates it.
// Unknown keys and values of the wrong kind are errors naming the key's
// dotted path and its line, all of them at once.
func Parse(data []byte, cfg *Config) (err error) {
	defer func() {
		// The YAML library has panicked on malformed documents before (a
		// merge key over an unhashable key): an error like any other,
		// not a crash.
		if r := recover(); r != nil {
			err = fmt.Errorf("cannot read the YAML: %v", r)
		}
	}()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return err // a syntax error: its line is all there is to say
	}
	if len(doc.Content) == 0 {
		return cfg.Validate() // an empty file means "all defaults"
	}
	var errs []string
	checkNode(doc.Content[0], reflect.TypeOf(cfg).Elem(), "", &errs)
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	if err := doc.Content[0].Decode(cfg); err != nil {
		return err
	}
	return cfg.Validate()
}

// unmarshaler is what a type that reads its own YAML (Duration) has.
var unmarshaler = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// checkNode checks n against t, the Go type it is to be decoded into:
// every key one of t's, every value of the kind its field takes. Each
// problem goes to errs as "line N: key.path: what".
func checkNode(n *yaml.Node, t reflect.Type, path string, errs *[]string) {
	fail := func(line int, format string, args ...any) {
		key := path
		if key == "" {
			key = "(top level)"
		}
		*errs = append(*errs, fmt.Sprintf("line %d: %s: %s", line, key, fmt.Sprintf(format, args...)))
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Tag == "!!null" {
		return // no value: the default stays (Validate judges it)
	}
	if reflect.PointerTo(t).Implements(unmarshaler) {
		if n.Kind != yaml.ScalarNode {
			fail(n.Line, "%s where a value belongs", kindName(n))
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			fail(n.Line, "%v", err)
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			fail(n.Line, "%s where a map of keys belongs", kindName(n))
			return
		}
		fields := map[string]reflect.Type{}
		var names []string
		for i := range t.NumField() {
			f := t.Field(i)
			if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name != "" && name != "-" {
				fields[name] = f.Type
				names = append(names, name)
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" {
				// "<<: *defaults" merges another map's keys into this
				// one; "<<: [*a, *b]" several maps'.
				if v.Kind == yaml.SequenceNode {
					for _, m := range v.Content {
						checkNode(m, t, path, errs)
					}
				} else {
					checkNode(v, t, path, errs)
				}
				continue
			}
			p := joinKey(path, k.Value)
			ft, ok := fields[k.Value]
			switch {
			case k.Kind != yaml.ScalarNode:
				fail(k.Line, "%s as a key", kindName(k))
			case !ok:
				*errs = append(*errs, fmt.Sprintf("line %d: %s: unknown key (known: %s)", k.Line, p, strings.Join(names, ", ")))
			default:
				checkNode(v, ft, p, errs)
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			fail(n.Line, "%s where a map belongs", kindName(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				fail(k.Line, "%s as a key", kindName(k))
				continue
			}
			checkNode(v, t.Elem(), joinKey(path, k.Value), errs)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			fail(n.Line, "%s where a list belongs", kindName(n))
			return
		}
		for i, c := range n.Content {
			checkNode(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			fail(n.Line, "%s where a value belongs", kindName(n))
			return
		}
		if n.Decode(reflect.New(t).Interface()) != nil {
			fail(n.Line, "`%s` is not %s", n.Value, typeName(t))
		}
	}
}

// joinKey is the dotted path of key under path.
func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// kindName names a YAML node's kind for a message.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a map"
	case yaml.SequenceNode:
		return "a list"
	}
	return "a value"
}

// typeName names what a scalar field takes, for a message.
func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean (true or false)"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a " + t.Kind().String()
}

// ControlConninfo is the conninfo of the proxy's own connections:
// control_dsn when it is set. Otherwise the libpq environment (PGUSER,
// PGPASSWORD, PGSSLMODE, …) — and, unless PGHOST, PGHOSTADDR or PGPORT
// says where, the upstream's host and port, so that the proxy's own
// connections reach the server its clients do. getenv is os.Getenv.
func (c *Config) ControlConninfo(getenv func(string) string) string {
	if c.ControlDSN != "" {
		return c.ControlDSN
	}
	if getenv("PGHOST") != "" || getenv("PGHOSTADDR") != "" || getenv("PGPORT") != "" {
		return ""
	}
	host, port, ok := upstreamHostPort(c.Upstream)
	if !ok {
		return ""
	}
	return "host=" + conninfoQuote(host) + " port=" + conninfoQuote(port)
}

// upstreamHostPort splits an upstream address into libpq's host and port:
// host:port, or a Unix socket file /dir/.s.PGSQL.<port> (host = /dir).
func upstreamHostPort(addr string) (host, port string, ok bool) {
	if strings.HasPrefix(addr, "/") {
		dir, file := path.Split(addr)
		port, found := strings.CutPrefix(file, ".s.PGSQL.")
		if n, err := strconv.Atoi(port); !found || err != nil || n <= 0 || n > 65535 {
			return "", "", false
		}
		return path.Clean(dir), port, true
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return "", "", false
	}
	return host, port, true
}

// conninfoQuote quotes a conninfo value: in single quotes, with
// backslashes and single quotes escaped.
func conninfoQuote(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// Validate checks every value, naming the key of the first bad one.
func (c *Config) Validate() error {
	if err := checkAddr("listen", c.Listen, false); err != nil {
		return err
	}
	if err := checkAddr("upstream", c.Upstream, true); err != nil {
		return err
	}
	if c.ShutdownTimeout < 0 {
		return fmt.Errorf("shutdown_timeout: must not be negative")
	}
	if c.EventLoops < 0 || c.EventLoops > 64 {
		return fmt.Errorf("event_loops: must be between 0 and 64, got %d", c.EventLoops)
	}
	if len(c.Protect.Schemas) == 0 {
		return fmt.Errorf("protect.schemas: list at least one schema")
	}
	for _, s := range c.Protect.Schemas {
		if s == "" || s == "tombstone" || strings.HasPrefix(s, "pg_") || s == "information_schema" {
			return fmt.Errorf("protect.schemas: %q cannot be protected", s)
		}
	}
	for _, t := range c.Protect.Exclude {
		if !strings.Contains(t, ".") {
			return fmt.Errorf("protect.exclude: %q: write tables as schema.table", t)
		}
	}
	if c.Protect.Retention <= 0 {
		return fmt.Errorf("protect.retention: must be positive (e.g. 168h or 7d)")
	}
	for name, r := range c.Protect.Tables {
		key := "protect.tables." + name
		if !strings.Contains(name, ".") {
			return fmt.Errorf("%s: write tables as schema.table", key)
		}
		if r.Retention < 0 {
			return fmt.Errorf("%s.retention: must be positive", key)
		}
		if r.Mode != "" && r.Mode != "shadow" && r.Mode != "off" {
			return fmt.Errorf("%s.mode: %q is not one of shadow, off", key, r.Mode)
		}
	}
	if err := oneOf("policies.truncate", c.Policies.Truncate, "capture", "reject", "allow"); err != nil {
		return err
	}
	if err := oneOf("policies.drop", c.Policies.Drop, "trash", "reject", "allow"); err != nil {
		return err
	}
	if c.Guards.MaxRows < 0 {
		return fmt.Errorf("guards.max_rows: must be 0 (no limit) or positive")
	}
	if c.Limits.PlanBytes <= 0 {
		return fmt.Errorf("limits.plan_bytes: must be positive")
	}
	if c.Limits.BufferBudgetBytes < c.Limits.PlanBytes {
		return fmt.Errorf("limits.buffer_budget_bytes: must be at least limits.plan_bytes (%d)", c.Limits.PlanBytes)
	}
	if c.Limits.PlanBudgetBytes < c.Limits.PlanBytes {
		return fmt.Errorf("limits.plan_budget_bytes: must be at least limits.plan_bytes (%d)", c.Limits.PlanBytes)
	}
	if c.Redis.Addr != "" {
		if err := checkAddr("redis.addr", c.Redis.Addr, false); err != nil {
			return err
		}
	}
	if c.Metrics.Listen != "" {
		if err := checkAddr("metrics.listen", c.Metrics.Listen, false); err != nil {
			return err
		}
	}
	if err := oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error"); err != nil {
		return err
	}
	if err := oneOf("log.format", c.Log.Format, "json", "console"); err != nil {
		return err
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return fmt.Errorf("tls.cert_file, tls.key_file: give both or neither")
	}
	if err := oneOf("tls.client", c.TLS.Client, "allow", "require"); err != nil {
		return err
	}
	if c.TLS.Client == "require" && c.TLS.CertFile == "" {
		return fmt.Errorf("tls.client: require needs tls.cert_file and tls.key_file")
	}
	if err := oneOf("tls.upstream", c.TLS.Upstream, "disable", "prefer", "require", "verify-full"); err != nil {
		return err
	}
	if c.TLS.Upstream == "verify-full" && c.TLS.UpstreamCAFile == "" {
		return fmt.Errorf("tls.upstream_ca_file: required with tls.upstream: verify-full")
	}
	return nil
}

// RetentionFor returns the retention of schema.table.
func (p Protect) RetentionFor(table string) time.Duration {
	if r, ok := p.Tables[table]; ok && r.Retention > 0 {
		return time.Duration(r.Retention)
	}
	return time.Duration(p.Retention)
}

func oneOf(key, v string, allowed ...string) error {
	if slices.Contains(allowed, v) {
		return nil
	}
	return fmt.Errorf("%s: %q is not one of %s", key, v, strings.Join(allowed, ", "))
}

func checkAddr(key, addr string, allowSocket bool) error {
	if addr == "" {
		return fmt.Errorf("%s: must be set (host:port)", key)
	}
	if allowSocket && strings.HasPrefix(addr, "/") {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: %q is not host:port: %v", key, addr, err)
	}
	_ = host
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%s: %q has a bad port", key, addr)
	}
	return nil
}

// Duration is a time.Duration that YAML writes as "168h", "30s" or "7d".
type Duration time.Duration

// UnmarshalYAML accepts Go durations plus a "d" (day) suffix.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err // Parse names the key and line
	}
	*d = Duration(v)
	return nil
}

// ParseDuration parses Go durations plus whole days ("7d").
func ParseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q (use e.g. 30s, 168h, 7d)", s)
	}
	return v, nil
}

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }
