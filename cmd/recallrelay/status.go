package main

import (
	"sync/atomic"

	"github.com/recallrelay/recallrelay/config"
	"github.com/recallrelay/recallrelay/rules"
)

// liveSummary holds the status page's account of the configuration in
// force: what `check` prints, and the rules summary. serve sets it at
// start and after each reload that took effect.
type liveSummary struct {
	p atomic.Pointer[[2]string]
}

func (l *liveSummary) set(cfg *config.Config, engine *rules.Engine) {
	l.p.Store(&[2]string{cfg.Explain(engine), engine.Summary()})
}

// get returns the configuration summary and the rules summary.
func (l *liveSummary) get() (cfgText, rulesText string) {
	s := l.p.Load()
	if s == nil {
		return "", ""
	}
	return s[0], s[1]
}
