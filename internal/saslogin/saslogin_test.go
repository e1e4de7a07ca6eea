package saslogin

import (
	"errors"
	"slices"
	"testing"

	"github.com/emersion/go-smtp"
)

var errWrong = errors.New("wrong password")

// checkFor accepts user "u" with password "p" and records what it was
// asked.
func checkFor(calls *[]string) func(username, password string) error {
	return func(username, password string) error {
		*calls = append(*calls, username+":"+password)
		if username != "u" || password != "p" {
			return errWrong
		}
		return nil
	}
}

// step is one response and the expected answer to it.
type step struct {
	response  []byte
	challenge string
	done      bool
	err       error
}

func TestLoginServer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		steps []step
		calls []string
	}{
		{"without initial response", []step{
			{nil, "Username:", false, nil},
			{[]byte("u"), "Password:", false, nil},
			{[]byte("p"), "", true, nil},
		}, []string{"u:p"}},
		{"with initial response", []step{
			{[]byte("u"), "Password:", false, nil},
			{[]byte("p"), "", true, nil},
		}, []string{"u:p"}},
		{"empty initial response is an empty user name", []step{
			{[]byte{}, "Password:", false, nil},
			{[]byte("p"), "", true, errWrong},
		}, []string{":p"}},
		{"wrong password", []step{
			{nil, "Username:", false, nil},
			{[]byte("u"), "Password:", false, nil},
			{[]byte("x"), "", true, errWrong},
		}, []string{"u:x"}},
		{"response after the end", []step{
			{[]byte("u"), "Password:", false, nil},
			{[]byte("p"), "", true, nil},
			{[]byte("more"), "", true, ErrUnexpectedResponse},
		}, []string{"u:p"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var calls []string
			s := NewServer(checkFor(&calls))
			for i, st := range tt.steps {
				challenge, done, err := s.Next(st.response)
				if string(challenge) != st.challenge || done != st.done || !errors.Is(err, st.err) {
					t.Fatalf("step %d: Next(%q) = %q, %v, %v; want %q, %v, %v",
						i, st.response, challenge, done, err, st.challenge, st.done, st.err)
				}
			}
			if !slices.Equal(calls, tt.calls) {
				t.Errorf("check called with %q, want %q", calls, tt.calls)
			}
		})
	}
}

func TestPlainServer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		response string // identity NUL username NUL password
		err      error
		calls    []string
	}{
		{"no identity", "\x00u\x00p", nil, []string{"u:p"}},
		{"identity equal to the user name", "u\x00u\x00p", nil, []string{"u:p"}},
		{"wrong password", "\x00u\x00x", errWrong, []string{"u:x"}},
		{"identity of another user", "v\x00u\x00p", smtp.ErrAuthFailed, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var calls []string
			s := NewPlainServer(checkFor(&calls))
			challenge, done, err := s.Next([]byte(tt.response))
			if challenge != nil || !done || !errors.Is(err, tt.err) {
				t.Fatalf("Next(%q) = %q, %v, %v; want nil, true, %v", tt.response, challenge, done, err, tt.err)
			}
			if !slices.Equal(calls, tt.calls) {
				t.Errorf("check called with %q, want %q", calls, tt.calls)
			}
		})
	}
}
