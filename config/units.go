package config

import "github.com/recallrelay/recallrelay/internal/yamlconf"

// The value types of the configuration file. They are defined, and their
// syntax documented, in package yamlconf, which the rules file shares;
// the aliases keep them nameable as config's, as the fields of Config that
// have them are.
type (
	// Duration is yamlconf.Duration: "30s", "5m", "72h", "1h30m".
	Duration = yamlconf.Duration
	// ByteSize is yamlconf.ByteSize: "150MB", "64KiB", "1048576".
	ByteSize = yamlconf.ByteSize
	// DataRate is yamlconf.DataRate: bytes per second, or "off".
	DataRate = yamlconf.DataRate
)

// Byte size units, as in yamlconf.
const (
	B   = yamlconf.B
	KB  = yamlconf.KB
	MB  = yamlconf.MB
	GB  = yamlconf.GB
	TB  = yamlconf.TB
	KiB = yamlconf.KiB
	MiB = yamlconf.MiB
	GiB = yamlconf.GiB
	TiB = yamlconf.TiB
)

// DataRateOff is the DataRate that sets no bound ("off" in the file).
const DataRateOff = yamlconf.DataRateOff
