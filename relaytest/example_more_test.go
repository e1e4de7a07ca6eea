package relaytest_test

import (
	"bytes"
	"fmt"
	"log"

	"github.com/recallrelay/recallrelay/relaytest"
)

// tagSubject is a behaviour of one's own: it tags the Subject the way some
// gateways mark external mail.
type tagSubject struct{}

func (tagSubject) Name() string { return "tag-subject" }

func (tagSubject) Transform(data []byte) ([]byte, error) {
	if bytes.HasPrefix(data, []byte("Subject: ")) {
		return append([]byte("Subject: [EXT] "), data[len("Subject: "):]...), nil
	}
	return bytes.Replace(data, []byte("\r\nSubject: "), []byte("\r\nSubject: [EXT] "), 1), nil
}

// A test registers its own behaviour and mixes it with built-ins.
func ExampleRegistry() {
	reg := relaytest.NewRegistry()
	err := reg.Register("tag-subject", "prefix the Subject with [EXT]", func(arg string) (relaytest.Behavior, error) {
		if arg != "" {
			return nil, fmt.Errorf("takes no parameter")
		}
		return tagSubject{}, nil
	})
	if err != nil {
		log.Fatal(err)
	}
	bs, err := reg.Parse("footer-text,tag-subject,delay=2s")
	if err != nil {
		log.Fatal(err)
	}
	for _, b := range bs {
		fmt.Println(b.Name())
	}
	out, err := bs[1].(relaytest.Transformer).Transform([]byte("From: a@contoso.com\r\nSubject: hello\r\n\r\nbody\r\n"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(relaytest.HeaderValues(out, "Subject"))
	// The package-level parser knows the built-ins only.
	_, err = relaytest.ParseBehaviors("tag-subject")
	fmt.Println(err)
	// Output:
	// footer-text
	// tag-subject
	// delay=2s
	// [[EXT] hello]
	// unknown behaviour "tag-subject"
}

// Explain shows the bytes that changed.
func ExampleIdentityResult_Explain() {
	sent := []byte("Message-ID: <a@contoso.com>\r\nX-MS-Exchange-CrossPremises-AuthAs: Internal\r\nSubject: hi\r\n\r\nbody\r\n")
	delivered := []byte("Message-ID: <b@vendor.example>\r\nSubject: hi\r\n\r\nbody\r\n")
	fmt.Print(relaytest.CompareIdentity(sent, delivered).Explain())
	// Output:
	// identity broken: 1 field missing, 1 field changed (2 identity fields and 0 TNEF parts sent)
	// changed message-id:
	//   sent:      "Message-ID: <a@contoso.com>\r\n"
	//   delivered: "Message-ID: <b@vendor.example>\r\n"
	// missing x-ms-exchange-crosspremises-authas:
	//   sent:      "X-MS-Exchange-CrossPremises-AuthAs: Internal\r\n"
	//   delivered: (none)
}

// TextParts decodes transfer encodings and charsets.
func ExampleTextParts() {
	msg := []byte("Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9 cr=E8me\r\n")
	parts, err := relaytest.TextParts(msg)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s %s %q\n", parts[0].ContentType, parts[0].Charset, parts[0].Text)
	// Output:
	// text/plain iso-8859-1 "Café crème\r\n"
}
