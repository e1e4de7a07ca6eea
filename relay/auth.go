package relay

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"os"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"github.com/recallrelay/recallrelay/internal/saslogin"
)

// Authenticator checks SMTP AUTH credentials.
type Authenticator interface {
	Authenticate(username, password string) bool
}

// PasswordFile is an Authenticator over "user:bcrypt-hash" lines, as
// `htpasswd -nbB user password` writes them. Blank lines and lines starting
// with '#' are ignored.
type PasswordFile struct {
	users map[string][]byte
	// dummy is a hash of the file's cost that an unknown user's password
	// is compared with, so that refusing an unknown user takes as long as
	// refusing a wrong password. It is made when the file is loaded, not
	// at the first unknown user, whose refusal would otherwise take twice
	// as long as any other.
	dummy []byte
}

// LoadPasswordFile reads a credentials file.
func LoadPasswordFile(path string) (*PasswordFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	defer f.Close()
	pf := &PasswordFile{users: map[string][]byte{}}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("credentials %s:%d: want user:bcrypt-hash", path, n)
		}
		cost, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			return nil, fmt.Errorf("credentials %s:%d: user %s: not a bcrypt hash", path, n, user)
		}
		if pf.dummy == nil {
			if pf.dummy, err = bcrypt.GenerateFromPassword([]byte("recallrelay-dummy"), cost); err != nil {
				return nil, fmt.Errorf("credentials %s:%d: %w", path, n, err)
			}
		}
		if _, dup := pf.users[user]; dup {
			return nil, fmt.Errorf("credentials %s:%d: user %s listed twice", path, n, user)
		}
		pf.users[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("credentials %s: %w", path, err)
	}
	if len(pf.users) == 0 {
		return nil, fmt.Errorf("credentials %s: no users", path)
	}
	return pf, nil
}

// Authenticate implements Authenticator.
func (pf *PasswordFile) Authenticate(username, password string) bool {
	hash, ok := pf.users[username]
	if !ok {
		bcrypt.CompareHashAndPassword(pf.dummy, []byte(password))
		return false
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
}

// authRequired reports whether clients of this listener must authenticate
// (by client certificate or SMTP AUTH) before MAIL FROM.
func (l ListenerConfig) authRequired() bool {
	return len(l.ClientCertNames) > 0 || l.Users != nil
}

// certName returns the name of a verified client certificate that is in
// the allowed list, or "".
func certName(st tls.ConnectionState, allowed []string) string {
	if len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return ""
	}
	leaf := st.PeerCertificates[0]
	names := append([]string{leaf.Subject.CommonName}, leaf.DNSNames...)
	for _, n := range names {
		for _, a := range allowed {
			if n != "" && strings.EqualFold(n, a) {
				return n
			}
		}
	}
	return ""
}

// AuthMechanisms implements smtp.AuthSession: PLAIN and LOGIN when the
// listener has users. go-smtp offers and accepts AUTH only over TLS.
func (s *session) AuthMechanisms() []string {
	if s.leg.lc.Users == nil {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth implements smtp.AuthSession.
func (s *session) Auth(mech string) (sasl.Server, error) {
	check := func(user, pass string) error {
		if !s.leg.lc.Users.Authenticate(user, pass) {
			s.log(zerolog.WarnLevel).Str("user", user).Msg("authentication failed")
			s.fail(smtp.ErrAuthFailed)
			return smtp.ErrAuthFailed
		}
		s.setAuth("user:" + user)
		return nil
	}
	switch mech {
	case sasl.Plain:
		return saslogin.NewPlainServer(check), nil
	case sasl.Login:
		return saslogin.NewServer(check), nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}
