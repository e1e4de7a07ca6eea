package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
)

// noRcptSource makes messages without recipients.
type noRcptSource struct{}

func (noRcptSource) Describe() string { return "no recipients" }

func (noRcptSource) Message(i int64) Message {
	data := []byte(fmt.Sprintf("Message-ID: <LG00000000.%010d@x>\r\n\r\nbody\r\n", i))
	return Message{From: "a@example.com", Size: int64(len(data)), Content: bytes.NewReader(data)}
}

// A message without recipients is a protocol error, with or without
// pipelining, and nothing is sent.
func TestSendWithoutRecipients(t *testing.T) {
	t.Parallel()
	for _, pipe := range []bool{false, true} {
		s, err := StartSink(SinkConfig{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		res, err := Run(context.Background(), Config{Addr: s.Addr(), Source: noRcptSource{}, Messages: 3, Pipelining: pipe})
		if err != nil {
			t.Fatal(err)
		}
		if res.Attempted != 3 || res.Accepted != 0 || len(res.Errors) != 1 || res.Errors[0].Key != "protocol" ||
			res.Errors[0].Count != 3 || res.Errors[0].Example != "message has no recipients" {
			t.Errorf("pipelining %v: %+v", pipe, res)
		}
		if n := s.Stats().Messages; n != 0 {
			t.Errorf("pipelining %v: the sink accepted %d messages", pipe, n)
		}
	}
}

// A dial cut short by the run's cancellation neither counts as an attempt
// nor as a connect error.
func TestCancelWhileDialling(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		cancel() // while the client waits for the greeting
		c.Close()
	}()
	src, err := NewSynthetic(SyntheticOptions{Size: 2000})
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, Config{Addr: ln.Addr().String(), Source: src, Messages: 5})
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempted != 0 || res.Failed != 0 || res.Connections != 0 || len(res.Errors) != 0 {
		t.Errorf("%+v, want nothing attempted", res)
	}
}

func TestErrorKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&ReplyError{Step: "MAIL", Reply: Reply{Code: 451}}, "451"},
		{fmt.Errorf("greeting: %w", &MalformedReplyError{Line: "x", Reason: "y"}), "malformed-reply"},
		{fmt.Errorf("%w: %w", errTLSHandshake, &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), "tls"},
		{fmt.Errorf("%w: %w", errTLSHandshake, io.EOF), "tls"},
		{errNoSTARTTLS, "tls"},
		{errors.New("remote error: tls: bad certificate"), "tls"},
		{&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, "timeout"},
		{fmt.Errorf("%w CHUNKING (BDAT)", errNotOffered), "protocol"},
		{fmt.Errorf("%w: 3 bytes short of its size", errContent), "protocol"},
		{errNoRecipients, "protocol"},
		{io.ErrUnexpectedEOF, "network"},
	} {
		if got := errorKey(tc.err, "network"); got != tc.want {
			t.Errorf("errorKey(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
