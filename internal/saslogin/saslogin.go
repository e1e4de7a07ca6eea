// Package saslogin holds the server sides of the SASL mechanisms the relay
// and relaytest offer for SMTP AUTH, so that both answer a login the same
// way.
//
// LOGIN is written in-house because go-sasl (v0.0.0-20241020182733) has
// only a LOGIN client, no server. PLAIN wraps go-sasl's server with the
// authorization identity rule both servers share.
package saslogin

import (
	"errors"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// ErrUnexpectedResponse is returned by a LOGIN server that receives a
// response after the exchange is over.
var ErrUnexpectedResponse = errors.New("LOGIN: unexpected response")

// NewServer returns the server side of the LOGIN mechanism. It asks for the
// user name ("Username:") unless the client sent it as initial response,
// then for the password ("Password:"), and ends the exchange with the error
// check returns for the two. go-smtp base64-encodes the challenges and
// decodes the responses.
func NewServer(check func(username, password string) error) sasl.Server {
	return &loginServer{check: check}
}

// loginServer is the state of one LOGIN exchange.
type loginServer struct {
	step     int // 0: start, 1: user name asked, 2: password asked, 3: done
	username string
	check    func(username, password string) error
}

// Next implements sasl.Server. A nil response at the start means the client
// sent no initial response; an empty one is an empty user name.
func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		if response == nil {
			l.step = 1
			return []byte("Username:"), false, nil
		}
		l.username, l.step = string(response), 2
		return []byte("Password:"), false, nil
	case 1:
		l.username, l.step = string(response), 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.check(l.username, string(response))
	}
	return nil, true, ErrUnexpectedResponse
}

// NewPlainServer returns go-sasl's PLAIN server with check for the user
// name and password. An authorization identity other than empty or the
// user name is refused with smtp.ErrAuthFailed (535 5.7.8) without calling
// check: neither server lets one user act for another.
func NewPlainServer(check func(username, password string) error) sasl.Server {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && identity != username {
			return smtp.ErrAuthFailed
		}
		return check(username, password)
	})
}
