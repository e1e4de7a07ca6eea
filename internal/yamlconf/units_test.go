package yamlconf

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in      string
		want    ByteSize
		wantErr string
	}{
		{in: "0", want: 0},
		{in: "1500", want: 1500},
		{in: "150MB", want: 150_000_000},
		{in: "150 MB", want: 150_000_000},
		{in: "150mb", want: 150_000_000},
		{in: "10kB", want: 10_000},
		{in: "10k", want: 10_000},
		{in: "10KB", want: 10_000},
		{in: "64KiB", want: 65_536},
		{in: "64Ki", want: 65_536},
		{in: "1MiB", want: 1 << 20},
		{in: "2GiB", want: 2 << 30},
		{in: "3GB", want: 3_000_000_000},
		{in: "1TiB", want: 1 << 40},
		// The short units the rules file's size_over was documented with.
		{in: "10K", want: 10_000},
		{in: "2M", want: 2_000_000},
		{in: "1g", want: 1_000_000_000},
		{in: "3T", want: 3_000_000_000_000},
		{in: "2Mi", want: 2 << 20},
		{in: "1 gi", want: 1 << 30},
		{in: "1Ti", want: 1 << 40},
		{in: "10\tMB", want: 10_000_000},
		{in: "12B", want: 12},
		{in: " 7 ", want: 7},
		{in: "-5MB", want: -5_000_000},
		{in: "", wantErr: "want an integer"},
		{in: "MB", wantErr: "want an integer"},
		{in: "1.5MB", wantErr: "fractions are not allowed"},
		{in: "10XB", wantErr: "unknown unit \"XB\""},
		{in: "10 bytes", wantErr: "unknown unit"},
		{in: "9223372036854775807", want: 9223372036854775807},
		{in: "9223372036854775808", wantErr: "too large"},
		{in: "9000000TiB", wantErr: "too large"},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseByteSize(%q) = %d, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestByteSizeStringRoundTrip(t *testing.T) {
	tests := []struct {
		in   ByteSize
		want string
	}{
		{0, "0"},
		{1500, "1500"},
		{2000, "2kB"},
		{150 * MB, "150MB"},
		{MiB, "1MiB"},
		{64 * KiB, "64KiB"},
		{3 * GB, "3GB"},
		{-4 * KiB, "-4KiB"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
		back, err := ParseByteSize(tt.in.String())
		if err != nil || back != tt.in {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in.String(), back, err, int64(tt.in))
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{in: "72h", want: 72 * time.Hour},
		{in: "5m", want: 5 * time.Minute},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "2.5s", want: 2500 * time.Millisecond},
		{in: "250ms", want: 250 * time.Millisecond},
		{in: "0", want: 0},
		{in: "-5m", want: -5 * time.Minute},
		{in: "30", wantErr: true},
		{in: "1d", wantErr: true},
		{in: "", wantErr: true},
		{in: "soon", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if tt.wantErr {
			if err == nil || !strings.Contains(err.Error(), "like 30s, 5m or 72h") {
				t.Errorf("ParseDuration(%q) = %v, %v; want a helpful error", tt.in, got, err)
			}
			continue
		}
		if err != nil || time.Duration(got) != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestDurationString(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{72 * time.Hour, "72h"},
		{5 * time.Minute, "5m"},
		{90 * time.Minute, "1h30m"},
		{2 * time.Second, "2s"},
		{time.Hour + time.Second, "1h0m1s"},
		{0, "0s"},
	}
	for _, tt := range tests {
		if got := Duration(tt.in).String(); got != tt.want {
			t.Errorf("Duration(%v).String() = %q, want %q", tt.in, got, tt.want)
		}
		back, err := ParseDuration(Duration(tt.in).String())
		if err != nil || time.Duration(back) != tt.in {
			t.Errorf("round trip of %v: %v, %v", tt.in, back, err)
		}
	}
}

// TestUnitsYAML checks the three types as YAML values, including YAML integer
// syntax and the rejection of non-scalars.
func TestUnitsYAML(t *testing.T) {
	type doc struct {
		Size ByteSize `yaml:"size"`
		Wait Duration `yaml:"wait"`
		Rate DataRate `yaml:"rate"`
	}
	tests := []struct {
		in       string
		size     ByteSize
		wait     Duration
		rate     DataRate
		errMatch string
	}{
		{in: "rate: 500\n", rate: 500},
		{in: "rate: off\n", rate: DataRateOff},
		{in: "rate: 0x10\n", rate: 16},
		{in: "rate: -1\n", errMatch: "line 1: column 7: invalid rate \"-1\": write off"},
		{in: "rate: fast\n", errMatch: "line 1: column 7: invalid rate \"fast\""},
		{in: "rate: Off\n", errMatch: "invalid rate \"Off\""},
		{in: "rate: {a: 1}\n", errMatch: "line 1: column 7: want a number of bytes per second"},
		{in: "size: 150MB\nwait: 5m", size: 150 * MB, wait: Duration(5 * time.Minute)},
		{in: "size: 1024\nwait: 1h", size: 1024, wait: Duration(time.Hour)},
		{in: "size: 1_000\n", size: 1000},
		{in: "size: 0x400\n", size: 1024},
		{in: "size: \"2MiB\"\n", size: 2 * MiB},
		{in: "size: 1.5\n", errMatch: "line 1: column 7: invalid size \"1.5\": fractions"},
		{in: "size: [1]\n", errMatch: "line 1: column 7: want a size"},
		{in: "wait: 30\n", errMatch: "line 1: column 7: invalid duration \"30\""},
		{in: "wait: {a: 1}\n", errMatch: "want a duration"},
	}
	for _, tt := range tests {
		var d doc
		err := yaml.Unmarshal([]byte(tt.in), &d)
		if tt.errMatch != "" {
			if err == nil || !strings.Contains(err.Error(), tt.errMatch) {
				t.Errorf("%q: err = %v, want %q", tt.in, err, tt.errMatch)
			}
			continue
		}
		if err != nil || d.Size != tt.size || d.Wait != tt.wait || d.Rate != tt.rate {
			t.Errorf("%q: got %v %v %v, %v; want %v %v %v", tt.in, d.Size, d.Wait, d.Rate, err, tt.size, tt.wait, tt.rate)
		}
		out, err := yaml.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		var back doc
		if err := yaml.Unmarshal(out, &back); err != nil || back != d {
			t.Errorf("marshal round trip %q: %+v, %v", out, back, err)
		}
	}
}

func TestDataRateString(t *testing.T) {
	for _, tt := range []struct {
		r    DataRate
		want string
	}{{500, "500 B/s"}, {1, "1 B/s"}, {DataRateOff, "off"}, {0, "0 B/s"}} {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("DataRate(%d).String() = %q, want %q", int64(tt.r), got, tt.want)
		}
	}
}
