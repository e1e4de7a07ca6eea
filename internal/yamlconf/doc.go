// Package yamlconf holds what recallrelay's YAML files (the configuration
// file, package config, and the rules file, package rules) share: where
// each field of a document is, so that errors name a field's path and
// line, and the value types written with a unit.
//
// # Positions
//
// yaml.v3 (go.yaml.in/yaml/v3) reports only lines: its decode errors say
// "line 7: field tls not found in type ...", and a reader of a long file
// wants "listeners.return.tls (line 7)". An Index built from the
// document's node tree maps each field's path — keys joined by ".", list
// indexes in brackets, as in "vendors[0].tls.cert_file" — to its line, and
// SyntaxError and Index.TypeError turn yaml's errors into a Diag with the
// path, the line and a message for people. Decode does it all for a file
// decoded strictly into a Go value.
//
// # Values
//
// Duration, ByteSize and DataRate are read from YAML scalars by their
// UnmarshalYAML methods, whose errors Index.TypeError places at the value;
// ParseDuration and ParseByteSize parse the same text outside YAML. The
// syntax of each is documented once, on its type.
//
// The package imports nothing of recallrelay, so that every package that
// reads YAML can use it.
package yamlconf
