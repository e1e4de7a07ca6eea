package main

import (
	"crypto/subtle"
	"fmt"
	"strings"
)

// credentials is a user name and password given on the command line as
// USER:PASS (the password may contain colons). It is a flag.Value.
//
// TODO(merge, AUTH): register it as --auth on tenant and vendor and pass
// check as the servers' AUTH callback once relaytest has one; the sending
// side gets --auth-user and --auth-pass once relaytest's Sender
// authenticates.
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

// check reports whether user and pass are the credentials, comparing in
// constant time.
func (c *credentials) check(user, pass string) bool {
	u := subtle.ConstantTimeCompare([]byte(user), []byte(c.user))
	p := subtle.ConstantTimeCompare([]byte(pass), []byte(c.pass))
	return u&p == 1
}
