package yamlconf

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written as a Go duration string: "30s",
// "5m", "72h", "1h30m" (units ns, us, ms, s, m, h). A bare number is
// rejected (except 0), so that "30" cannot silently mean 30 nanoseconds.
type Duration time.Duration

// ParseDuration parses a duration written as Duration documents.
func ParseDuration(s string) (Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want a number with a unit, like 30s, 5m or 72h (units: ms, s, m, h)", s)
	}
	return Duration(d), nil
}

// String formats d like time.Duration.String without trailing zero units:
// "5m", "72h", "1h30m", "2.5s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return nodeError(n, "want a duration like 30s, 5m or 72h")
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return nodeError(n, err.Error())
	}
	*d = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// ByteSize is a number of bytes. It is written as a decimal integer, with
// no unit or with one of
//
//	B                       bytes
//	k, M, G, T              powers of 1000 (10k, 150M)
//	kB, MB, GB, TB          the same (10kB, 150MB)
//	Ki, Mi, Gi, Ti          powers of 1024 (64Ki, 1Mi)
//	KiB, MiB, GiB, TiB      the same (64KiB, 1MiB)
//
// Units are case-insensitive ("150mb" is 150MB, "10K" is 10kB) and may be
// set apart from the number by spaces ("150 MB"); spaces around the whole
// are ignored. Fractions ("1.5MB") are not allowed, so that every size is
// an exact number of bytes. In YAML, a plain integer is read with YAML's
// integer syntax (1_000, 0x400) as well.
//
// This is the one syntax of sizes in recallrelay's files: the
// configuration's limits (max_message_size, ...) and the rules file's
// size_over.
type ByteSize int64

// Byte size units.
const (
	B   ByteSize = 1
	KB  ByteSize = 1000
	MB  ByteSize = 1000 * KB
	GB  ByteSize = 1000 * MB
	TB  ByteSize = 1000 * GB
	KiB ByteSize = 1 << 10
	MiB ByteSize = 1 << 20
	GiB ByteSize = 1 << 30
	TiB ByteSize = 1 << 40
)

var sizeUnits = map[string]ByteSize{
	"": B, "b": B,
	"k": KB, "kb": KB, "m": MB, "mb": MB, "g": GB, "gb": GB, "t": TB, "tb": TB,
	"ki": KiB, "kib": KiB, "mi": MiB, "mib": MiB, "gi": GiB, "gib": GiB, "ti": TiB, "tib": TiB,
}

// ParseByteSize parses a size written as ByteSize documents. A leading
// minus sign is accepted, so that the caller can report the value as
// negative or not positive rather than as unreadable.
//
// Written in-house: no module in go.mod parses sizes, and the common
// libraries accept fractions ("1.5MB") that this format keeps out on
// purpose, so that every size is an exact number of bytes.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	neg := strings.HasPrefix(t, "-")
	if neg {
		t = t[1:]
	}
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("invalid size %q: want an integer number of bytes or a size like 150MB, 10kB, 64KiB or 1MiB", s)
	}
	if strings.HasPrefix(t[i:], ".") || strings.HasPrefix(t[i:], ",") {
		return 0, fmt.Errorf("invalid size %q: fractions are not allowed; use a smaller unit (1500kB, not 1.5MB)", s)
	}
	unit, ok := sizeUnits[strings.ToLower(strings.TrimSpace(t[i:]))]
	if !ok {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)", s, strings.TrimSpace(t[i:]))
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil || n > math.MaxInt64/int64(unit) {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	v := ByteSize(n) * unit
	if neg {
		v = -v
	}
	return v, nil
}

// String formats b with the unit that gives the smallest exact integer,
// such as "150MB", "1MiB" or "1500" for 1500 bytes.
func (b ByteSize) String() string {
	if b == 0 {
		return "0"
	}
	best, bestN := "", int64(b)
	for _, u := range []struct {
		name string
		size ByteSize
	}{{"kB", KB}, {"MB", MB}, {"GB", GB}, {"TB", TB}, {"KiB", KiB}, {"MiB", MiB}, {"GiB", GiB}, {"TiB", TiB}} {
		if b%u.size == 0 {
			if n := int64(b / u.size); abs(n) < abs(bestN) {
				best, bestN = u.name, n
			}
		}
	}
	return strconv.FormatInt(bestN, 10) + best
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return nodeError(n, "want a size like 150MB or 64KiB")
	}
	if n.ShortTag() == "!!int" {
		// YAML integer syntax (1_000, 0x400) is decoded by yaml itself.
		var v int64
		if err := n.Decode(&v); err != nil {
			return nodeError(n, "invalid size: "+err.Error())
		}
		*b = ByteSize(v)
		return nil
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return nodeError(n, err.Error())
	}
	*b = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// DataRate is a transfer rate in bytes per second, written as an integer
// (YAML integer syntax, no unit), or "off" for DataRateOff. A negative
// number in the file is an error rather than a second way of writing off;
// 0 is read as 0 so that the caller can refuse it.
type DataRate int64

// DataRateOff is the DataRate that sets no bound.
const DataRateOff DataRate = -1

// String formats r as "500 B/s", or "off".
func (r DataRate) String() string {
	if r == DataRateOff {
		return "off"
	}
	return strconv.FormatInt(int64(r), 10) + " B/s"
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (r *DataRate) UnmarshalYAML(n *yaml.Node) error {
	const want = "want a number of bytes per second, like 500, or off"
	if n.Kind != yaml.ScalarNode {
		return nodeError(n, want)
	}
	if n.Value == "off" {
		*r = DataRateOff
		return nil
	}
	var v int64
	if n.ShortTag() != "!!int" || n.Decode(&v) != nil {
		return nodeError(n, fmt.Sprintf("invalid rate %q: %s", n.Value, want))
	}
	if v < 0 {
		return nodeError(n, fmt.Sprintf("invalid rate %q: write off to set no minimum rate", n.Value))
	}
	*r = DataRate(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler: "off", or the number.
func (r DataRate) MarshalYAML() (any, error) {
	if r == DataRateOff {
		return "off", nil
	}
	return int64(r), nil
}

// nodeError reports a problem with a node as a *yaml.TypeError, so that
// decoding goes on and collects every problem of the file; Index.TypeError
// turns the position into the field's path.
func nodeError(n *yaml.Node, msg string) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: column %d: %s", n.Line, n.Column, msg)}}
}
