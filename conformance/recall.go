package conformance

import (
	"bytes"
	"strings"

	"github.com/emersion/go-message"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/tnef"
)

// RecallKind classifies a message as recall traffic.
type RecallKind string

const (
	// NotRecall is any message that is neither a recall request nor a
	// recall report.
	NotRecall RecallKind = ""
	// RecallRequest is a recall request (message class IPM.Outlook.Recall).
	RecallRequest RecallKind = "request"
	// RecallReport is a recall report (message class IPM.Recall.Report*).
	RecallReport RecallKind = "report"
)

// recallAgent is the X-MS-Exchange-Generated-Message-Source value of
// recall reports.
const recallAgent = "Transport Message Recall Routing Agent"

// ClassifyRecall tells whether a message (CRLF line endings) is recall
// traffic, by what Exchange puts on it (docs/exchange-round-trip.md §4):
//
//   - a recall report carries X-MS-Exchange-Generated-Message-Source:
//     Transport Message Recall Routing Agent, or a winmail.dat whose TNEF
//     message class starts with IPM.Recall.Report;
//   - a recall request carries X-MS-Exchange-RecallReportGenerated, or a
//     winmail.dat whose TNEF message class is IPM.Outlook.Recall.
//
// The report signs are checked first. The TNEF class is the
// PidTagMessageClass property when the stream has one, else the
// attMessageClass attribute. Unreadable headers and TNEF parts count as no
// sign.
func ClassifyRecall(data []byte) RecallKind {
	request := false
	if h, _, err := headers.ReadHeader(bytes.NewReader(data), maxHeaderBytes); err == nil {
		for _, v := range h.Values("X-MS-Exchange-Generated-Message-Source") {
			if strings.EqualFold(strings.TrimSpace(v), recallAgent) {
				return RecallReport
			}
		}
		request = h.Has("X-MS-Exchange-RecallReportGenerated")
	}
	for _, class := range tnefClasses(data) {
		switch {
		case hasPrefixFold(class, "IPM.Recall.Report"):
			return RecallReport
		case strings.EqualFold(class, "IPM.Outlook.Recall"):
			request = true
		}
	}
	if request {
		return RecallRequest
	}
	return NotRecall
}

// tnefClasses returns the message class of every TNEF part of msg that
// tnef.Scan can read.
func tnefClasses(msg []byte) []string {
	e, err := message.Read(bytes.NewReader(msg))
	if e == nil || (err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err)) {
		return nil
	}
	var out []string
	_ = e.Walk(func(_ []int, part *message.Entity, err error) error {
		if part == nil || !isTNEFPart(part) {
			return nil
		}
		info, err := tnef.Scan(part.Body, tnef.Limits{})
		if err != nil {
			return nil
		}
		class := info.PropertyClass
		if class == "" {
			class = info.AttributeClass
		}
		out = append(out, class)
		return nil
	})
	return out
}

// isTNEFPart reports whether part is a winmail.dat: a TNEF media type, or
// that file name on another type (some clients label it
// application/octet-stream).
func isTNEFPart(part *message.Entity) bool {
	t, params, _ := part.Header.ContentType()
	switch strings.ToLower(t) {
	case "application/ms-tnef", "application/vnd.ms-tnef":
		return true
	}
	name := params["name"]
	if _, dp, err := part.Header.ContentDisposition(); err == nil && dp["filename"] != "" {
		name = dp["filename"]
	}
	return strings.EqualFold(name, "winmail.dat")
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
