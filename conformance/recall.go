package conformance

import (
	"bytes"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/rules"
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

// ClassifyRecall tells whether a message (CRLF line endings) is recall
// traffic, exactly as the relay's recall-bypass default recognizes it
// (rules.ClassifyRecall): by its header fields (the recall markers, the
// recall traffic-type diagnostics, the legacy Outlook recall artefact) and
// by the message class of its winmail.dat part. A message whose header
// block cannot be read counts as no recall traffic.
func ClassifyRecall(data []byte) RecallKind {
	h, body, err := headers.ReadHeader(bytes.NewReader(data), maxHeaderBytes)
	if err != nil {
		return NotRecall
	}
	// Problems scanning the body leave what was found; a part that could
	// not be read shows no sign.
	info, _ := rules.ScanBody(h, body, rules.ScanLimits{})
	switch k, _ := rules.ClassifyRecall(h, info); k {
	case rules.RecallRequest:
		return RecallRequest
	case rules.RecallReport:
		return RecallReport
	}
	return NotRecall
}
