package rules

import (
	"fmt"
	"strings"

	"github.com/recallrelay/recallrelay/headers"
)

// Recall classifies a message as recall traffic.
type Recall int

const (
	// NotRecall is any message that is neither a recall request nor a
	// recall report.
	NotRecall Recall = iota
	// RecallRequest asks to recall an earlier message (Outlook's
	// IPM.Outlook.Recall).
	RecallRequest
	// RecallReport reports a recall's outcome (IPM.Recall.Report.*).
	RecallReport
)

func (r Recall) String() string {
	switch r {
	case RecallRequest:
		return "recall request"
	case RecallReport:
		return "recall report"
	}
	return "not recall"
}

// ClassifyRecall tells whether the message with header block h is recall
// traffic, by the signs the recall-request and recall-report predicates
// (and so the recall-bypass default) use, and says by which. body is what
// ScanBody found; with nil only the header block is consulted. A report
// sign wins over a request sign.
//
// It is exported for tools that must count recall traffic exactly as the
// relay recognizes it: the recall-survival report counts what reached a
// vendor with it.
func ClassifyRecall(h *headers.Header, body *BodyInfo) (Recall, string) {
	class := ""
	if body != nil {
		class = body.TNEFClass
	}
	if v := h.Get("X-MS-Exchange-Generated-Message-Source"); strings.EqualFold(strings.TrimSpace(v), recallAgent) {
		return RecallReport, "X-MS-Exchange-Generated-Message-Source: " + recallAgent
	}
	if isRecallReportClass(class) {
		return RecallReport, fmt.Sprintf("TNEF message class %q", class)
	}
	if ok, why := recallRequestHeader(h); ok {
		return RecallRequest, why
	}
	if isRecallRequestClass(class) {
		return RecallRequest, fmt.Sprintf("TNEF message class %q", class)
	}
	return NotRecall, ""
}
