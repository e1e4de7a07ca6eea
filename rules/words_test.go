package rules

import "testing"

func TestContainsPhrase(t *testing.T) {
	tests := []struct {
		text, phrase string
		want         bool
	}{
		{"urgent", "urgent", true},
		{"This is URGENT!", "urgent", true},
		{"(urgent)", "urgent", true},
		{"re:urgent", "urgent", true},
		{"urgent, please", "Urgent", true},
		{"urgently", "urgent", false},
		{"nonurgent", "urgent", false},
		{"urgent2", "urgent", false},
		{"2urgent", "urgent", false},
		{"urgent_now", "urgent", true}, // underscore is punctuation
		{"two words here", "two words", true},
		{"two   words", "two words", true},
		{"two\r\n words", "two  words", true},
		{"two-words", "two words", false},
		{"twowords", "two words", false},
		{"two wordsmith", "two words", false},
		{"say two words", "two words", true},
		{"[EXT] hello", "[ext]", true},
		{"x[ext]y", "[ext]", true}, // no boundary needed next to punctuation
		{"we use c++ here", "c++", true},
		{"Überweisung heute", "überweisung", true},
		{"ÜBERWEISUNG", "überweisung", true},
		{"Überweisungen", "überweisung", false},
		{"Kelvin \u212a", "k", true},  // Kelvin sign folds to k
		{"cafe\u0301", "cafe", false}, // a combining mark continues the word
		{"Ελληνικά κείμενα", "ΚΕΊΜΕΝΑ", true},
		{"Привет мир", "мир", true},
		{"Приветмир", "мир", false},
		{"撤回: [PATCH] net", "撤回", true},
		{"请撤回邮件", "撤回", true}, // no word boundaries in Han text
		{"回收: phosphor", "回收", true},
		{"", "urgent", false},
		{"urg", "urgent", false},
	}
	for _, tt := range tests {
		p, err := compilePhrase(tt.phrase)
		if err != nil {
			t.Fatalf("compilePhrase(%q): %v", tt.phrase, err)
		}
		if got := containsPhrase(foldText(tt.text), p); got != tt.want {
			t.Errorf("containsPhrase(%q, %q) = %v, want %v", tt.text, tt.phrase, got, tt.want)
		}
	}
}

func TestCompilePhraseErrors(t *testing.T) {
	for _, s := range []string{"", "   ", "\t\r\n", "a\x00b", "bad\xff"} {
		if _, err := compilePhrase(s); err == nil {
			t.Errorf("compilePhrase(%q) succeeded, want an error", s)
		}
	}
}
