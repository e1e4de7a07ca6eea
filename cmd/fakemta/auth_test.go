package main

import "testing"

func TestCredentials(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in         string
		ok         bool
		user, pass string
	}{
		{"alice:secret", true, "alice", "secret"},
		{"alice:se:cr:et", true, "alice", "se:cr:et"},
		{"alice", false, "", ""},
		{":secret", false, "", ""},
		{"alice:", false, "", ""},
	} {
		var c credentials
		err := c.Set(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("Set(%q): %v", tc.in, err)
			continue
		}
		if !tc.ok {
			continue
		}
		if !c.check(tc.user, tc.pass) || c.check(tc.user, tc.pass+"x") || c.check(tc.user+"x", tc.pass) || c.check("", "") {
			t.Errorf("%q: check accepts the wrong credentials or refuses the right ones", tc.in)
		}
		if s := c.String(); s != tc.user+":***" {
			t.Errorf("String() = %q", s)
		}
	}
}
