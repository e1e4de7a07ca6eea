package main

import (
	"fmt"
	"strings"

	"github.com/recallrelay/recallrelay/relaytest"
)

// credentials is a user name and password given on the command line as
// USER:PASS (the password may contain colons). It is a flag.Value.
type credentials struct {
	user, pass string
}

// String implements flag.Value; it never shows the password.
func (c *credentials) String() string {
	if c == nil || c.user == "" {
		return ""
	}
	return c.user + ":***"
}

// Set implements flag.Value.
func (c *credentials) Set(s string) error {
	user, pass, ok := strings.Cut(s, ":")
	if !ok || user == "" || pass == "" {
		return fmt.Errorf("want USER:PASS with neither empty")
	}
	c.user, c.pass = user, pass
	return nil
}

// serverAuth holds the AUTH flags of a listener.
type serverAuth struct {
	creds    credentials
	optional bool
}

// registerServerAuth defines --auth and --auth-optional on fs.
func registerServerAuth(fs *flagSet) *serverAuth {
	a := &serverAuth{}
	fs.Var(&a.creds, "auth", "offer AUTH PLAIN and LOGIN and accept exactly `USER:PASS`; MAIL FROM before a login is refused with 530 5.7.0 unless --auth-optional")
	fs.BoolVar(&a.optional, "auth-optional", false, "with --auth, take mail without a login too (a login is still checked, and shown as user=)")
	return a
}

// config returns the Auth callback and RequireAuth of relaytest's server
// configuration: relaytest.PasswordAuth of the --auth credentials (a
// wrong user name or password is answered 535 5.7.8), or nil and false
// without --auth.
func (a *serverAuth) config() (func(user, pass string) error, bool, error) {
	if a.creds.user == "" {
		if a.optional {
			return nil, false, fmt.Errorf("--auth-optional needs --auth")
		}
		return nil, false, nil
	}
	return relaytest.PasswordAuth(a.creds.user, a.creds.pass), !a.optional, nil
}

// clientAuth holds the AUTH flags of a client: "fakemta send" and the
// vendor's send-back (prefix "return-").
type clientAuth struct {
	prefix           string
	user, pass, mech string
}

// registerClientAuth defines --PREFIXauth-user, --PREFIXauth-pass and
// --PREFIXauth-mech on fs; what names the server.
func registerClientAuth(fs *flagSet, prefix, what string) *clientAuth {
	c := &clientAuth{prefix: prefix}
	fs.StringVar(&c.user, prefix+"auth-user", "", "log in to "+what+" with AUTH as `USER` after EHLO (and STARTTLS); needs --"+prefix+"auth-pass")
	fs.StringVar(&c.pass, prefix+"auth-pass", "", "the `PASSWORD` of --"+prefix+"auth-user")
	fs.StringVar(&c.mech, prefix+"auth-mech", "", "SASL `MECHANISM` of --"+prefix+"auth-user: PLAIN or LOGIN (default PLAIN when offered, else LOGIN)")
	return c
}

// credentials returns the Credentials of relaytest's Sender, nil without
// --PREFIXauth-user.
func (c *clientAuth) credentials() (*relaytest.Credentials, error) {
	p := "--" + c.prefix
	switch {
	case c.user == "" && c.pass == "" && c.mech == "":
		return nil, nil
	case c.user == "" || c.pass == "":
		return nil, fmt.Errorf("%sauth-user and %sauth-pass go together", p, p)
	}
	mech := strings.ToUpper(c.mech)
	if mech != "" && mech != "PLAIN" && mech != "LOGIN" {
		return nil, fmt.Errorf("%sauth-mech must be PLAIN or LOGIN, not %q", p, c.mech)
	}
	return &relaytest.Credentials{Username: c.user, Password: c.pass, Mechanism: mech}, nil
}
