package rules

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file implements Exchange's "contains words" matching
// (HeaderContainsWords, SubjectContainsWords): a word or phrase matches when
// it occurs in the text as whole words, ignoring case. Written in-house: no
// library implements these semantics, and regexp's \b knows only ASCII.
//
// The rules:
//   - Case is ignored by Unicode simple case folding ("ÜBER" matches "über",
//     "K" matches the Kelvin sign).
//   - Runs of white space count as one space, in the text and in the phrase:
//     "two words" matches "two   words" and a field folded between them.
//   - A match must start and end at a word boundary: where the phrase
//     starts (ends) with a letter, digit or combining mark, the character
//     before (after) it in the text must not be one. "urgent" matches
//     "URGENT!", "(urgent)" and "re:urgent", not "urgently" or "nonurgent".
//     Phrases may contain punctuation ("c++", "[ext]"); no boundary is
//     needed next to it.
//   - Scripts written without spaces between words (Han, Hiragana,
//     Katakana, Thai, Lao, Khmer, Myanmar) have no detectable word
//     boundaries: next to their characters any position is a boundary, so
//     "撤回" matches "请撤回邮件".

// phrase is a compiled word or phrase: case-folded runes, white space
// collapsed to single spaces.
type phrase struct {
	text  string // as written, for explanations
	runes []rune
}

// compilePhrase checks and compiles one entry of a words list.
func compilePhrase(s string) (phrase, error) {
	if !utf8.ValidString(s) {
		return phrase{}, fmt.Errorf("not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) && !unicode.IsSpace(r) {
			return phrase{}, fmt.Errorf("contains control character %U", r)
		}
	}
	runes := foldText(s)
	if len(runes) == 0 {
		return phrase{}, fmt.Errorf("empty word")
	}
	return phrase{text: s, runes: runes}, nil
}

// foldText returns s case-folded, with white space collapsed to single
// spaces and trimmed.
func foldText(s string) []rune {
	out := make([]rune, 0, len(s))
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			space = len(out) > 0
			continue
		}
		if space {
			out = append(out, ' ')
			space = false
		}
		out = append(out, foldRune(r))
	}
	return out
}

// foldRune maps r to the smallest rune of its simple case-folding orbit, so
// that runes equal under case folding map to the same rune.
func foldRune(r rune) rune {
	min := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f < min {
			min = f
		}
	}
	return min
}

// isWordRune reports whether r is part of a word: a letter, digit or
// combining mark.
func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)
}

// isUnspaced reports whether r belongs to a script written without spaces
// between words.
func isUnspaced(r rune) bool {
	return unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Thai, unicode.Lao, unicode.Khmer, unicode.Myanmar)
}

// joins reports whether a and b, adjacent in that order, are inside one
// word, so that no word boundary lies between them.
func joins(a, b rune) bool {
	return isWordRune(a) && isWordRune(b) && !isUnspaced(a) && !isUnspaced(b)
}

// containsPhrase reports whether text (as returned by foldText) contains p
// as whole words.
func containsPhrase(text []rune, p phrase) bool {
	n := len(p.runes)
	first, last := p.runes[0], p.runes[n-1]
	for i := 0; i+n <= len(text); i++ {
		if text[i] != first {
			continue
		}
		if !runesEqual(text[i:i+n], p.runes) {
			continue
		}
		if i > 0 && joins(text[i-1], first) {
			continue
		}
		if i+n < len(text) && joins(last, text[i+n]) {
			continue
		}
		return true
	}
	return false
}

func runesEqual(a, b []rune) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// quoteList formats phrases for explanations: "a", "b" or "c".
func quoteList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = fmt.Sprintf("%q", s)
	}
	switch len(q) {
	case 0:
		return ""
	case 1:
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}
