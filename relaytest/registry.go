package relaytest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
)

// A Registry maps behaviour names, as behaviour lists use them, to what they
// build: the built-in behaviours (see Behaviors) and those a program or test
// registers. There is no package-wide registry: ParseBehaviors and
// Behaviors use a fresh NewRegistry every time, so registering never changes
// them; a program that offers its own behaviours parses with its Registry.
//
// The zero value is an empty Registry, without the built-ins. A Registry is
// safe for concurrent use; factories run without any lock held, so they may
// use the Registry themselves.
type Registry struct {
	mu  sync.Mutex // held to replace set
	set atomic.Pointer[behaviorSet]
}

// behaviorSet is the content of a Registry. It is never changed once
// published: registering publishes a copy, so that parsing (which calls
// factories) holds no lock.
type behaviorSet struct {
	defs   []behaviorDef
	byName map[string]int // index into defs
}

// with returns a copy of s (which may be nil) with d added.
func (s *behaviorSet) with(d behaviorDef) *behaviorSet {
	out := &behaviorSet{byName: make(map[string]int)}
	if s != nil {
		out.defs = append(out.defs, s.defs...)
		for k, v := range s.byName {
			out.byName[k] = v
		}
	}
	out.byName[d.info.Name] = len(out.defs)
	out.defs = append(out.defs, d)
	return out
}

// NewRegistry returns a Registry holding the built-in behaviours.
func NewRegistry() *Registry {
	s := &behaviorSet{byName: make(map[string]int)}
	for _, d := range registry() {
		s.byName[d.info.Name] = len(s.defs)
		s.defs = append(s.defs, d)
	}
	r := &Registry{}
	r.set.Store(s)
	return r
}

// current returns r's content; nil for an empty Registry.
func (r *Registry) current() *behaviorSet { return r.set.Load() }

// Register adds a behaviour named name, described by a one-line summary.
// Parse calls factory for every occurrence of the name in a list, with the
// parameter given after "=" or "" when there is none (an empty parameter,
// "name=", is refused before factory is called); factory returns a fresh
// Behavior, or an error for a parameter it does not accept. The Behavior's
// Name should give back the list item, so that it parses again.
//
// The name must be new to r and consist of lower-case ASCII letters, digits,
// '-', '_' and '.', beginning with a letter or digit.
func (r *Registry) Register(name, summary string, factory func(arg string) (Behavior, error)) error {
	return r.RegisterInfo(BehaviorInfo{Name: name, Description: summary}, factory)
}

// RegisterInfo is Register with a full description: info.Param documents
// the parameter syntax (e.g. "=DURATION (default 1s)") where Register leaves
// it empty.
func (r *Registry) RegisterInfo(info BehaviorInfo, factory func(arg string) (Behavior, error)) error {
	if factory == nil {
		return fmt.Errorf("relaytest: register behaviour %q: nil factory", info.Name)
	}
	return r.register(behaviorDef{info: info, make: factory})
}

// RegisterCombination adds a name that expands in place to the behaviour
// list list, as signature-service does. Every item of list must parse with r
// now; the combination takes no parameter. Name and summary follow the rules
// of Register.
func (r *Registry) RegisterCombination(name, summary, list string) error {
	items := splitList(list)
	if len(items) == 0 {
		return fmt.Errorf("relaytest: register combination %q: empty list", name)
	}
	if _, err := r.current().parse(items); err != nil {
		return fmt.Errorf("relaytest: register combination %q: %w", name, err)
	}
	return r.register(behaviorDef{info: BehaviorInfo{Name: name, Description: summary}, combo: items})
}

func (r *Registry) register(d behaviorDef) error {
	if err := checkBehaviorName(d.info.Name); err != nil {
		return fmt.Errorf("relaytest: register behaviour: %w", err)
	}
	if sum := d.info.Description; strings.TrimSpace(sum) == "" || strings.ContainsAny(sum, "\r\n") {
		return fmt.Errorf("relaytest: register behaviour %q: the summary must be one non-empty line", d.info.Name)
	}
	if strings.ContainsAny(d.info.Param, "\r\n") {
		return fmt.Errorf("relaytest: register behaviour %q: the parameter syntax must be one line", d.info.Name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.current()
	if _, dup := s.lookup(d.info.Name); dup {
		return fmt.Errorf("relaytest: register behaviour %q: name already registered", d.info.Name)
	}
	r.set.Store(s.with(d))
	return nil
}

// checkBehaviorName enforces the name rules of Register.
func checkBehaviorName(name string) error {
	if name == "" {
		return errors.New("empty name")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '-' || c == '_' || c == '.')
		if !ok {
			return fmt.Errorf("invalid name %q: lower-case letters, digits, '-', '_' and '.' only, beginning with a letter or digit", name)
		}
	}
	return nil
}

// Behaviors lists every name r accepts, in the order they were added (the
// built-ins first), named combinations included.
func (r *Registry) Behaviors() []BehaviorInfo {
	s := r.current()
	if s == nil {
		return nil
	}
	out := make([]BehaviorInfo, len(s.defs))
	for i, d := range s.defs {
		out[i] = d.info
	}
	return out
}

// Parse parses a comma-separated behaviour list such as
// "footer-html,delay=2s,stamp-marker=X-Processed: yes". A parameter follows
// its name after "="; names are matched after trimming blanks and folding
// to lower case; named combinations expand in place. Unknown names,
// parameters given to behaviours that take none and invalid parameters are
// rejected. An empty list yields no behaviours. Every call builds new
// Behavior values, so stateful behaviours are never shared between lists.
func (r *Registry) Parse(list string) ([]Behavior, error) {
	return r.current().parse(splitList(list))
}

// MustParse is Parse for lists known to be valid, such as constants in
// tests; it panics on error.
func (r *Registry) MustParse(list string) []Behavior {
	bs, err := r.Parse(list)
	if err != nil {
		panic(err)
	}
	return bs
}

// splitList splits a behaviour list at commas and drops empty items.
func splitList(list string) []string {
	var out []string
	for _, item := range strings.Split(list, ",") {
		if strings.TrimSpace(item) != "" {
			out = append(out, item)
		}
	}
	return out
}

// lookup returns the definition of name; s may be nil.
func (s *behaviorSet) lookup(name string) (behaviorDef, bool) {
	if s == nil {
		return behaviorDef{}, false
	}
	i, ok := s.byName[name]
	if !ok {
		return behaviorDef{}, false
	}
	return s.defs[i], true
}

// parse builds the behaviours of a split list; s may be nil.
func (s *behaviorSet) parse(items []string) ([]Behavior, error) {
	var out []Behavior
	var add func(item string) error
	add = func(item string) error {
		name, param, hasParam := strings.Cut(item, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		d, ok := s.lookup(name)
		if !ok {
			return fmt.Errorf("unknown behaviour %q", name)
		}
		if d.combo != nil {
			if hasParam {
				return fmt.Errorf("behaviour %q takes no parameter", name)
			}
			for _, c := range d.combo {
				if err := add(c); err != nil {
					return err
				}
			}
			return nil
		}
		if hasParam && strings.TrimSpace(param) == "" {
			return fmt.Errorf("behaviour %q: empty parameter", name)
		}
		b, err := d.make(strings.TrimSpace(param))
		if err != nil {
			return fmt.Errorf("behaviour %q: %w", name, err)
		}
		if b == nil {
			return fmt.Errorf("behaviour %q: the factory returned no behaviour", name)
		}
		out = append(out, b)
		return nil
	}
	for _, item := range items {
		if err := add(item); err != nil {
			return nil, err
		}
	}
	return out, nil
}
