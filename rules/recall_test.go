package rules

import (
	"bytes"
	"strings"
	"testing"

	"github.com/recallrelay/recallrelay/headers"
)

func TestClassifyRecall(t *testing.T) {
	tnefAs := func(typ, class string) string {
		return "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" +
			"--b\r\nContent-Type: " + typ + "\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64Lines(tnefStream(class)) + "\r\n--b--\r\n"
	}
	tests := []struct {
		name, msg string
		want      Recall
		why       string
	}{
		{"request marker", "X-MS-Exchange-RecallReportGenerated: true\r\n\r\nx\r\n", RecallRequest, "X-MS-Exchange-RecallReportGenerated present"},
		{"cloud recall diagnostic", "X-MS-TrafficTypeDiagnostic: AM0PR01MB1:EE_MessageRecallEmail\r\n\r\nx\r\n", RecallRequest, "ends in EE_MessageRecallEmail"},
		{"legacy artefact", "X-CallingTelephoneNumber: IPM.Note\r\nX-VoiceMessageDuration: 1\r\nX-FaxNumberOfPages: 0\r\n\r\nx\r\n", RecallRequest, "artefact"},
		{"a real telephone number", "X-CallingTelephoneNumber: +41 44 000 00 00\r\nX-VoiceMessageDuration: 1\r\nX-FaxNumberOfPages: 0\r\n\r\nx\r\n", NotRecall, ""},
		{"report agent", "X-MS-Exchange-Generated-Message-Source: Transport Message Recall Routing Agent\r\n\r\nx\r\n", RecallReport, "Routing Agent"},
		{"report wins over request", "X-MS-Exchange-RecallReportGenerated: true\r\nX-MS-Exchange-Generated-Message-Source: Transport Message Recall Routing Agent\r\n\r\n", RecallReport, ""},
		{"other generated mail", "X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent\r\n\r\nx\r\n", NotRecall, ""},
		{"TNEF recall class", tnefAs("application/ms-tnef", "IPM.Outlook.Recall"), RecallRequest, `TNEF message class "IPM.Outlook.Recall"`},
		{"TNEF report class, vnd type", tnefAs("application/vnd.ms-tnef", "IPM.Recall.Report.Success"), RecallReport, "IPM.Recall.Report.Success"},
		{"winmail.dat as octet-stream", tnefAs(`application/octet-stream; name="winmail.dat"`, "IPM.Outlook.Recall"), RecallRequest, "IPM.Outlook.Recall"},
		{"TNEF note", tnefAs("application/ms-tnef", "IPM.Note"), NotRecall, ""},
		{"subject only", "Subject: Recall: the figures\r\n\r\nx\r\n", NotRecall, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, body, err := headers.ReadHeader(strings.NewReader(tt.msg), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			info, _ := ScanBody(h, body, ScanLimits{})
			got, why := ClassifyRecall(h, info)
			if got != tt.want || !strings.Contains(why, tt.why) {
				t.Errorf("ClassifyRecall = %v (%s), want %v (%s)", got, why, tt.want, tt.why)
			}
		})
	}
}

// Every recall request of the corpus (001-015) is recognized, by header
// block alone; no other corpus message is taken for recall traffic.
func TestClassifyRecallCorpus(t *testing.T) {
	for _, name := range corpusFiles(t, "*.eml") {
		h, body := corpusMessage(t, name)
		info, _ := ScanBody(h, bytes.NewReader(body), ScanLimits{})
		got, why := ClassifyRecall(h, info)
		want := NotRecall
		if strings.Contains(name, "-recall-") {
			want = RecallRequest
			if headerOnly, _ := ClassifyRecall(h, nil); headerOnly != RecallRequest {
				t.Errorf("%s: not recognized from the header block alone", name)
			}
		}
		if got != want {
			t.Errorf("%s: %v (%s), want %v", name, got, why, want)
		}
	}
}
