package config

import (
	"fmt"
	"github.com/recallrelay/recallrelay/relay"
	"net"
	"path/filepath"
	"strings"

	"github.com/recallrelay/recallrelay/rules"
)

// Explain returns a short human-readable summary of c, one topic per line:
// listeners (with who may connect), store, reference keys (by ID only),
// vendors, tenant target, the rules of engine when it is not nil (the
// engine CompileRules returned for c), return policy and fallback
// matching, then one "WARNING: " line for each of Warnings. It never
// contains a secret; a Redis URL appears with its password redacted.
func (c *Config) Explain(engine *rules.Engine) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	if c.src != nil {
		line("configuration: %s", c.src.name)
	}
	line("hostname: %s", c.Hostname)
	line("log: %s, %s", c.Log.Level, c.Log.Format)
	line("tenant listener: %s", explainListener(&c.Listeners.Tenant))
	line("return listener: %s", explainListener(&c.Listeners.Return))

	s := &c.Store
	if s.Embedded() {
		line("store: embedded, %s, records kept %s", filepath.Join(s.DataDir, "records.db"), s.RecordTTL)
	} else {
		r := &s.Redis
		where := r.URL.String()
		if where == "" {
			kind := "Redis"
			switch {
			case r.MasterName != "":
				kind = "Redis Sentinel (master " + r.MasterName + ")"
			case len(r.Addrs) > 1:
				kind = "Redis Cluster"
			}
			where = kind + " " + strings.Join(r.Addrs, ", ")
			if r.DB != 0 {
				where += fmt.Sprintf(" db %d", r.DB)
			}
		}
		auth := ""
		if r.Password != "" {
			auth = ", password set"
		}
		tlsOn := ""
		if r.TLS {
			tlsOn = ", TLS"
		}
		wait := ""
		if r.WaitReplicas > 0 {
			wait = fmt.Sprintf(", each write waits for %d replicas (up to %s)", r.WaitReplicas, r.WaitTimeout)
		}
		line("store: %s (key prefix %q%s%s), records kept %s%s", where, r.KeyPrefixInUse(), tlsOn, auth, s.RecordTTL, wait)
	}

	ids := make([]string, len(c.Reference.Keys))
	ephemeral := ""
	for i, k := range c.Reference.Keys {
		ids[i] = k.ID
		if k.Ephemeral {
			ephemeral = "; WARNING: ephemeral key, references do not survive a restart"
		}
	}
	line("reference: header %s, signing key %s, verifying keys %s%s",
		c.Reference.Header, c.Reference.SigningKey, strings.Join(ids, ", "), ephemeral)
	line("headers: capture %d patterns, restore %d, loop marker %s: %s, Received %s",
		len(c.Headers.Capture), len(c.Headers.Restore), c.Headers.LoopMarker.Name, c.Headers.LoopMarker.Value, onOff(c.Headers.Received))

	for _, v := range c.Vendors {
		def := ""
		if v.Name == c.DefaultVendor {
			def = " (default)"
		}
		line("vendor %s%s: %s, %s", v.Name, def, v.Address, explainClient(&v.Client))
	}
	line("tenant: %s, %s", c.Tenant.Address, explainClient(&c.Tenant.Client))
	if engine != nil {
		line("rules: %s", engine.Summary())
	}
	if c.NextHopPool.MaxIdle < 0 {
		line("next-hop pool: off")
	} else {
		line("next-hop pool: up to %d idle connections per next hop, kept %s", c.NextHopPool.MaxIdle, c.NextHopPool.IdleTimeout)
	}
	line("return without record: %s", c.ReturnWithoutRecord)
	line("fallback matching: %s", explainFallback(c.FallbackMatching))
	for _, w := range c.Warnings() {
		line("WARNING: %s", w.Error())
	}
	return b.String()
}

func explainListener(l *Listener) string {
	t := "no TLS"
	switch {
	case l.TLS.CertFile != "" && l.TLS.Require:
		t = "STARTTLS required"
	case l.TLS.CertFile != "":
		t = "STARTTLS offered"
	}
	return fmt.Sprintf("%s, %s, max message %s, max %d recipients, bare line endings: %s, clients: %s",
		l.Listen, t, l.MaxMessageSize, l.MaxRecipients, l.BareLineEndings, explainClients(l))
}

// explainClients says who may use a listener.
func explainClients(l *Listener) string {
	var r []string
	if n := len(l.AllowNets); n == 1 {
		r = append(r, "1 allowed network")
	} else if n > 1 {
		r = append(r, fmt.Sprintf("%d allowed networks", n))
	}
	if len(l.TLS.ClientCertNames) > 0 {
		r = append(r, "client certificates named "+strings.Join(l.TLS.ClientCertNames, ", "))
	}
	if l.Auth.UsersFile != "" {
		r = append(r, "SMTP AUTH")
	}
	if len(r) > 0 {
		return strings.Join(r, "; ")
	}
	if host, _, err := net.SplitHostPort(l.Listen); err == nil && loopbackHost(host) {
		return "this machine only (loopback)"
	}
	if l.InsecureOpen {
		return "anyone (insecure_open)"
	}
	return "anyone"
}

func explainFallback(p relay.FallbackMatching) string {
	switch p {
	case relay.FallbackTrusted:
		return "trusted (by Message-ID or fingerprint only for clients admitted by allow_nets or authenticated)"
	case relay.FallbackOff:
		return "off (by reference only)"
	case relay.FallbackAny:
		return "any (by Message-ID or fingerprint for every client)"
	}
	return string(p)
}

func explainClient(cl *Client) string {
	s := "STARTTLS " + string(cl.StartTLS)
	if cl.InsecureSkipVerify {
		s += " (certificate not verified)"
	}
	if cl.ClientCertFile != "" {
		s += ", client certificate " + cl.ClientCertFile
	}
	return s + ", EHLO " + cl.HELO
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
