// Package loadgen is an SMTP load generator for measuring a relay (or any
// SMTP server) on its throughput, latency and memory, and a fast counting
// sink to measure it against.
//
// Run sends messages from N concurrent senders, M messages per connection
// (with or without RSET between them), with DATA or BDAT (CHUNKING, a chunk
// size), with or without PIPELINING (MAIL, RCPT and DATA or the first BDAT
// chunks written as one group), optionally after STARTTLS, for a duration or
// a message count. Messages come from a Source: Synthetic produces messages
// of an exact size from 1 KiB to 100 MB and more, streamed from a small
// precomputed block of dot-safe CRLF lines (a 100 MB message is never held in
// memory); Exchange uses the realistic Exchange Online messages of
// relaytest.Generate (CrossPremises headers, TNEF, multipart, 8-bit,
// SMTPUTF8), each with a unique Message-ID and, for a size target, padded
// with a streamed base64 attachment. A Result has msg/s, MB/s of message
// data, p50/p90/p99 latency per message (from writing MAIL to the final
// reply of the transaction), errors by reply code, and the peak RSS of a
// target process sampled from /proc/PID/status.
//
// The client protocol is written here on net.Conn and bufio with explicit
// reply parsing (ReadReply), not with go-smtp's client: go-smtp's client
// does not pipeline and decides its own buffering and chunking, and a load
// generator must control its own wire behaviour exactly.
//
// StartSink starts a sink on loopback that counts and discards what it
// receives (optionally keeping a sample byte for byte). Its default
// implementation is hand-written: go-smtp's server reads DATA through a
// per-byte state machine behind a 4 KiB buffer, which makes it, not the
// relay, the bottleneck for large messages; SinkGoSMTP runs the same sink on
// go-smtp's server for comparison.
package loadgen
