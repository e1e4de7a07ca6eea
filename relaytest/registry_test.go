package relaytest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// addHeader is a custom behaviour for the registry tests: it prepends a
// header field.
type addHeader struct{ field string }

func (a *addHeader) Name() string { return "add-header=" + a.field }

func (a *addHeader) Transform(data []byte) ([]byte, error) {
	return append([]byte(a.field+"\r\n"), data...), nil
}

func newAddHeader(arg string) (Behavior, error) {
	if !strings.Contains(arg, ":") {
		return nil, errors.New("want NAME: VALUE")
	}
	return &addHeader{field: arg}, nil
}

// addHeaderRegistry returns a new Registry with add-header registered.
func addHeaderRegistry(t *testing.T) *Registry {
	t.Helper()
	r := NewRegistry()
	if err := r.Register("add-header", "prepend a header field", newAddHeader); err != nil {
		t.Fatal(err)
	}
	return r
}

// behaviorNames returns the names of bs, separated by spaces.
func behaviorNames(bs []Behavior) string {
	names := make([]string, len(bs))
	for i, b := range bs {
		names[i] = b.Name()
	}
	return strings.Join(names, " ")
}

func TestRegistryCustomBehaviour(t *testing.T) {
	t.Parallel()
	r := addHeaderRegistry(t)
	bs, err := r.Parse("footer-text, Add-Header=X-Custom: 1 ,delay=2s,add-header=X-Custom: 2,signature-service")
	if err != nil {
		t.Fatal(err)
	}
	want := "footer-text add-header=X-Custom: 1 delay=2s add-header=X-Custom: 2 footer-html reencode strip-unknown-headers stamp-marker"
	if got := behaviorNames(bs); got != want {
		t.Errorf("names %q, want %q", got, want)
	}
	// Every occurrence is its own value, and the parsed behaviour works.
	if bs[1].(*addHeader) == bs[3].(*addHeader) {
		t.Error("two occurrences share one behaviour")
	}
	m := genKind(t, KindPlain)
	out, err := bs[1].(Transformer).Transform(m.Data)
	if err != nil || !bytes.Equal(out, append([]byte("X-Custom: 1\r\n"), m.Data...)) {
		t.Errorf("custom transform: %v", err)
	}
	if got := HeaderValues(out, "X-Custom"); fmt.Sprint(got) != "[1]" {
		t.Errorf("X-Custom = %q", got)
	}
	// The names parse back.
	for _, b := range bs {
		if again, err := r.Parse(b.Name()); err != nil || len(again) != 1 || again[0].Name() != b.Name() {
			t.Errorf("%q does not parse back: %v", b.Name(), err)
		}
	}

	for _, list := range []string{"add-header", "add-header=", "add-header=no colon"} {
		if _, err := r.Parse(list); err == nil || !strings.Contains(err.Error(), `"add-header"`) {
			t.Errorf("Parse(%q) = %v, want an error naming the behaviour", list, err)
		}
	}
	// Nothing global changed: the package functions and new registries
	// know the built-ins only.
	if _, err := ParseBehaviors("add-header=X-A: 1"); err == nil {
		t.Error("ParseBehaviors knows a behaviour registered elsewhere")
	}
	if _, err := NewRegistry().Parse("add-header=X-A: 1"); err == nil {
		t.Error("a new registry knows a behaviour registered elsewhere")
	}
	if len(Behaviors()) != len(r.Behaviors())-1 {
		t.Errorf("Behaviors() lists %d, the registry %d", len(Behaviors()), len(r.Behaviors()))
	}
	last := r.Behaviors()[len(r.Behaviors())-1]
	if last != (BehaviorInfo{Name: "add-header", Description: "prepend a header field"}) {
		t.Errorf("listed as %+v", last)
	}
}

func TestRegistryRejects(t *testing.T) {
	t.Parallel()
	ok := func(string) (Behavior, error) { return passthrough{}, nil }
	r := NewRegistry()
	if err := r.Register("mine", "my behaviour", ok); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, summary string
		factory       func(string) (Behavior, error)
		want          string
	}{
		{"mine", "again", ok, "already registered"},
		{"passthrough", "shadow a built-in", ok, "already registered"},
		{"", "no name", ok, "empty name"},
		{"Mine2", "upper case", ok, "invalid name"},
		{"a,b", "comma", ok, "invalid name"},
		{"a=b", "equals", ok, "invalid name"},
		{"with space", "blank", ok, "invalid name"},
		{"-dash", "leading dash", ok, "invalid name"},
		{"naïve", "not ASCII", ok, "invalid name"},
		{"fine", "", ok, "summary"},
		{"fine", "two\nlines", ok, "summary"},
		{"fine", "nil factory", nil, "nil factory"},
	}
	for _, tc := range tests {
		if err := r.Register(tc.name, tc.summary, tc.factory); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Register(%q, %q) = %v, want an error with %q", tc.name, tc.summary, err, tc.want)
		}
	}
	if err := r.RegisterInfo(BehaviorInfo{Name: "fine", Description: "ok", Param: "=A\nB"}, ok); err == nil {
		t.Error("a two-line parameter syntax was accepted")
	}
	for _, name := range []string{"v2", "my_vendor.x-1", "8bit"} {
		if err := r.Register(name, "valid", ok); err != nil {
			t.Errorf("Register(%q): %v", name, err)
		}
	}
	// A factory that returns no behaviour is refused at parse time.
	if err := r.Register("broken", "returns nothing", func(string) (Behavior, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Parse("broken"); err == nil {
		t.Error("a nil behaviour was accepted")
	}
	// The zero Registry is empty.
	var empty Registry
	if _, err := empty.Parse("passthrough"); err == nil {
		t.Error("the zero Registry knows passthrough")
	}
	if bs, err := empty.Parse(" , "); err != nil || len(bs) != 0 || len(empty.Behaviors()) != 0 {
		t.Errorf("empty list on the zero Registry: %v %v", bs, err)
	}
	if err := empty.Register("mine", "works on the zero value", ok); err != nil {
		t.Fatal(err)
	}
	if bs, err := empty.Parse("mine"); err != nil || len(bs) != 1 {
		t.Errorf("zero Registry after Register: %v %v", bs, err)
	}
}

func TestRegistryCombination(t *testing.T) {
	t.Parallel()
	r := addHeaderRegistry(t)
	if err := r.RegisterCombination("my-vendor", "what my vendor does", "add-header=X-Mine: yes, strip-ms-headers,delay=3s"); err != nil {
		t.Fatal(err)
	}
	bs, err := r.Parse("passthrough,my-vendor,split-recipients")
	if err != nil {
		t.Fatal(err)
	}
	if got := behaviorNames(bs); got != "passthrough add-header=X-Mine: yes strip-ms-headers delay=3s split-recipients" {
		t.Errorf("expanded to %q", got)
	}
	for _, tc := range []struct{ name, list, want string }{
		{"bad-item", "passthrough,nope", `unknown behaviour "nope"`},
		{"bad-param", "delay=never", `behaviour "delay"`},
		{"empty", " , ", "empty list"},
		{"my-vendor", "passthrough", "already registered"},
	} {
		if err := r.RegisterCombination(tc.name, "x", tc.list); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("RegisterCombination(%q, %q) = %v, want %q", tc.name, tc.list, err, tc.want)
		}
	}
	if _, err := r.Parse("my-vendor=x"); err == nil {
		t.Error("a combination took a parameter")
	}
}

func TestRegistryConcurrentUse(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 8; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("custom-%d", i)
			// The factory uses the registry itself: no lock is held.
			errs <- r.Register(name, "registered concurrently", func(string) (Behavior, error) {
				bs, err := r.Parse("passthrough")
				if err != nil {
					return nil, err
				}
				return bs[0], nil
			})
			if _, err := r.Parse(name); err != nil {
				errs <- err
			}
		}()
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				if _, err := r.Parse("signature-service,delay=1s"); err != nil {
					errs <- err
				}
				_ = r.Behaviors()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := len(r.Behaviors()); n != len(Behaviors())+8 {
		t.Errorf("%d behaviours after 8 registrations", n)
	}
}
