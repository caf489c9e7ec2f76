package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tombstone-proxy/tombstone/config"
	"github.com/tombstone-proxy/tombstone/proxy"
	"github.com/tombstone-proxy/tombstone/rewrite"
	"github.com/tombstone-proxy/tombstone/tombstone"
)

// proxyCmd runs the proxy. Flags (and their environment variables) override
// the configuration file.
type proxyCmd struct {
	Config        string `help:"Configuration file (YAML)." type:"existingfile" env:"TOMBSTONE_CONFIG"`
	Listen        string `help:"Address clients connect to (listen)." env:"TOMBSTONE_LISTEN"`
	Upstream      string `help:"PostgreSQL server host:port (upstream)." env:"TOMBSTONE_UPSTREAM"`
	ControlDSN    string `name:"control-dsn" help:"Conninfo without dbname for the proxy's own connections (control_dsn); empty: the libpq environment, at the upstream's host and port unless PGHOST, PGHOSTADDR or PGPORT is set." env:"TOMBSTONE_CONTROL_DSN"`
	Redis         string `help:"Redis address for fleet coordination (redis.addr); checked, reserved: the proxy does not use Redis yet." env:"TOMBSTONE_REDIS"`
	MetricsListen string `name:"metrics-listen" help:"Address for /metrics, /healthz, /readyz (metrics.listen)." env:"TOMBSTONE_METRICS_LISTEN"`
	LogLevel      string `name:"log-level" help:"debug, info, warn or error (log.level)." env:"TOMBSTONE_LOG_LEVEL"`
	LogFormat     string `name:"log-format" help:"json or console (log.format)." env:"TOMBSTONE_LOG_FORMAT"`
	EventLoops    *int   `name:"event-loops" help:"Event loops carrying ordinary traffic; 0: goroutine pumps only (event_loops)." env:"TOMBSTONE_EVENT_LOOPS"`
}

// load reads the configuration file and applies the flags over it.
func (c *proxyCmd) load() (config.Config, error) {
	cfg, err := config.Load(c.Config)
	if err != nil {
		return cfg, err
	}
	for _, o := range []struct {
		flag string
		dst  *string
	}{
		{c.Listen, &cfg.Listen}, {c.Upstream, &cfg.Upstream}, {c.ControlDSN, &cfg.ControlDSN},
		{c.Redis, &cfg.Redis.Addr}, {c.MetricsListen, &cfg.Metrics.Listen},
		{c.LogLevel, &cfg.Log.Level}, {c.LogFormat, &cfg.Log.Format},
	} {
		if o.flag != "" {
			*o.dst = o.flag
		}
	}
	if c.EventLoops != nil {
		cfg.EventLoops = *c.EventLoops
	}
	return cfg, cfg.Validate()
}

func (c *proxyCmd) Run() error {
	cfg, err := c.load()
	if err != nil {
		return err
	}
	log, level, err := newLogger(cfg.Log.Level, cfg.Log.Format, os.Stderr)
	if err != nil {
		return fmt.Errorf("log.level: %w", err)
	}
	defer log.Sync() //nolint:errcheck

	reg := newRegistry()
	pcfg, err := proxyConfig(cfg, log, proxy.NewMetrics(reg))
	if err != nil {
		return err
	}
	cats := tombstone.NewCatalogs(cfg.ControlConninfo(os.Getenv), tombstone.InstallOptions{Protection: protection(cfg), KeepStored: true, Logger: log}, log)
	defer cats.Close()
	cats.OnLoad = catalogLoads(reg)
	pcfg.Planner = proxy.NewPlanner(cats, rewrite.NewCache(4096), proxy.Policies{
		Truncate: cfg.Policies.Truncate, Drop: cfg.Policies.Drop,
		RequireWhere: cfg.Guards.RequireWhere, MaxRows: cfg.Guards.MaxRows,
		PlanBytes: cfg.Limits.PlanBytes, PlanBudgetBytes: cfg.Limits.PlanBudgetBytes,
		Trial: &rewrite.Trial{Parse: trialParse},
	})
	pcfg.OnCatalogChanged = cats.Invalidate
	pcfg.OnSession = cats.Use
	if cfg.EventLoops > 0 {
		loops, err := proxy.NewLoops(cfg.EventLoops, log)
		if err != nil {
			log.Warn("event loops unavailable: every session runs on goroutine pumps", zap.Error(err))
		} else {
			defer loops.Close()
			pcfg.Loops = loops
		}
	}
	srv := proxy.NewServer(pcfg)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()

	if err := startMetrics(cfg.Metrics.Listen, reg, func() error { return pingUpstream(cfg.Upstream) }, log); err != nil {
		return err
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		for sig := range sigs {
			if sig == syscall.SIGHUP {
				c.reload(log, level)
				continue
			}
			log.Info("shutting down", zap.String("signal", sig.String()), zap.Int("sessions", srv.Sessions()), zap.Duration("timeout", time.Duration(cfg.ShutdownTimeout)))
			sctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.ShutdownTimeout))
			_ = srv.Shutdown(sctx)
			cancel()
			stop()
			return
		}
	}()

	log.Info("proxy listening", zap.String("listen", ln.Addr().String()), zap.String("upstream", cfg.Upstream))
	if err := srv.Serve(ctx, ln); err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("proxy stopped")
	return nil
}

// reload re-reads what can change without a restart (the log level).
func (c *proxyCmd) reload(log *zap.Logger, level zap.AtomicLevel) {
	cfg, err := c.load()
	if err != nil {
		log.Error("reload failed; keeping the running configuration", zap.Error(err))
		return
	}
	if l, err := zapcore.ParseLevel(cfg.Log.Level); err == nil {
		level.SetLevel(l)
	}
	log.Info("configuration reloaded", zap.String("log_level", cfg.Log.Level))
}

// protection turns the protect: section and the TRUNCATE policy into the
// store's terms.
func protection(cfg config.Config) *tombstone.Protection {
	p := cfg.Protect
	out := &tombstone.Protection{Schemas: p.Schemas, Exclude: p.Exclude, Retention: time.Duration(p.Retention),
		Truncate: cfg.Policies.Truncate, Drop: cfg.Policies.Drop, Tables: map[string]tombstone.TableProtection{}}
	for name, r := range p.Tables {
		out.Tables[name] = tombstone.TableProtection{Retention: time.Duration(r.Retention), Mode: r.Mode, Column: r.Column}
	}
	return out
}

// proxyConfig turns the file configuration into the proxy's.
func proxyConfig(cfg config.Config, log *zap.Logger, m *proxy.Metrics) (proxy.Config, error) {
	pc := proxy.Config{Upstream: cfg.Upstream, Logger: log, Metrics: m, BufferBudgetBytes: cfg.Limits.BufferBudgetBytes}
	if cfg.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return pc, fmt.Errorf("tls.cert_file: %w", err)
		}
		pc.ClientTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		pc.ClientTLSRequired = cfg.TLS.Client == "require"
	}
	switch cfg.TLS.Upstream {
	case "prefer":
		pc.UpstreamTLS = proxy.UpstreamTLSPrefer
	case "require":
		pc.UpstreamTLS = proxy.UpstreamTLSRequire
	case "verify-full":
		pc.UpstreamTLS = proxy.UpstreamTLSRequire
		pem, err := os.ReadFile(cfg.TLS.UpstreamCAFile)
		if err != nil {
			return pc, fmt.Errorf("tls.upstream_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return pc, errors.New("tls.upstream_ca_file: no certificate found")
		}
		host, _, _ := net.SplitHostPort(cfg.Upstream)
		pc.UpstreamTLSConfig = &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}
	}
	return pc, nil
}

// newLogger builds a command's logger: JSON (or console text) to w at the
// given level, which the returned AtomicLevel can change later (SIGHUP).
func newLogger(levelName, format string, w io.Writer) (*zap.Logger, zap.AtomicLevel, error) {
	l, err := zapcore.ParseLevel(levelName)
	if err != nil {
		return nil, zap.AtomicLevel{}, err
	}
	level := zap.NewAtomicLevelAt(l)
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	if format == "console" {
		enc = zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level), zap.AddCaller()), level, nil
}

// newRegistry is a Prometheus registry with the Go runtime and process
// collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// startMetrics serves reg on addr (nothing when addr is empty).
func startMetrics(addr string, reg *prometheus.Registry, ready func() error, log *zap.Logger) error {
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listen: %w", err)
	}
	go serveMetrics(ln, reg, ready, log)
	log.Info("metrics listening", zap.String("addr", ln.Addr().String()))
	return nil
}

// serveMetrics serves /metrics, /healthz (the process is up) and /readyz
// (the upstream accepts connections).
func serveMetrics(ln net.Listener, reg *prometheus.Registry, ready func() error, log *zap.Logger) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// Profiles for diagnosing the proxy in place (same listener: keep it
	// on a private address).
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("metrics server", zap.Error(err))
	}
}

// pingUpstream checks that the upstream accepts TCP connections.
func pingUpstream(addr string) error {
	network := "tcp"
	if len(addr) > 0 && addr[0] == '/' {
		network = "unix"
	}
	conn, err := net.DialTimeout(network, addr, 2*time.Second)
	if err != nil {
		return err
	}
	return conn.Close()
}

// catalogLoads registers tombstone_proxy_catalog_loads_total and
// tombstone_proxy_deletes_frozen with reg and returns the hook that keeps
// them (tombstone.Catalogs.OnLoad).
func catalogLoads(reg prometheus.Registerer) func(string, *tombstone.Catalog, error) {
	loads := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tombstone", Subsystem: "proxy", Name: "catalog_loads_total",
		Help: "Catalog loads (the protected tables of a database, read after DDL or a change of the rules), by result: ok or error."}, []string{"result"})
	frozen := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "tombstone", Subsystem: "proxy", Name: "deletes_frozen",
		Help: "1 while FREEZE DELETES is in force in the database, as its last catalog load found (a freeze and a thaw make the proxies load it)."}, []string{"database"})
	reg.MustRegister(loads, frozen)
	loads.WithLabelValues("ok")
	loads.WithLabelValues("error")
	return func(database string, cat *tombstone.Catalog, err error) {
		if err != nil {
			loads.WithLabelValues("error").Inc()
			return
		}
		loads.WithLabelValues("ok").Inc()
		v := 0.0
		if cat.Frozen() {
			v = 1
		}
		frozen.WithLabelValues(database).Set(v)
	}
}
